"""Personas: features, snapshots, merging, name stability, robustness and lift on real UCI sessions (no Kafka)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from models.actions import DEFAULT_ACTIONS, recommend
from models.features import SessionState
from models.persona import (
    ARTIFACT,
    BOUNDS,
    FEATURES,
    HIGH_INTENT,
    UNASSIGNED,
    WEIGHTS,
    PersonaModel,
    persona_features,
    rule_names,
)
from models.training.persona_eval import final_states, oof_intent, profile_table
from models.training.uci import fold_session, read_uci, sessions

SAMPLE = Path(__file__).parents[1] / "data" / "uci_sample.csv"


@pytest.fixture(scope="module")
def uci():
    """Persona features (out-of-fold intent), labels and final states of 2,000 real UCI sessions."""
    frame = read_uci(SAMPLE)
    states = final_states(frame)
    labels = frame["Revenue"].to_numpy(dtype=int)
    intent = oof_intent(states, labels, rounds=120)
    return [persona_features(s, p) for s, p in zip(states, intent)], labels, frame


def trained(X, seed: int = 7, k: int = 6, upto: int | None = None) -> PersonaModel:
    model = PersonaModel(k, seed=seed)
    for i in np.random.default_rng(seed).permutation(len(X))[:upto]:
        model.learn_one(X[i])
    return model.rebase()


def assignments(model: PersonaModel, X) -> list[tuple[int, str, float, str]]:
    return [(a.persona_id, a.name, a.confidence, a.version) for a in map(model.predict_one, X)]


# --- features -----------------------------------------------------------------------------------

EXTREME_STATES = [
    SessionState(),
    SessionState(page_views=0, bounce_rate_sum=3.0, exit_rate_sum=5.0, page_value_sum=100.0, product_seconds=50.0),
    SessionState(page_views=1, product_views=1, product_seconds=10 * 3600.0),
    SessionState(page_views=10**7, product_views=10**7, product_seconds=1e12, page_value_sum=1e15, bounce_rate_sum=1e7,
                 exit_rate_sum=1e7),
    SessionState(page_views=3, admin_views=1, admin_seconds=math.nan, info_seconds=math.inf, product_seconds=-math.inf,
                 bounce_rate_sum=math.nan, exit_rate_sum=-math.inf, page_value_sum=math.inf),
    SessionState(page_views=-5, admin_views=-1, product_views=2, product_seconds=-30.0, page_value_sum=-8.0),
]


@pytest.mark.parametrize("state", EXTREME_STATES)
@pytest.mark.parametrize("intent", [0.0, 0.5, 1.0, -3.0, 7.0, math.nan, math.inf, -math.inf, None])
def test_features_are_finite_and_bounded(state, intent):
    x = persona_features(state, intent)
    assert tuple(x) == FEATURES
    for name, value in x.items():
        lo, hi = BOUNDS[name]
        assert math.isfinite(value) and lo <= value <= hi, (name, value)


BEHAVIOUR = ("cart_adds", "cart_churn", "search", "scroll", "mobile")
"""Features of events a UCI session does not have."""

BEHAVIOUR_STATES = [
    SessionState(page_views=4, detail_views=3, product_views=3, searches=2, cart_adds=3, cart_removes=1,
                 product_scroll_sum=150.0, device_class="mobile"),
    SessionState(cart_removes=5, device_class="tablet"),
    SessionState(page_views=1, searches=10**6, cart_adds=10**9, detail_views=1, product_scroll_sum=1e9),
    SessionState(page_views=2, detail_views=-3, searches=-1, cart_adds=-2, cart_removes=-7, product_scroll_sum=-50.0),
    SessionState(page_views=2, detail_views=2, searches=math.nan, cart_adds=math.inf, cart_removes=math.nan,
                 product_scroll_sum=math.inf, device_class="desktop"),
]


@pytest.mark.parametrize("state", BEHAVIOUR_STATES)
def test_behaviour_features_are_finite_and_bounded(state):
    for name, value in persona_features(state, 0.5).items():
        lo, hi = BOUNDS[name]
        assert math.isfinite(value) and lo <= value <= hi, (name, value)


def test_behaviour_features_of_a_visit():
    x = persona_features(BEHAVIOUR_STATES[0], 0.5)
    assert x["cart_adds"] == pytest.approx(math.log1p(3))
    assert x["cart_churn"] == pytest.approx(1 / 3)
    assert x["search"] == pytest.approx(0.5)
    assert x["scroll"] == pytest.approx(0.5)  # 150 percentage points over 3 detail pages
    assert x["mobile"] == 1.0
    assert persona_features(BEHAVIOUR_STATES[1], 0.5)["mobile"] == 0.5
    assert persona_features(BEHAVIOUR_STATES[1], 0.5)["cart_churn"] == 1.0  # removals with no add
    assert persona_features(BEHAVIOUR_STATES[4], 0.5)["mobile"] == 0.0


def test_behaviour_features_are_zero_for_uci_sessions(uci):
    X, _, _ = uci
    assert all(x[f] == 0.0 for x in X for f in BEHAVIOUR)


def test_constant_zero_features_leave_uci_personas_alone(uci):
    """UCI has no cart, search, scroll or device events: zero variance gives z = 0 everywhere (no NaN in
    scaler, centroids, merging or naming), and clustering without them assigns the same personas."""
    X, _, _ = uci
    model = trained(X)
    assert np.isfinite(model.centers()).all() and np.isfinite(model.raw_centers()).all()
    assert np.all(model.centers()[:, [FEATURES.index(f) for f in BEHAVIOUR]] == 0.0)
    workers = [model.learner() for _ in range(2)]
    for w, shard in zip(workers, (X[:700], X[700:1400])):
        for x in shard:
            w.learn_one(x)
    merged = model.absorb(workers)
    assert np.isfinite(merged.centers()).all() and merged.names == model.names
    shorter = [{f: v for f, v in x.items() if f not in BEHAVIOUR} for x in X]
    without = [a[:3] for a in assignments(trained(shorter), X)]  # the version digest covers the feature list
    assert without == [a[:3] for a in assignments(model, X)]


def test_features_of_every_event_of_real_sessions_are_finite(uci):
    _, _, frame = uci
    for session in list(sessions(frame.head(50))):
        for _, state in fold_session(session):
            assert all(math.isfinite(v) for v in persona_features(state, 0.3).values())


# --- model basics ---------------------------------------------------------------------------------

def test_cold_model_is_unassigned_until_warm(uci):
    X, _, _ = uci
    model = PersonaModel(warmup=50)
    assert model.predict_one(X[0]).name == UNASSIGNED
    for x in X[:50]:
        model.learn_one(x)
    a = model.predict_one(X[0])
    assert a.persona_id >= 0 and a.name != UNASSIGNED and 0.0 <= a.confidence <= 1.0


@pytest.mark.parametrize("k", [5, 6, 7])
def test_configurable_number_of_personas_with_distinct_names(uci, k):
    X, _, _ = uci
    model = trained(X, k=k)
    assert len(set(model.names)) == k and HIGH_INTENT in model.names


@pytest.mark.parametrize("k", [4, 8])
def test_persona_count_out_of_range(k):
    with pytest.raises(ValueError):
        PersonaModel(k)


def test_shipped_artifact_loads_and_names_six_personas():
    model = PersonaModel.load(ARTIFACT)
    assert model.ready and len(set(model.names)) == 6 and model.version.startswith("persona-g")


# --- snapshots and merging ------------------------------------------------------------------------

def test_snapshot_round_trip_assigns_and_learns_identically(uci):
    X, _, _ = uci
    model = trained(X, upto=1500)
    raw = model.to_bytes()
    copy = PersonaModel.from_bytes(raw)
    assert copy.to_bytes() == raw and copy.version == model.version
    assert assignments(copy, X) == assignments(model, X)
    for x in X[1500:]:
        model.learn_one(x)
        copy.learn_one(x)
    assert copy.to_bytes() == model.to_bytes()
    assert assignments(copy, X) == assignments(model, X)


def test_snapshot_of_another_format_or_feature_list_is_rejected():
    import orjson
    state = orjson.loads(PersonaModel.default().to_bytes())
    for change in ({"format": 2}, {"features": list(FEATURES)[::-1]}, {"format": None}):
        with pytest.raises(ValueError):
            PersonaModel.from_bytes(orjson.dumps({**state, **change}))
    del state["moments"]
    with pytest.raises(KeyError):
        PersonaModel.from_bytes(orjson.dumps(state))


def test_absorb_gives_one_model_both_workers_agree(uci):
    X, _, _ = uci
    base = trained(X, upto=1000)
    workers = [base.learner() for _ in range(2)]
    for w, shard in zip(workers, (X[1000:1500], X[1500:])):
        for x in shard:
            w.learn_one(x)
    assert workers[0].version != workers[1].version
    assert [w.learned for w in workers] == [500, len(X) - 1500]
    merged = base.absorb([w.to_bytes() for w in workers])
    assert base.absorb([workers[1], workers[0]]).to_bytes() == merged.to_bytes()  # order-free
    a, b = (PersonaModel.from_bytes(merged.to_bytes()) for _ in range(2))
    assert a.version == b.version == merged.version != base.version
    assert merged.generation == base.generation + 1
    assert merged.names == base.names
    assert assignments(a, X) == assignments(b, X)
    assert sum(merged.counts) == sum(base.counts) + 1000


def test_absorbed_scaler_equals_one_model_that_saw_everything(uci):
    X, _, _ = uci
    base = trained(X, upto=1000)
    single = PersonaModel.from_bytes(base.to_bytes())
    workers = [base.learner() for _ in range(2)]
    for x in X[1000:1500]:
        workers[0].learn_one(x)
        single.learn_one(x)
    for x in X[1500:]:
        workers[1].learn_one(x)
        single.learn_one(x)
    merged = base.absorb(workers)
    for f in FEATURES:
        assert merged.scaler.counts[f] == single.scaler.counts[f]
        assert merged.scaler.means[f] == pytest.approx(single.scaler.means[f], rel=1e-9, abs=1e-12)
        assert merged.scaler.vars[f] == pytest.approx(single.scaler.vars[f], rel=1e-7, abs=1e-12)
    same = np.mean([merged.predict_one(x).name == single.predict_one(x).name for x in X])
    assert same >= 0.95


# --- stability and robustness ---------------------------------------------------------------------

def test_names_stable_after_further_learning(uci):
    X, _, _ = uci
    order = np.random.default_rng(7).permutation(len(X))
    model = PersonaModel(seed=7)
    for i in order[:1000]:
        model.learn_one(X[i])
    names = list(model.names)
    before = [model.predict_one(x).name for x in X]
    for i in order[1000:]:
        model.learn_one(X[i])
    after = [model.predict_one(x).name for x in X]
    assert model.names == names
    assert rule_names(model.centers()) == names  # the naming rule still agrees with the kept names
    assert np.mean([a == b for a, b in zip(before, after)]) >= 0.9


@pytest.mark.parametrize("source, bound", [("sample", 0.5), ("artifact", 0.25)])
def test_extreme_sessions_do_not_drag_centroids(uci, source, bound):
    """Each learned session moves one centroid by at most step × 2·clip σ; steps are 1/n per cluster."""
    X, _, _ = uci
    model = trained(X) if source == "sample" else PersonaModel.load(ARTIFACT)  # 2,000 vs 9,864 sessions
    centers = model.centers()
    extremes = [persona_features(s, p) for s in EXTREME_STATES for p in (0.0, 1.0, math.nan)]
    extremes += [{f: 1e12 for f in FEATURES}, {f: -1e12 for f in FEATURES}, {f: math.nan for f in FEATURES},
                 {f: math.inf for f in FEATURES}, {"pages": 1e9}, {}]
    for x in extremes * 3:
        model.learn_one(x)
    moved = np.abs(model.centers() - centers)
    assert np.isfinite(model.centers()).all()
    assert moved.max() < bound, moved.max()  # in σ units, after 60+ adversarial sessions


# --- naming ---------------------------------------------------------------------------------------

def centroid(**z: float) -> np.ndarray:
    return np.array([z.get(f, 0.0) for f in FEATURES])


def uci_like_centroids() -> list[np.ndarray]:
    """A buyer, a bouncer, an account visitor, an info seeker and a researcher (σ units, no behaviour features)."""
    return [centroid(intent=2.0, value=2.0, pages=1.0), centroid(bounce=2.0, exit=2.0, pages=-1.5),
            centroid(admin_share=2.0), centroid(info_share=2.5), centroid(pages=1.0, dwell=1.0, intent=-0.3)]


def test_search_and_cart_churn_is_named_deal_seeker():
    deal = centroid(search=2.0, cart_churn=1.5, cart_adds=0.8, pages=0.7, value=-0.5)
    names = rule_names(np.array(uci_like_centroids() + [deal]))
    assert names[-1] == "Deal Seeker" and names[:5] == [HIGH_INTENT, "Bouncer", "Account & Cart Visitor",
                                                         "Info Seeker", "Researcher"]


def test_short_low_intent_phone_visits_are_named_mobile_browser():
    phone = centroid(mobile=1.2, pages=-0.6, intent=-0.5, product_share=0.3)
    assert rule_names(np.array(uci_like_centroids() + [phone]))[-1] == "Mobile Browser"


@pytest.mark.parametrize("seventh", [centroid(product_share=1.0, pages=-0.5, value=-1.0, intent=-1.0),
                                     centroid(pages=1.5, dwell=-1.5), centroid(product_share=0.2)])
def test_behaviour_names_need_the_behaviour(seventh):
    """Without search, cart churn or phones in the data (z = 0, as on UCI), no centroid is a Deal Seeker or
    Mobile Browser, however well their other weights fit it."""
    for k in (6, 7):
        centers = uci_like_centroids() + [seventh, centroid(pages=0.8, product_share=0.8, value=-1.0, intent=-1.0)]
        names = rule_names(np.array(centers[:k]))
        assert len(set(names)) == k and not {"Deal Seeker", "Mobile Browser"} & set(names)


def test_weighted_features_round_trip_and_assign_alike():
    """River holds weighted centers, :meth:`PersonaModel.centers` gives σ; snapshots and both assign paths agree."""
    rng = np.random.default_rng(3)
    X = [{**{f: float(rng.uniform(*BOUNDS[f])) for f in FEATURES}, "mobile": float(rng.integers(2))}
         for _ in range(400)]
    model = PersonaModel(5, warmup=100)
    for x in X:
        model.learn_one(x)
    j = FEATURES.index("mobile")
    assert WEIGHTS["mobile"] == 0.5
    assert [model.kmeans.centers[i]["mobile"] for i in range(5)] == pytest.approx(0.5 * model.centers()[:, j])
    copy = PersonaModel.from_bytes(model.to_bytes())
    assert copy.to_bytes() == model.to_bytes() and assignments(copy, X) == assignments(model, X)
    assert [a.persona_id for a in model.predict_many(X)] == [model.predict_one(x).persona_id for x in X]


# --- quality on real sessions -----------------------------------------------------------------------

def test_high_intent_persona_lift_and_spread(uci):
    X, y, _ = uci
    model = trained(X)
    table = profile_table(X, y, [model.predict_one(x).name for x in X])
    assert table["lift"].idxmax() == HIGH_INTENT
    assert table.loc[HIGH_INTENT, "lift"] >= 3.0
    rates = table["conversion %"] / 100
    assert rates.max() - rates.min() >= 0.4 and rates.min() < 0.5 * y.mean()


def test_shipped_artifact_lift_on_sample(uci):
    X, y, _ = uci
    model = PersonaModel.load(ARTIFACT)
    table = profile_table(X, y, [model.predict_one(x).name for x in X])
    assert table.loc[HIGH_INTENT, "lift"] >= 3.0


# --- actions --------------------------------------------------------------------------------------

def test_recommendations_have_defaults_and_are_configurable():
    assert "reviews" in recommend(HIGH_INTENT, "high")
    assert "discount" in recommend("Account & Cart Visitor", "low")
    assert "simplif" in recommend("Bouncer", "medium")
    assert recommend("Unknown Persona", "low") == DEFAULT_ACTIONS[("*", "low")]
    assert recommend("Bouncer", "high", {("*", "*"): "x"}) == "x"
    assert recommend("Bouncer", "high", {}) == "no intervention"


def test_predict_many_assigns_like_predict_one(uci):
    X, _, _ = uci
    model = PersonaModel.default()
    odd = [{}, {"pages": math.nan, "dwell": math.inf, "intent": None}, {f: 1e9 for f in FEATURES},
           {f: -1e9 for f in FEATURES}]
    many = model.predict_many(X + odd)
    one = [model.predict_one(x) for x in X + odd]
    assert [(a.persona_id, a.name, a.version) for a in many] == [(a.persona_id, a.name, a.version) for a in one]
    assert np.allclose([a.confidence for a in many], [a.confidence for a in one], rtol=0, atol=1e-9)
    assert model.predict_many([]) == []
