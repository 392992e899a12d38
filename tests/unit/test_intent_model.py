"""Intent model: artifact validation, scoring parity, calibration, bands and prefix training (no Kafka)."""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import orjson
import pytest

from models.features import FEATURES, SessionState, session_features
from models.intent import METADATA_FILE, MODEL_FILE, IntentModel, ModelFileError, calibrate
from models.training.train import (
    FINAL_WEIGHT,
    TRAIN_POINTS,
    PrefixMatrix,
    fit_calibration,
    replay_frame,
    replay_session,
    train,
    views_at,
)
from models.training.uci import fold_session, sessions


@pytest.fixture(scope="module")
def model() -> IntentModel:
    return IntentModel.load()


@pytest.fixture(scope="module")
def meta() -> dict:
    return orjson.loads(METADATA_FILE.read_bytes())


@pytest.fixture(scope="module")
def rows(sample_frame, model) -> np.ndarray:
    """Feature rows of real sample sessions at several points of each visit."""
    out = []
    for session in list(sessions(sample_frame.head(60))):
        for _, state in replay_session(session).items():
            out.append(session_features(state, model.vocabulary))
    return np.asarray(out, dtype=np.float64)


def copy_artifacts(tmp_path: Path, meta_edit=None, model_text: bytes | None = None) -> tuple[Path, Path]:
    """The committed model and metadata copied to ``tmp_path``, optionally edited (sha256 kept consistent)."""
    model_file, metadata_file = tmp_path / "intent.lgb.txt", tmp_path / "intent.json"
    text = MODEL_FILE.read_bytes() if model_text is None else model_text
    meta = orjson.loads(METADATA_FILE.read_bytes())
    meta["sha256"] = hashlib.sha256(text).hexdigest()
    if meta_edit:
        meta_edit(meta)
    model_file.write_bytes(text)
    metadata_file.write_bytes(orjson.dumps(meta))
    return model_file, metadata_file


# --- the committed artifact -----------------------------------------------------------------------

def test_compiled_model_scores_like_lightgbm_and_is_cached(model, rows, tmp_path):
    with_nan = rows.copy()
    with_nan[::5, FEATURES.index("Browser")] = np.nan  # unseen categories, as the stream encodes them
    with_nan[::7, FEATURES.index("BounceRates")] = np.nan
    compiled = model.compiled(tmp_path)
    cached = list(tmp_path.glob("intent-*.so"))
    assert len(cached) == 1 and not list(tmp_path.glob("*.tmp"))
    for X in (rows, with_nan):
        np.testing.assert_allclose(compiled.score(X), model.score(X), rtol=0, atol=1e-12)
        np.testing.assert_allclose(compiled.score(X[3:4]), model.score(X[3:4]), rtol=0, atol=1e-12)
    stamp = cached[0].stat().st_mtime_ns
    again = model.compiled(tmp_path)  # loaded from the cache, not compiled again
    assert cached[0].stat().st_mtime_ns == stamp
    np.testing.assert_allclose(again.score(rows), model.score(rows), rtol=0, atol=1e-12)


def test_committed_artifact_loads_and_matches_features(model, meta):
    assert meta["features"] == list(FEATURES)
    assert model.booster.feature_name() == list(FEATURES)
    assert model.version == meta["version"] and model.version.startswith("intent-")
    assert hashlib.sha256(MODEL_FILE.read_bytes()).hexdigest() == meta["sha256"]
    assert meta["version"] == f"intent-{meta['sha256'][:10]}"


def test_committed_metadata_records_cv_and_meets_issue_targets(meta):
    cv = meta["cv"]
    assert cv["folds"] == 5 and cv["sessions"] == meta["training_data"]["rows"]
    assert cv["roc_auc"]["mean"] >= 0.935
    assert cv["pr_auc"]["mean"] >= 0.74
    assert cv["roc_auc_at_50pct"]["mean"] >= 0.85
    assert cv["roc_auc_at_25pct"]["mean"] <= cv["roc_auc_at_75pct"]["mean"] + 0.01
    assert 0 < cv["brier"]["mean"] < (meta["training_data"]["positive_rate"]
                                      * (1 - meta["training_data"]["positive_rate"]))


def test_scores_are_probabilities_and_rank_sample_purchases(sample_frame, model):
    finals = replay_frame(sample_frame)
    scores = model.score([session_features(s, model.vocabulary) for s in finals.finals])
    assert np.all((scores >= 0) & (scores <= 1))
    y = finals.labels.astype(bool)
    assert scores[y].mean() > 3 * scores[~y].mean()


# --- validation -----------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["model", "metadata"])
def test_missing_file_names_the_file(tmp_path, which):
    model_file, metadata_file = copy_artifacts(tmp_path)
    gone = model_file if which == "model" else metadata_file
    gone.unlink()
    with pytest.raises(ModelFileError, match=gone.name):
        IntentModel.load(model_file, metadata_file)


def test_replaced_model_file_fails_checksum(tmp_path):
    model_file, metadata_file = copy_artifacts(tmp_path)
    model_file.write_bytes(model_file.read_bytes().replace(b"tree\n", b"tree \n", 1))
    with pytest.raises(ModelFileError, match="intent.lgb.txt.*corrupt or replaced"):
        IntentModel.load(model_file, metadata_file)


def test_corrupt_model_text_with_matching_checksum(tmp_path):
    model_file, metadata_file = copy_artifacts(tmp_path, model_text=b"not a lightgbm model\n")
    with pytest.raises(ModelFileError, match="intent.lgb.txt.*corrupt"):
        IntentModel.load(model_file, metadata_file)


def test_metadata_not_json(tmp_path):
    model_file, metadata_file = copy_artifacts(tmp_path)
    metadata_file.write_bytes(b"{ truncated")
    with pytest.raises(ModelFileError, match="intent.json.*not valid JSON"):
        IntentModel.load(model_file, metadata_file)


def test_feature_mismatch_names_the_file(tmp_path):
    model_file, metadata_file = copy_artifacts(tmp_path, lambda m: m.update(features=m["features"][:-1]))
    with pytest.raises(ModelFileError, match="intent.json.*built for features"):
        IntentModel.load(model_file, metadata_file)


@pytest.mark.parametrize("calibration", [
    None,
    {"method": "isotonic", "x": [0.0, 0.5, 1.0], "y": [0.0, 0.6, 0.4]},   # not monotone
    {"method": "isotonic", "x": [0.0, 0.5, 0.5], "y": [0.0, 0.5, 0.6]},   # x not increasing
    {"method": "platt", "a": -1.0, "b": 0.0},                            # decreasing
    {"method": "spline"},
])
def test_invalid_calibration_is_rejected(tmp_path, calibration):
    model_file, metadata_file = copy_artifacts(tmp_path, lambda m: m.update(calibration=calibration))
    with pytest.raises(ModelFileError, match="intent.json.*calibration"):
        IntentModel.load(model_file, metadata_file)


def test_unordered_bands_are_rejected(tmp_path):
    model_file, metadata_file = copy_artifacts(tmp_path, lambda m: m.update(bands={"medium": 0.6, "high": 0.3}))
    with pytest.raises(ModelFileError, match="intent.json.*bands"):
        IntentModel.load(model_file, metadata_file)


# --- scoring --------------------------------------------------------------------------------------

CALIBRATIONS = [
    {"method": "identity"},
    {"method": "platt", "a": 1.1, "b": -0.2},
    {"method": "isotonic", "x": [0.01, 0.1, 0.3, 0.9], "y": [0.0, 0.05, 0.4, 0.95]},
]


@pytest.mark.parametrize("calibration", CALIBRATIONS, ids=lambda c: c["method"])
def test_batch_score_equals_single_row_score_exactly(model, rows, calibration):
    m = replace(model, calibration=calibration)
    batch = m.score(rows)
    single = np.array([m.score([row])[0] for row in rows])
    assert len(np.unique(batch)) > 10
    assert np.array_equal(batch, single)
    assert np.array_equal(batch, m.score(rows[::-1])[::-1])


def test_score_applies_stored_calibration(model, rows):
    raw = model.raw_score(rows)
    assert np.array_equal(model.score(rows), calibrate(raw, model.calibration))
    shifted = replace(model, calibration={"method": "platt", "a": 1.0, "b": 1.0})
    assert np.all(shifted.score(rows) > raw)


@pytest.mark.parametrize("calibration", CALIBRATIONS, ids=lambda c: c["method"])
def test_calibration_is_monotone_into_unit_interval(calibration):
    grid = np.linspace(0, 1, 2001)
    out = calibrate(grid, calibration)
    assert np.all(np.diff(out) >= 0)
    assert np.all((out >= 0) & (out <= 1))


def test_committed_calibration_is_monotone(model):
    out = calibrate(np.linspace(0, 1, 2001), model.calibration)
    assert np.all(np.diff(out) >= 0)


def test_fitted_calibrations_are_monotone_and_validated(tmp_path):
    rng = np.random.default_rng(3)
    raw = rng.random(3000)
    y = (rng.random(3000) < raw ** 2).astype(int)
    for method in ("platt", "isotonic"):
        cal = fit_calibration(method, raw, y, np.ones_like(raw))
        out = calibrate(np.linspace(0, 1, 501), cal)
        assert np.all(np.diff(out) >= 0), method
        # raw overstates y = raw**2: the fitted map must pull mid scores down
        assert calibrate(np.array([0.5]), cal)[0] < 0.45, method
        model_file, metadata_file = copy_artifacts(tmp_path, lambda m, cal=cal: m.update(calibration=cal))
        assert IntentModel.load(model_file, metadata_file).calibration["method"] == method


def test_bands_are_ordered_and_applied(model, meta):
    bands = model.bands
    assert 0 < bands["medium"] < bands["high"] < 1
    assert bands["medium"] == pytest.approx(meta["training_data"]["positive_rate"])
    assert model.band(bands["high"]) == "high"
    assert model.band(np.nextafter(bands["high"], 0)) == "medium"
    assert model.band(bands["medium"]) == "medium"
    assert model.band(np.nextafter(bands["medium"], 0)) == "low"
    assert "bands_rule" in meta


def test_contributions_name_features(model, rows):
    top = model.contributions(rows[:5], top=3)
    assert all(len(r) == 3 and all(name in FEATURES for name, _ in r) for r in top)


# --- features and prefix training -----------------------------------------------------------------

def test_derived_features_come_from_session_state(model):
    state = SessionState(start_ts=1_463_000_000.0, admin_views=2, admin_seconds=30.0, info_views=1, info_seconds=10.0,
                         product_views=5, product_seconds=200.0, page_views=8, bounce_rate_sum=0.08, exit_rate_sum=0.4,
                         page_value_sum=24.0)
    f = dict(zip(FEATURES, session_features(state, model.vocabulary)))
    assert f["PageValues"] == pytest.approx(3.0) and f["PageValueTotal"] == pytest.approx(24.0)
    assert f["ProductShare"] == pytest.approx(5 / 8)
    assert f["DurationPerPage"] == pytest.approx(240 / 8)
    assert f["AdministrativeDurationPerPage"] == pytest.approx(15.0)
    assert f["InformationalDurationPerPage"] == pytest.approx(10.0)
    assert f["ExitMinusBounce"] == pytest.approx((0.4 - 0.08) / 8)
    empty = dict(zip(FEATURES, session_features(SessionState(start_ts=1_463_000_000.0), model.vocabulary)))
    assert math.isnan(empty["ProductShare"]) and empty["DurationPerPage"] == 0.0


def test_prefix_states_are_the_state_before_the_next_page_view(sample_frame):
    for session in list(sessions(sample_frame.head(25))):
        kept = replay_session(session)
        views = [i for i, e in enumerate(session.events) if e["type"] == "page_view"]
        n = len(views)
        assert max(kept) == n
        states = [replace(s, recent_ids=b"") for _, s in fold_session(session)]
        for k, state in kept.items():
            end = views[k] if k < n else len(session.events)   # index of the (k+1)-th page view
            assert state == states[end - 1], (session.session_id, k)


def test_views_at():
    assert [views_at(q, 4) for q in (0.25, 0.5, 0.75, 1.0)] == [1, 2, 3, 4]
    assert views_at(0.25, 1) == 1 and views_at(0.1, 30) == 3 and views_at(0.3, 10) == 3


def test_training_rows_weigh_each_session_once(sample_frame):
    from models.features import build_vocabulary, raw_context

    replayed = replay_frame(sample_frame.head(80))
    data = PrefixMatrix.build(replayed, build_vocabulary([raw_context(s) for s in replayed.finals]))
    sessions_ = np.arange(80)
    rows, labels, weights = data.training_rows(sessions_)
    owner = np.concatenate([[s] * len({views_at(q, data.page_views[s]) for q in TRAIN_POINTS}) for s in sessions_])
    assert np.allclose(np.bincount(owner, weights=weights), 1.0)
    assert np.array_equal(labels, data.labels[owner])
    final_rows = data.at(sessions_, 1.0)
    multi = data.page_views[sessions_] > 1
    assert np.allclose(weights[np.isin(rows, final_rows[multi])], FINAL_WEIGHT)


def test_train_writes_a_loadable_model(sample_frame, tmp_path):
    model_file, metadata_file = tmp_path / "m.txt", tmp_path / "m.json"
    logged = []
    meta = train(sample_frame, "sample.csv", model_file=model_file, metadata_file=metadata_file, log=logged.append)
    assert len(logged) == 5
    loaded = IntentModel.load(model_file, metadata_file)
    assert loaded.version == meta["version"]
    assert meta["cv"]["roc_auc"]["mean"] > 0.8
    assert meta["calibration"]["method"] in ("identity", "platt", "isotonic")
    assert 0 < meta["bands"]["medium"] <= meta["bands"]["high"] < 1
