"""Pure helpers of the benchmark harness (no Kafka, no timing assertions)."""

from __future__ import annotations

import random
import sys
from collections import Counter

import pytest

from bench import report
from bench.site_models import run_measured, serving_events, split_sessions
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


MIB = 1024 * 1024


def test_run_measured_reports_the_rusage_of_that_child_alone():
    allocate = ("import time; b = b'x' * ({} * 1024 * 1024); t = time.process_time()\n"
                "while time.process_time() - t < {}: pass")
    big = run_measured([sys.executable, "-c", allocate.format(300, 0.0)])
    small = run_measured([sys.executable, "-c", allocate.format(120, 0.3)])
    assert big.returncode == 0 and small.returncode == 0
    assert 300 * MIB <= big.peak_rss_bytes < 380 * MIB
    # the earlier, bigger child is not counted (getrusage(RUSAGE_CHILDREN) would report its peak)
    assert 120 * MIB <= small.peak_rss_bytes < 200 * MIB
    assert 0.3 <= small.cpu_s < 5 and small.wall_s >= small.cpu_s * 0.5


def test_run_measured_peak_rss_is_not_the_parents():
    held = b"y" * (400 * MIB)  # a child's ru_maxrss would start from this (Linux keeps it across fork and exec)
    child = run_measured([sys.executable, "-c", "b = b'x' * (50 * 1024 * 1024); import time; time.sleep(0.2)"])
    assert len(held) and 50 * MIB <= child.peak_rss_bytes < 150 * MIB


def test_run_measured_reports_a_failing_childs_exit_code(tmp_path):
    log = tmp_path / "child.log"
    run = run_measured([sys.executable, "-c", "import sys; print('oops'); sys.exit(3)"], log=log)
    assert run.returncode == 3 and "oops" in log.read_text()


def test_split_sessions_are_those_with_a_pause_of_the_gap():
    records = [Outgoing(b"a", b"", 0.0), Outgoing(b"b", b"", 10.0), Outgoing(b"a", b"", 1799.0),
               Outgoing(b"b", b"", 1810.0), Outgoing(b"a", b"", 3000.0)]
    assert len(split_sessions(records, 1800.0)) == 1
    assert len(split_sessions(records, 1000.0)) == 2


def test_serving_events_are_valid_keyed_unsplit_visits_in_time_order():
    records = serving_events(3000, train_events=30_000)
    assert len(records) <= 3000 and not split_sessions(records, 1800.0)
    assert [r.ts for r in records] == sorted(r.ts for r in records)
    for record in records[:500]:
        assert parse_event(record.value).session_id.encode() == record.key


def _own_traffic(site_rate: float, site_offline: float) -> dict:
    def model(variant, rate, rounds, cpu, offline_rate, scores, contributions):
        return {"variant": variant, "events_per_s": rate, "rounds_events_per_s": rounds,
                "workers_cpu_us_per_event": cpu, "rounds_workers_cpu_us_per_event": [cpu, cpu],
                "sessions": 900, "sessions_complete": 900,
                "offline": {"events": 32_000, "events_per_s": offline_rate, "scores_us_per_event": scores,
                            "contributions_us_per_event": contributions}}

    uci = model("UCI model", 20_000.0, [19_000.0, 21_000.0], 60.0, 25_000.0, 0.1, 2.0)
    site = model("site model", site_rate, [site_rate - 100, site_rate + 100], 70.0, site_offline, 0.3, 5.0)
    return {"training": {"events": 100_500, "visits": 4_900, "shop_seed": 101, "days": 28.0, "wall_s": 80.5,
                         "cpu_s": 40.2, "peak_rss_bytes": 540 * MIB, "trees": 176, "training_visits": 4_700,
                         "buying_visits": 120, "validation_visits": 950, "validation_roc_auc_at_50pct": 0.9583},
            "serving": {"events": 100_000, "sessions": 4_800, "partitions": 4},
            "models": [uci, site], "site_vs_uci_events_per_s": round(site_rate / 20_000, 3),
            "site_vs_uci_offline_events_per_s": round(site_offline / 25_000, 3), "site_vs_uci_cpu_per_event": 1.167}


def test_own_traffic_section_renders_training_and_both_models_side_by_side():
    text = "\n".join(report.own_traffic_section({"own_traffic": _own_traffic(19_000.0, 24_000.0)}))
    assert "## Own-traffic models" in text and "ShopConfig.random(101)" in text
    assert "| 100,500 | 4,900 (4,700, 120 buying) | 80.5 | 40.2 | 400.0 | 540 MiB | 176 | 0.9583 (950 latest" in text
    assert "| UCI model | 20,000 | 19,000 / 21,000 | 1.00× | 60.0 |" in text
    assert "| site model | 19,000 | 18,900 / 19,100 | 0.95× | 70.0 |" in text
    assert "0.95× the UCI model's events/s, with 1.17× its worker CPU per event" in text
    assert "5.30 µs per event against 2.10 µs" in text
    assert "Neither measure shows the site model more than 15% slower" in text and "profile with" not in text
    assert report.own_traffic_section({}) == []


def test_own_traffic_section_shows_the_profiles_of_a_site_model_more_than_15_percent_slower():
    own = _own_traffic(19_000.0, 20_000.0)  # 0.80x in the processor alone
    own["profiles"] = [{"variant": v, "events": 16_000, "seconds": 0.9,
                        "top_self": [{"frame": "score (models/intent.py:10)", "seconds": 0.2, "share": 0.22}]}
                       for v in ("UCI model", "site model")]
    text = "\n".join(report.own_traffic_section({"own_traffic": own}))
    assert "more than 15% slower in the processor alone: the processor's profile with each model" in text
    assert "through the broker" not in text.split("more than 15% slower")[1].split(":")[0]
    assert text.count("| `score (models/intent.py:10)` | 0.2 | 22.0% |") == 2


def test_the_soaks_distinct_burst_is_one_valid_event_per_new_session_and_new_page():
    from bench.soak import distinct_burst

    burst = distinct_burst(2000, random.Random(3), ts=1_700_000_000.0)
    events = [parse_event(record.value) for record in burst]
    assert len({e.session_id for e in events}) == len({e.page.id for e in events}) == 2000
    assert all(record.key == e.session_id.encode() and e.type == "page_view" for record, e in zip(burst, events))
    assert {e.ts.timestamp() for e in events} == {1_700_000_000.0}
