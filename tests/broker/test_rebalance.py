"""Workers joining and leaving while events flow: two rebalances in the middle of a replay, with the
session state in RocksDB, lose and double-count nothing."""

from __future__ import annotations

import threading
import time

import orjson
import pytest

from bench import workload
from tests.broker.harness import unexact_visits
from tests.conftest import SAMPLE

pytestmark = pytest.mark.kafka

EVENTS = 30_000
CHUNKS = 60
PACE_S = 0.4


def test_workers_joining_and_leaving_mid_replay_lose_and_double_count_nothing(pipeline):
    """Worker 1 runs alone, worker 2 joins while events flow (partitions move to it, their state is
    restored from the changelog into its RocksDB), then worker 1 stops while events still flow (worker 2
    takes every partition). Thousands of visits are open across both rebalances; each one's newest
    PersonaEvent must count exactly its events, and the page counters every page view once (of the
    synthetic visits' pages, left out of the catalog: a catalogued page is not counted)."""
    pipeline.settings["PERSONASTREAM_STORE"] = "rocksdb://"
    work = workload.build(SAMPLE, EVENTS, uci_share=0.5)
    expected = {key.decode(): n for key, n in work.sessions().items()}
    records = [(r.key, r.value) for r in work.records]
    size = -(-len(records) // CHUNKS)
    chunks = [records[i:i + size] for i in range(0, len(records), size)]
    pipeline.cli("topics")
    catalog = [(key, value) for key, value in work.catalog if not key.startswith(b"catalog/syn/")]
    counted_pages = {key.decode().partition("/")[2] for key, _ in work.catalog} - {
        key.decode().partition("/")[2] for key, _ in catalog}
    assert counted_pages, "no uncatalogued page: the page counters would be tested on nothing"
    pipeline.produce(pipeline.topic("pages"), catalog)
    pipeline.produce(pipeline.topic("events"), chunks[0])
    personas = pipeline.topic("personas")
    first = pipeline.start_worker()
    pipeline.consume_until(personas, bool, timeout=90)

    failures: list[BaseException] = []

    def produce_the_rest() -> None:
        try:
            for chunk in chunks[1:]:
                pipeline.produce(pipeline.topic("events"), chunk)
                time.sleep(PACE_S)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            failures.append(exc)

    producer = threading.Thread(target=produce_the_rest, daemon=True)
    producer.start()
    second = pipeline.start_worker()
    pipeline.wait_for(lambda: pipeline.metric(second, "personastream_events_total") > 0,
                      "the second worker to get partitions and process events", timeout=90)
    first_processed = pipeline.metric(first, "personastream_events_total")
    assert producer.is_alive(), "the replay ended before the second worker joined: no rebalance mid-stream"
    pipeline.stop_worker(first)
    assert first.returncode is not None and 0 < first_processed < len(records)
    still_flowing = producer.is_alive()
    producer.join(120)
    assert not failures, failures

    wrong = unexact_visits(pipeline.drain(second, expected, timeout=120, lag_timeout=60), expected)
    letters = pipeline.read_records(pipeline.topic("dlq"))
    print(f"{len(expected)} visits, {len(records)} events; first worker processed {first_processed:.0f} before it "
          f"stopped ({'while' if still_flowing else 'after'} events flowed); second worker: "
          f"{pipeline.metric(second, 'personastream_events_total'):.0f} events, "
          f"{pipeline.metric(second, 'personastream_duplicate_events_total'):.0f} duplicates")
    assert not wrong, (f"{len(wrong)} of {len(expected)} visits whose newest PersonaEvent is not (visit 0, all its "
                       f"events): {dict(list(wrong.items())[:20])} as session: (visit, events_seen, expected)")
    assert not letters, [orjson.loads(r.value)["reason"] for r in letters][:10]
    # page views are counted once each, however often partitions moved
    (changelog,) = [t for t in pipeline.broker_topics() if pipeline.name in t and t.endswith("page-counters-changelog")]
    counted = {r.key: orjson.loads(r.value) for r in pipeline.read_records(changelog)
               if r.value is not None and not r.key.startswith(b"\xff")}  # not the offsets counted (applied_key)
    events = [orjson.loads(value) for _, value in records]
    views = sum(e["type"] == "page_view" and e["page"]["id"] in counted_pages for e in events)
    assert sum(counts.get("views", 0) for counts in counted.values()) == views
