"""Actions catalog, Thompson sampling, per-visit decisions and rewards, without Kafka."""

from __future__ import annotations

import doctest
import itertools

import numpy as np
import orjson
import pytest

import models.actions
import models.bandit.policy
import models.bandit.thompson
from models.actions import BANDS, PERSONAS, ActionCatalog, CatalogError, default_catalog, recommend
from models.bandit import ActionPolicy, BetaBandit, Handover
from models.features import SessionState
from models.intent import IntentModel, ModelFileError
from models.persona import PersonaModel
from stream.pages import PageTable
from stream.persona_sync import BANDIT_KEY, SharedPersona
from stream.scoring import Scorer
from stream.sessions import Record, SessionProcessor

HIB = "High-Intent Buyer"


@pytest.mark.parametrize("module", [models.actions, models.bandit.thompson, models.bandit.policy])
def test_docstring_examples(module):
    assert doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed == 0


# --- catalog --------------------------------------------------------------------------------------

def test_the_shipped_catalog_keeps_the_built_in_texts_as_default_arms():
    catalog = default_catalog()
    for persona, band in itertools.product(PERSONAS, BANDS):
        arms = catalog.arms(persona, band)
        assert arms[0].text == recommend(persona, band), (persona, band)
        assert len(arms) >= 2 and len({a.action_id for a in arms}) == len(arms)
    assert {"persona", "band", "action_id", "text"} == set(catalog.listing()[0])
    assert [a.action_id for a in catalog.arms("Unassigned", "low")] == ["default"]  # a cold model's visits


def write(tmp_path, document) -> str:
    path = tmp_path / "actions.json"
    path.write_bytes(document if isinstance(document, bytes) else orjson.dumps(document))
    return str(path)


GOOD = {"persona": "Bouncer", "band": None, "action_id": "a", "text": "t"}


@pytest.mark.parametrize("document, message", [
    ({"actions": [GOOD, {**GOOD, "persona": "Shopaholic", "action_id": "b"}]},
     "entry 1 ('Shopaholic', action_id 'b'): persona: unknown persona 'Shopaholic'"),
    ({"actions": [GOOD, GOOD]}, "entry 1 ('Bouncer', band None): action_id 'a' appears twice"),
    ({"actions": [{**GOOD, "band": "huge"}]}, "entry 0 ('Bouncer', action_id 'a'): band:"),
    ({"actions": [{**GOOD, "action_id": "has space"}]}, "entry 0 ('Bouncer', action_id 'has space'): action_id:"),
    ({"actions": [{**GOOD, "txet": "typo"}]}, "entry 0 ('Bouncer', action_id 'a'): txet: Extra inputs"),
    ({"actions": []}, "actions: List should have at least 1 item"),
    (b"{not json", "is not valid JSON"),
])
def test_an_invalid_catalog_names_the_file_and_the_entry(tmp_path, document, message):
    path = write(tmp_path, document)
    with pytest.raises(CatalogError) as caught:
        ActionCatalog.load(path)
    assert path in str(caught.value) and message in str(caught.value)
    assert isinstance(caught.value, ModelFileError)  # the worker command stops on it at start-up


def test_a_missing_catalog_is_a_catalog_error(tmp_path):
    with pytest.raises(CatalogError, match="is missing"):
        ActionCatalog.load(tmp_path / "nope.json")


# --- Thompson sampling ------------------------------------------------------------------------------

@pytest.mark.parametrize("posteriors", [[(1, 1), (1, 1)], [(3, 40), (5, 40), (2, 9)], [(300, 700), (320, 680)],
                                        [(1, 1), (60, 40), (2, 1)]])
def test_propensities_match_the_frequency_of_thompson_draws(posteriors):
    bandit = BetaBandit(prior=(0, 0))
    arms = [f"arm{i}" for i in range(len(posteriors))]
    for arm, (a, b) in zip(arms, posteriors):
        bandit.counts[("p", "low", arm, "bandit")] = [a, b]
    exact = bandit.propensities(("p", "low"), arms)
    a, b = np.array(posteriors, dtype=float).T
    draws = np.random.default_rng(1).beta(a, b, size=(200_000, len(arms))).argmax(axis=1)
    frequency = np.bincount(draws, minlength=len(arms)) / len(draws)
    assert abs(sum(exact) - 1) < 1e-9
    assert np.allclose(exact, frequency, atol=0.005), (exact, frequency)
    uniforms = np.random.default_rng(2).random((4000, len(arms)))
    picks = [bandit.predict_one(("p", "low"), arms, u) for u in uniforms]
    assert np.allclose([picks.count(arm) / len(picks) for arm in arms], exact, atol=0.03)


def test_draws_of_any_number_of_arms_are_uniform_and_replayable():
    uniforms = np.array([models.bandit.policy._uniforms(f"s{i}\x1f0\x1f0", 11) for i in range(4000)])
    assert uniforms.shape == (4000, 11) and 0 < uniforms.min() and uniforms.max() < 1
    assert np.allclose(uniforms.mean(axis=0), 0.5, atol=0.02) and abs(np.corrcoef(uniforms.T)[0, 8]) < 0.05
    assert np.array_equal(models.bandit.policy._uniforms("s1\x1f0\x1f0", 11), uniforms[1])
    bandit, arms = BetaBandit(), [f"arm{i}" for i in range(11)]
    assert {bandit.predict_one(("p", "low"), arms, u) for u in uniforms[:400]} == set(arms)


def test_counts_are_kept_by_policy_and_summed_in_the_posterior():
    bandit = BetaBandit()
    bandit.learn_one((HIB, "high"), "x", True, "bandit")
    bandit.learn_one((HIB, "high"), "x", False, "holdout")
    bandit.learn_one((HIB, "low"), "x", True)
    assert bandit.posterior((HIB, "high"), "x") == (2.0, 2.0)
    assert bandit.posterior((HIB, "high"), "y") == (1.0, 1.0)
    assert bandit.learned == 3
    assert BetaBandit.from_bytes(bandit.to_bytes()).version == bandit.version != BetaBandit().version


def test_absorbing_hand_overs_adds_counts_once_per_hand_over():
    worker = [BetaBandit(), BetaBandit()]
    worker[0].learn_one((HIB, "high"), "x", True)
    worker[1].learn_one((HIB, "high"), "x", False)
    worker[1].learn_one((HIB, "high"), "y", False)
    handovers = [Handover.from_bytes(Handover("w0", 0, worker[0]).to_bytes()), Handover("w1", 0, worker[1])]
    shared = BetaBandit().absorb(handovers)
    assert shared.generation == 1 and shared.posterior((HIB, "high"), "x") == (2.0, 2.0)
    again = shared.absorb(handovers + [Handover("w0", 1, worker[0])])  # read again, plus w0's next one
    assert again.generation == 2 and again.posterior((HIB, "high"), "x") == (3.0, 2.0)
    assert again.absorbed == {"w0": 1, "w1": 0}


def test_bad_snapshots_are_value_errors():
    for raw in (b"{}", b"[1]", b"nope", orjson.dumps({"format": 1, "counts": [[1]]})):
        with pytest.raises(ValueError):
            BetaBandit.from_bytes(raw)
        with pytest.raises(ValueError):
            Handover.from_bytes(raw)


def test_thompson_sampling_finds_the_arm_that_converts_twice_as_often():
    """Closed loop without Kafka: 600 visits of one context, arm 'b' converts 2× the others."""
    rng = np.random.default_rng(3)
    policy, shared = ActionPolicy(default_catalog(), holdout=0.0), BetaBandit()
    truth = {"reviews-delivery": 0.3, "free-shipping": 0.6, "urgency": 0.3}
    chosen = []
    for i in range(600):
        state = SessionState()
        decision = policy.decide(f"s{i}", state, HIB, "high", shared)
        chosen.append(decision.action.action_id)
        shared.learn_one((HIB, "high"), decision.action.action_id, bool(rng.random() < truth[chosen[-1]]))
    assert chosen[300:].count("free-shipping") / 300 >= 0.8


# --- decisions --------------------------------------------------------------------------------------

def test_a_tenth_of_sessions_is_held_out_with_the_default_action():
    policy = ActionPolicy(default_catalog(), holdout=0.1)
    held = [policy.in_holdout(f"session-{i}") for i in range(20_000)]
    assert 0.09 < sum(held) / len(held) < 0.11
    session = f"session-{held.index(True)}"
    decision = policy.decide(session, SessionState(), HIB, "high", BetaBandit())
    assert (decision.policy, decision.propensity) == ("holdout", 1.0)
    assert decision.action == default_catalog().default(HIB, "high")


def test_decisions_are_sticky_and_replayable():
    policy, bandit = ActionPolicy(default_catalog(), holdout=0.0), BetaBandit()
    outcomes = set()
    for i in range(40):
        state = SessionState(visit=2)
        first = policy.decide(f"s{i}", state, HIB, "high", bandit)
        assert policy.decide(f"s{i}", state, HIB, "high", bandit) == first
        assert policy.decide(f"s{i}", SessionState(visit=2), HIB, "high", bandit) == first  # replayed: same draw
        second = policy.decide(f"s{i}", state, "Researcher", "high", bandit)
        assert second.decision_id != first.decision_id and state.decision[0] == 1
        assert [d[:3] for d in state.unrewarded] == [[HIB, "high", first.action.action_id],
                                                    ["Researcher", "high", second.action.action_id]]
        outcomes.add(first.action.action_id)
    assert len(outcomes) == 3  # the draws do differ between sessions


# --- rewards in the session processor ---------------------------------------------------------------

@pytest.fixture(scope="module")
def intent():
    return IntentModel.load()


OFFSETS = itertools.count()


def processor(intent, holdout: float = 0.0) -> SessionProcessor:
    scorer = Scorer(intent, SharedPersona(PersonaModel.default()), top_features=0,
                    actions=ActionPolicy(default_catalog(), holdout))
    return SessionProcessor(scorer=scorer, pages=PageTable(intent.page_prior), gap_s=1800)


def event(sid: str, minute: int, kind: str = "page_view", bot: bool = False, eid: str | None = None) -> dict:
    return {"type": kind, "event_id": eid or f"{sid}-{kind}-{minute}", "session_id": sid, "bot": bot,
            "ts": f"2024-05-01T10:{minute:02d}:00Z", "page": {"id": f"p{minute}", "type": "product"}}


def feed(proc: SessionProcessor, events: list[dict], states: dict, partition: int = 0):
    records = [Record(e["session_id"].encode(), orjson.dumps(e), "t", partition, next(OFFSETS)) for e in events]
    return replay(proc, records, states)


def replay(proc: SessionProcessor, records: list[Record], states: dict):
    result = proc.process(records, states)
    states.update({key: blob for key, (_, blob) in result.states.items()})
    result.records = records
    return result


def outcomes(proc: SessionProcessor) -> dict[tuple, list[int]]:
    return dict(proc.personas.rewards.counts)


def test_every_persona_event_carries_its_decision(intent):
    result = feed(processor(intent, holdout=0.5), [event(f"v{i}", 0) for i in range(40)], {})
    for p in result.persona_events():
        arms = default_catalog().arms(p.persona, p.intent_band)
        assert p.action_id in [a.action_id for a in arms] and p.policy in {"bandit", "holdout"}
        assert p.recommended_action == default_catalog().action(p.persona, p.intent_band, p.action_id).text
        assert 0 < p.propensity <= 1 and len(p.decision_id) == 16
        assert p.bandit_model_version == BetaBandit().version
        if p.policy == "holdout":
            assert p.propensity == 1 and p.action_id == arms[0].action_id
    assert {p.policy for p in result.persona_events()} == {"bandit", "holdout"}


def test_a_purchase_after_a_decision_rewards_it_once_and_the_end_of_a_visit_rewards_the_rest_zero(intent):
    proc, states = processor(intent), {}
    decided = feed(proc, [event("a", 0), event("b", 0)], states).persona_events()
    key = {p.session_id: (p.persona, p.intent_band, p.action_id, p.policy) for p in decided}
    bought = feed(proc, [event("a", 1, "purchase")], states)
    assert outcomes(proc) == {key["a"]: [1, 0]}
    assert bought.persona_events()[0].decision_id == decided[0].decision_id  # a purchase is no new decision
    replay(proc, bought.records, states)  # the purchase record read again (same offset)
    feed(proc, [event("a", 1, "purchase")], states)  # ... and sent again (same event id)
    feed(proc, [event("a", 2, "purchase")], states)  # a second purchase: nothing left to reward
    assert outcomes(proc) == {key["a"]: [1, 0]}
    feed(proc, [event("c", 59)], states)  # the partition's clock passes both visits by the gap
    assert outcomes(proc) == {key["a"]: [1, 0], key["b"]: [0, 1]}
    assert SessionState.from_bytes(states[b"a"]).unrewarded == []


def test_a_purchase_in_the_batch_that_makes_the_decision_does_not_reward_it(intent):
    proc, states = processor(intent), {}
    result = feed(proc, [event("a", 0), event("a", 1, "purchase")], states)
    assert outcomes(proc) == {} and SessionState.from_bytes(states[b"a"]).unrewarded
    feed(proc, [event("z", 59)], states)
    p = result.persona_events()[0]
    assert outcomes(proc) == {(p.persona, p.intent_band, p.action_id, "bandit"): [0, 1]}


def test_a_restarted_processor_rewards_from_the_stored_state_once(intent):
    proc, states = processor(intent), {}
    feed(proc, [event("a", 0)], states)
    bought = feed(proc, [event("a", 1, "purchase")], states)
    restarted = processor(intent)
    restarted.restore_index(states.items())
    replay(restarted, bought.records, states)  # redelivered after the restart
    feed(restarted, [event("z", 59)], states)
    assert outcomes(restarted) == {} and outcomes(proc) != {}


def test_bot_visits_decide_but_are_not_learned_from(intent):
    proc, states = processor(intent), {}
    assert feed(proc, [event("bot", 0, bot=True)], states).persona_events()[0].action_id
    feed(proc, [event("bot", 1, "purchase", bot=True), event("z", 59)], states)
    assert outcomes(proc) == {}


def test_workers_decide_alike_with_the_shared_posteriors_handed_over(intent):
    workers, states = [processor(intent), processor(intent)], [{}, {}]
    for index, proc in enumerate(workers):
        feed(proc, [event(f"w{index}-{i}", 0) for i in range(20)], states[index])
        feed(proc, [event(f"w{index}-{i}", 1, "purchase") for i in range(0, 20, 2)], states[index])
    handovers = [Handover.from_bytes(w.personas.take_rewards()) for w in workers]
    assert workers[0].personas.take_rewards() is None
    merged = workers[0].personas.absorb_rewards(handovers)
    assert merged.learned == 20 and merged.generation == 1
    workers[1].personas.apply(BANDIT_KEY, merged.to_bytes())
    twins = [feed(w, [event("twin", 30)], {}).persona_events()[0] for w in workers]
    assert twins[0].bandit_model_version == twins[1].bandit_model_version == merged.version
    assert (twins[0].action_id, twins[0].propensity) == (twins[1].action_id, twins[1].propensity)


# --- the simulator's pure parts ----------------------------------------------------------------------

def test_the_simulation_calendar_keeps_dates_and_never_runs_partition_clocks_backwards(sample_frame):
    from datetime import datetime, timezone

    from stream.tools.simulate import plan, visits_of

    _, visits = visits_of(sample_frame, 500, np.random.default_rng(0), "t")
    assert len(visits) == 500 and len({v.session_id for v in visits}) == 500  # cycles through the 400 rows
    days = {v.session_id: v.day for v in visits}
    waves = plan(visits, wave_size=40, gap_s=1800)
    assert sum(len(w.visits) for w in waves) == 500
    for previous, wave in zip(waves, waves[1:]):
        first = min(datetime.fromisoformat(e["ts"]).timestamp() for v in wave.visits for e in v.events)
        assert first > previous.tick_time(1800) - 1800  # not ended by the previous wave's tick
        assert wave.end > previous.end
    for wave in waves:
        for visit in wave.visits:
            times = [datetime.fromisoformat(e["ts"]).timestamp() for e in visit.events]
            assert max(times) == pytest.approx(wave.end, abs=1e-5) and times == sorted(times)
            start = datetime.fromtimestamp(min(times), timezone.utc)
            assert start.timestamp() // 86400 * 86400 == days[visit.session_id]  # same start date as its row


def test_lift_and_off_policy_estimates_of_a_known_log():
    from stream.tools.simulate import ipw, purchase_probability, summarize

    assert purchase_probability(0.0, 2.0) == 0.02 and purchase_probability(0.7, 2.0) == 1.0
    rng = np.random.default_rng(5)
    rows = []
    for i in range(20_000):  # default arm converts 0.1, the other 0.2; the bandit picks the other with p = 0.75
        held = i % 10 == 0
        default = held or rng.random() < 0.25
        rows.append({"policy": "holdout" if held else "bandit", "default": default,
                     "propensity": 1.0 if held else (0.25 if default else 0.75),
                     "bought": bool(rng.random() < (0.1 if default else 0.2)), "regret": 0.0 if not default else 0.1,
                     "p_purchase": 0.1 if default else 0.2, "p_default": 0.1, "posterior_default": 0.12})
    estimate = ipw([r for r in rows if r["policy"] == "bandit"], resamples=200)
    assert estimate["default_policy_snips"] == pytest.approx(0.1, abs=0.01)
    assert estimate["lift"] == pytest.approx(0.175 / 0.1 - 1, abs=0.15)
    assert estimate["lift_95"][0] < estimate["lift"] < estimate["lift_95"][1]
    assert estimate["default_policy_dr"] == pytest.approx(0.1, abs=0.01)  # a biased reward model is corrected
    assert estimate["dr_lift_95"][0] < 0.75 < estimate["dr_lift_95"][1]
    decisions = [{"persona": HIB, "intent_band": "high", "policy": r["policy"],
                  "action_id": "reviews-delivery" if r["default"] else "free-shipping"} for r in rows]
    summary = summarize(rows, decisions, default_catalog(), {HIB: {"free-shipping": 2.0}})
    assert summary["holdout_share"] == 0.1
    assert summary["best_arm_share"][HIB]["arm"] == "free-shipping"
    assert summary["best_arm_share"][HIB]["second_half"] == pytest.approx(0.75, abs=0.02)
    assert summary["true_lift"] == pytest.approx(0.75, abs=0.02)
    low, high = summary["holdout_lift"]["lift_95"]
    assert low < 0.75 < high and low < summary["holdout_lift"]["lift"] < high
    assert summary["arm_share"][HIB]["second_half"]["free-shipping"] == pytest.approx(0.75, abs=0.02)


# --- the dashboard's aggregation -----------------------------------------------------------------------

def test_the_dashboard_counts_each_decision_once_within_its_window():
    from stream.web.dashboard import Dashboard, lift

    board = Dashboard(window_s=60, catalog=default_catalog())
    event = {"persona": HIB, "intent_band": "high", "decision_id": "d1", "action_id": "free-shipping",
             "policy": "bandit"}
    board.observe(1000.0, event)
    board.observe(1001.0, event)  # the same decision, published again with the visit's next event
    board.observe(1002.0, {**event, "decision_id": "d2", "action_id": "reviews-delivery", "policy": "holdout"})
    board.observe(1003.0, {**event, "persona": "Bouncer", "intent_band": "low", "decision_id": "d3",
                           "action_id": "simplify"})
    bandit = BetaBandit()
    for reward in (True, True, False):
        bandit.learn_one((HIB, "high"), "free-shipping", reward, "bandit")
    bandit.learn_one((HIB, "high"), "reviews-delivery", False, "holdout")
    bandit.learn_one((HIB, "high"), "reviews-delivery", True, "holdout")
    view = board.snapshot(1005.0, bandit)
    mix = [(p["persona"], p["events"], p["bands"]["high"]) for p in view["personas"]]
    assert mix == [(HIB, 3, 3), ("Bouncer", 1, 0)]
    arms = {(a["persona"], a["action_id"]): a for a in view["arms"]}
    shipping = arms[(HIB, "free-shipping")]
    assert (shipping["decisions"], shipping["rewarded"], shipping["purchases"]) == (1, 3, 2)
    assert shipping["posterior_mean"] == pytest.approx(3 / 5)
    assert shipping["interval_95"][0] < 0.6 < shipping["interval_95"][1]
    assert arms[(HIB, "reviews-delivery")]["holdout_decisions"] == 1 and arms[(HIB, "reviews-delivery")]["default"]
    assert view["lift"]["lift"] == pytest.approx((2 / 3) / (1 / 2) - 1) == lift(bandit)["lift"]
    assert board.snapshot(1100.0, bandit)["personas"] == []  # past the window
