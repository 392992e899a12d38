"""The intake's read positions through the real broker: a Faust worker whose reading is interrupted the
way rebalances interrupt it (flow stopped, buffers cleared, partitions sought to their committed offsets)
is still handed every record of each partition, in order, never skipping one."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest

from tests.broker.harness import ROOT

pytestmark = pytest.mark.kafka

PER_PARTITION = 1500


def skips(offsets: list[int]) -> list[tuple[int, int]]:
    """(offset, first offset never handed over before it) for each offset handed over past a record not yet
    handed over: the session state, which drops a record at or below the last one it folded, would lose it.
    Records handed over again (from a committed offset, or a buffered record taken after a seek) are fine."""
    found, highest = [], -1
    for offset in offsets:
        if offset > highest + 1:
            found.append((offset, highest + 1))
        highest = max(highest, offset)
    return found


@pytest.mark.parametrize("action", ["rebalance", "clear", "seek"])
def test_every_record_is_handed_over_in_order_across_interruptions(pipeline, action):
    topic = f"{pipeline.name}.probe"
    pipeline.create_topic(topic, partitions=2)
    for partition in (0, 1):
        pipeline.produce(topic, [(None, f"{partition}:{i}".encode()) for i in range(PER_PARTITION)],
                         partition=partition)
    probe = subprocess.run(
        [sys.executable, "-m", "tests.broker.intake_probe", pipeline.bootstrap, topic, f"probe-{pipeline.name}",
         str(PER_PARTITION), action, str(pipeline.home / "probe-data")], cwd=ROOT, capture_output=True, text=True,
        timeout=180)
    assert probe.returncode == 0, probe.stdout[-3000:] + probe.stderr[-3000:]
    lines = [line for line in probe.stdout.splitlines() if "handed: " in line]
    assert lines, probe.stdout[-3000:] + probe.stderr[-3000:]
    report = orjson.loads(lines[-1].split("handed: ", 1)[1])
    handed = {int(p): offsets for p, offsets in report["handed"].items()}
    print(action, {p: len(o) for p, o in handed.items()}, "handed;", report["cleared"], "cleared;",
          report["rewinds"], "seeks back;", report["batches"], "batches")

    assert report["batches"] >= 20, "the probe finished before its third interruption"
    for partition, offsets in handed.items():
        assert not skips(offsets), (partition, skips(offsets)[:10])
        assert set(offsets) == set(range(PER_PARTITION))
    if action == "clear":  # the cleared records were read again from the first one: none handed twice
        assert report["cleared"] > 0 and report["rewinds"] > 0
        assert all(len(offsets) == PER_PARTITION for offsets in handed.values())
    elif action == "rebalance":
        assert report["cleared"] > 0
    else:  # the first seek, to offsets committed before the buffered records were taken, reads them again
        assert any(len(offsets) > PER_PARTITION for offsets in handed.values())
