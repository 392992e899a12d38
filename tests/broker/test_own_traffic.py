"""A site trains on its own events recorded on the events topic, and a worker serves the model directory."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import orjson
import pytest
from sklearn.metrics import roc_auc_score

from models.directory import ModelDirectory
from models.training.visits import prefix_end, read_visits, replay
from tests.broker.harness import latest_by_session
from tools.shopsim import ShopConfig, simulate

pytestmark = pytest.mark.kafka

SHOP_SEED = 29
GAP_S = 1800.0


def test_train_from_the_events_topic_then_serve_later_visits(pipeline, tmp_path):
    shop = ShopConfig.random(SHOP_SEED)
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=20)
    recorded = [orjson.dumps(e) for e in simulate(shop, 8000, start, SHOP_SEED, days=14)]
    later = [orjson.dumps(e) for e in simulate(shop, 1500, start + timedelta(days=15), SHOP_SEED + 1, days=3)]
    events = pipeline.topic("events")
    pipeline.cli("topics")
    pipeline.produce(events, [(orjson.loads(v)["session_id"].encode(), v) for v in recorded])

    models = tmp_path / "site-models"
    trained = pipeline.cli("train", "--events", f"kafka://{pipeline.bootstrap}/{events}", "--out", str(models),
                           timeout=600)
    said = " ".join((trained.stdout + trained.stderr).split())
    assert f"{len(recorded)} lines: {len(recorded)} events" in said
    served = ModelDirectory.load(models)
    assert served.intent.feature_set.name == "site-v1" and served.pages and served.personas.ready

    visits = [v for v in read_visits(later, GAP_S) if not v.bot and v.learnable]
    halves = {v.session_id: prefix_end(v, 0.5) for v in visits}
    by_session: dict[str, list[bytes]] = {}
    for value in later:
        by_session.setdefault(orjson.loads(value)["session_id"], []).append(value)
    fed = [(sid.encode(), value) for sid, n in halves.items() for value in by_session[sid][:n]]
    fed.sort(key=lambda record: orjson.loads(record[1])["ts"])
    pipeline.start_worker("--models", str(models))
    pipeline.produce(events, fed)

    def scored(values: list[bytes]) -> bool:
        latest = latest_by_session(values)
        return all(sid in latest and latest[sid]["events_seen"] == n for sid, n in halves.items())

    latest = latest_by_session(pipeline.consume_until(pipeline.topic("personas"), scored, timeout=300))
    labels = [v.bought for v in visits]
    streamed = [latest[v.session_id]["intent_score"] for v in visits]
    assert all(latest[v.session_id]["intent_model_version"] == served.intent.version for v in visits)
    offline = served.intent.score([served.intent.row(replay(v, [halves[v.session_id]], served.pages)[-1])
                                   for v in visits])
    same = sum(abs(a - b) < 1e-6 for a, b in zip(streamed, offline))
    assert same >= 0.95 * len(visits), f"only {same} of {len(visits)} streamed scores equal the offline scores"
    auc = roc_auc_score(labels, streamed)
    assert auc >= 0.85, f"mid-visit ROC-AUC {auc:.3f} of the served site model"
    assert abs(auc - roc_auc_score(labels, offline)) < 0.01
