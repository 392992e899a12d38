"""One shared persona model across workers, through a real Kafka broker and two worker processes."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import orjson
import pytest

from models.persona import PersonaModel
from models.training.uci import sessions
from stream.tools.replay import uci_records
from tests.broker.harness import Pipeline, latest_by_session
from tests.broker.test_pipeline import expected_events, finished
from tests.conftest import SAMPLE

pytestmark = pytest.mark.kafka

VISITS = 300


def generation(version: str) -> int:
    return int(re.match(r"persona-g(\d+)-", version).group(1))


def counter(pipeline: Pipeline, worker, name: str) -> float:
    text = pipeline.web(worker, "/metrics").decode()
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def twin_visit(events: list[dict], session_id: str, end: datetime) -> list[tuple[bytes, bytes]]:
    """``events`` as a new visit of ``session_id`` that ends at ``end`` (so no partition clock moves on)."""
    times = [datetime.fromisoformat(e["ts"]) for e in events]
    shift = end - max(times)
    out = []
    for i, (event, ts) in enumerate(zip(events, times)):
        twin = {**event, "session_id": session_id, "event_id": f"{session_id}-{i}",
                "ts": (ts + shift).isoformat().replace("+00:00", "Z")}
        out.append((session_id.encode(), orjson.dumps(twin)))
    return out


def test_two_workers_serve_one_shared_persona_model(pipeline, sample_frame):
    pipeline.settings["PERSONASTREAM_PERSONA_SYNC_S"] = "1"
    frame = sample_frame.head(VISITS)
    _, records = uci_records(frame)
    pipeline.cli("topics")
    workers = [pipeline.start_worker(), pipeline.start_worker()]
    owned = pipeline.wait_for(
        lambda: (parts := [set(pipeline.status(w)["partitions"]) for w in workers])[0] and parts[1]
        and parts[0] | parts[1] == set(range(pipeline.partitions)) and parts,
        "both workers to own events partitions")

    pipeline.cli("replay-uci", str(SAMPLE), "--limit", str(VISITS), "--settle", "0")
    expected = expected_events(records)
    pipeline.consume_until(pipeline.topic("personas"), finished(expected))

    shipped = PersonaModel.default().version
    pipeline.wait_for(  # each worker hands over on its own timer, up to PERSONA_SYNC_S after its last closed visit
        lambda: all(counter(pipeline, w, "personastream_persona_handovers_total") >= 1 for w in workers),
        "both workers to hand over what they learned")
    version = pipeline.wait_for(
        lambda: len(versions := {pipeline.status(w)["persona_model_version"] for w in workers}) == 1
        and (v := versions.pop()) != shipped and generation(v) >= 1 and v,
        "both workers to serve the same merged persona model")
    for worker in workers:  # both workers' learning went into the shared model
        assert counter(pipeline, worker, "personastream_visits_closed_total") > 20
    assert sum(counter(pipeline, w, "personastream_persona_merges_total") for w in workers) >= 1

    # the same visit on a partition of each worker: same model version, same persona
    source = next(sessions(frame.head(1))).events
    end = max(datetime.fromisoformat(orjson.loads(r.value)["ts"]) for r in records)
    for attempt in range(3):
        ids = [f"twin-{attempt}-{side}" for side in "ab"]
        for sid, worker_parts in zip(ids, owned):
            pipeline.produce(pipeline.topic("events"), twin_visit(source, sid, end - timedelta(seconds=1)),
                             partition=min(worker_parts))
        values = pipeline.consume_until(pipeline.topic("personas"), finished({sid: len(source) for sid in ids}))
        a, b = (latest_by_session(values)[sid] for sid in ids)
        if a["persona_model_version"] == b["persona_model_version"]:
            break  # else a merge landed between the two twins: try again
    assert a["persona_model_version"] == b["persona_model_version"]
    assert generation(a["persona_model_version"]) >= generation(version)
    for field in ("persona", "persona_id", "persona_confidence", "intent_score"):
        assert a[field] == b[field], field
    # (their actions are Thompson draws seeded by each session id, so they may differ: see test_bandit.py)

    # a restarted worker restores the shared model instead of starting over from the shipped one
    pipeline.stop_worker(workers[1])
    current = pipeline.status(workers[0])["persona_model_version"]
    restarted = pipeline.start_worker()
    restored = pipeline.wait_for(lambda: (s := pipeline.status(restarted))["persona_model_ready"]
                                 and s["persona_model_version"], "the restarted worker to load the shared model")
    assert restored != shipped and generation(restored) >= generation(current)
    pipeline.wait_for(lambda: pipeline.status(restarted)["persona_model_version"]
                      == pipeline.status(workers[0])["persona_model_version"], "both workers to agree again")
