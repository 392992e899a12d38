"""Pure helpers of the benchmark harness (no Kafka, no timing assertions)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from bench.stats import LatencyMatcher, completion, percentile
from bench.workload import merge, synthetic_events
from schemas.events import parse_event
from stream.tools.replay import Outgoing


def test_percentile_interpolates_between_order_statistics():
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([0.0, 10.0], 99) == pytest.approx(9.9)
    assert percentile([5.0], 99) == 5.0
    assert percentile(list(range(101)), 90) == 90


def test_synthetic_events_are_valid_keyed_and_in_time_order_per_visit():
    catalog, records = synthetic_events(3000, random.Random(1), concurrent=50)
    assert len(records) == 3000 and catalog
    last: dict[bytes, float] = {}
    for record in records:
        event = parse_event(record.value)
        assert event.session_id.encode() == record.key
        assert record.ts >= last.get(record.key, 0.0)
        assert record.ts - last.get(record.key, record.ts) < 1800  # one visit per session
        last[record.key] = record.ts
    first = {}
    for record in records:
        first.setdefault(record.key, parse_event(record.value))
    assert all(event.type == "page_view" for event in first.values())


def test_merge_keeps_each_order():
    a = [Outgoing(b"a", str(i).encode(), None) for i in range(50)]
    b = [Outgoing(b"b", str(i).encode(), None) for i in range(30)]
    merged = merge(a, b, random.Random(0))
    assert [r for r in merged if r.key == b"a"] == a and [r for r in merged if r.key == b"b"] == b


def test_latency_matcher_resolves_every_event_an_output_covers():
    matcher = LatencyMatcher()
    for t in (0.0, 1.0, 2.0):
        matcher.send(b"s", t)
    matcher.output(b"s", 2, 5.0)  # covers the first two events
    matcher.output(b"other", 1, 5.0)  # not sent here: ignored
    assert sorted(matcher.latencies) == [4.0, 5.0] and matcher.pending == 1
    matcher.output(b"s", None, 6.0)  # next event
    assert matcher.latencies[-1] == 4.0 and matcher.pending == 0


def test_latency_matcher_counts_events_sent_before_the_run():
    matcher = LatencyMatcher(base={b"s": 3})
    matcher.send(b"s", 1.0)
    matcher.output(b"s", 2, 2.0)  # an older output, from before this run: ignored
    assert matcher.latencies == [] and matcher.pending == 1
    matcher.output(b"s", 4, 3.0)
    assert matcher.latencies == [2.0] and matcher.pending == 0


def test_completion_runs_from_first_output_to_last_final_one():
    expected = Counter({b"a": 2, b"b": 1})
    points = [(10.0, b"a", 1), (11.0, b"b", 1), (13.0, b"a", 2), (14.0, b"a", 2)]
    result = completion(points, expected)
    assert result["sessions_complete"] == 2 and result["span_s"] == 3.0
    assert result["events_per_s"] == pytest.approx(1.0)


def test_worker_profile_summary_is_each_threads_busy_share_and_its_self_time(tmp_path):
    from bench.spy import summarize

    raw = tmp_path / "raw.txt"
    raw.write_text("thread (0x1a): MainThread;main (cli.py:1);loop (base.py:2);send (aiokafka/producer.py:3) 30\n"
                   "thread (0x1a): MainThread;main (cli.py:1);loop (base.py:2);ack (stream/intake.py:9) 10\n"
                   "thread (77): processor_0;run (x.py:1);process (/work/main/stream/sessions.py:9) 80\n"
                   "thread (0x1a): MainThread;main (cli.py:1);select (selectors.py:3);EpollSelector.select "
                   "(selectors.py:468) 50\n"
                   "garbage\n")
    summary = summarize(raw, seconds=1.0)
    assert [(t["thread"], t["share"]) for t in summary["threads"]] == [("processor_0", 0.8), ("MainThread", 0.4)]
    assert summary["threads"][1]["top"] == [{"frame": "send (aiokafka/producer.py)", "share": 0.75},
                                            {"frame": "ack (stream/intake.py)", "share": 0.25}]
    assert summary["threads"][0]["top"] == [{"frame": "process (stream/sessions.py)", "share": 1.0}]


def test_diagnosis_of_an_incomplete_run_counts_missing_events_per_partition_and_keeps_warnings(tmp_path):
    from bench.kafka import diagnosis
    from stream.topics import key_hash

    expected = {b"a": 3, b"b": 2, b"c": 4}
    points = [(1.0, b"a", 1), (2.0, b"a", 3), (1.5, b"b", 1), (3.0, b"c", 4), (4.0, b"c", 2)]
    log = tmp_path / "worker-0.log"
    warning = "[WARNING] batches still undelivered after 10 s; handing partitions over anyway"
    log.write_text(f"{warning}\nnothing\n[ERROR] boom\n")
    found = diagnosis(points, expected, 4, [log, tmp_path / "missing.log"])
    assert found["missing_events_by_partition"] == {key_hash(b"b") % 4: 1}
    assert found["worker_warnings"] == [warning, "[ERROR] boom"]


def test_floor_workers_validate_every_record_whatever_it_is_and_return_no_output(monkeypatch):
    from bench import floors
    from stream.sessions import BatchResult, Record

    valid = b'{"type":"page_view","event_id":"e1","session_id":"s1","ts":"2024-01-01T00:00:00Z","page":{"id":"p"}}'
    records = [Record(b"s1", value, "events", 0, offset)
               for offset, value in enumerate([valid, b"\xff\x00 not json", None, b"[]"])]
    seen = []

    def parse(raw):
        seen.append(raw)
        return parse_event(raw)

    monkeypatch.setattr(floors, "parse_event", parse)
    assert floors.validate(None, records, {}) == BatchResult()  # invalid records do not stop the floor
    assert seen == [record.value for record in records]
    assert floors.acknowledge(None, records, {}) == BatchResult()


def test_floor_rate_reads_the_workers_event_counter_from_its_metrics():
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client import Counter as Metric

    from bench.floors import events_counted

    registry = CollectorRegistry()
    Metric("personastream_events_total", "raw records consumed", registry=registry).inc(1234)
    Metric("personastream_dead_letters_total", "dead letters", registry=registry).inc(7)

    class Metrics(BaseHTTPRequestHandler):
        def do_GET(self):
            body = generate_latest(registry)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Metrics)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert events_counted(server.server_address[1]) == 1234
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert events_counted(server.server_address[1]) == 0  # nobody answers: not started yet


def test_the_soaks_distinct_burst_is_one_valid_event_per_new_session_and_new_page():
    from bench.soak import distinct_burst

    burst = distinct_burst(2000, random.Random(3), ts=1_700_000_000.0)
    events = [parse_event(record.value) for record in burst]
    assert len({e.session_id for e in events}) == len({e.page.id for e in events}) == 2000
    assert all(record.key == e.session_id.encode() and e.type == "page_view" for record, e in zip(burst, events))
    assert {e.ts.timestamp() for e in events} == {1_700_000_000.0}
