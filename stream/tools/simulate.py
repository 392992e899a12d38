"""`personastream simulate`: a closed loop against the configured broker and running workers.

UCI rows are replayed as visits with fresh session ids (``sim-<run>-<i>``), a wave at a time. For
each visit the simulator reads its decision from the personas topic (the newest PersonaEvent once
it reflects all the visit's events), then sends a ``purchase`` with probability

    min(1, base × TRUTH[persona][action_id])      (multiplier 1 for an action the truth omits)

where ``base`` is the visit's calibrated intent score as published with that decision, clipped to
[0.01, 0.99] — on its row's own date this is the row's offline ``score-uci`` score (stream/offline
parity); the 0/1 label is never used.
The purchase is dated 5 s after the visit's last event, then one bot "tick" per partition, dated
past the session gap, ends the wave's visits (their unrewarded decisions earn 0). The simulator
waits until the shared posteriors have absorbed every decision's reward before the next wave, so
each wave decides with what the waves before it taught.

**Calendar.** A visit's features depend on its start date (month, weekend, special day) and not on
its time of day, and a partition's event time must not run backwards. Visits are grouped by the
start date UCI replay gives their row, dates in order, and each date's visits are split into waves
whose visits all end at the same instant; a wave starts after the previous wave's tick. Visits longer
than :data:`MAX_VISIT_S` are left out. A visit whose wave spills past midnight starts a day later than
its row says (``redated`` in simulation.json). If the events topic already holds later events, the
whole calendar moves on by whole 53-week blocks (weekdays kept, and months for the early-month
dates UCI replay uses).

Outputs (``--out``): ``simulation.json`` — every visit's final decision and purchase draw, every
decision; conversion of bandit vs holdout and the lift with a 95% interval; the off-policy value of
"always the default action" from the bandit's logged propensities (IPS, SNIPS, doubly robust) and
the bandit's lift over it (:func:`ipw`); the true lift computed from the truth file; expected regret
against the truth's best arm; each arm's share of a persona's decisions by half — and the PNGs of
:func:`plots`.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from models.actions import ActionCatalog
from models.bandit import BetaBandit
from stream.config import Settings
from stream.kafka_io import assign_all
from stream.persona_sync import BANDIT_KEY
from stream.tools.replay import seed_pages, uci_records
from stream.topics import persona_model_topic

MAX_VISIT_S = 3 * 3600.0
PURCHASE_DELAY_S = 5.0
"""A purchase is dated this long after its visit's last event."""
MARGIN_S = 60.0
DAY_S = 86_400.0
WEEKS_53_S = 371 * DAY_S

Truth = Mapping[str, Mapping[str, float]]
"""persona -> action_id -> conversion multiplier."""


def load_truth(path: str | Path) -> dict[str, dict[str, float]]:
    """A truth file: ``{persona: {action_id: multiplier ≥ 0}}``; ValueError says what is wrong."""
    raw = orjson.loads(Path(path).read_bytes())
    if not isinstance(raw, dict) or not all(isinstance(arms, dict) for arms in raw.values()):
        raise ValueError(f"{path}: expected {{persona: {{action_id: multiplier}}}}")
    truth = {str(p): {str(a): float(m) for a, m in arms.items()} for p, arms in raw.items()}
    if any(m < 0 or not math.isfinite(m) for arms in truth.values() for m in arms.values()):
        raise ValueError(f"{path}: multipliers must be finite and ≥ 0")
    return truth


def purchase_probability(base: float, multiplier: float) -> float:
    """min(1, base × multiplier), base clipped to [0.01, 0.99]."""
    return min(1.0, min(max(base, 0.01), 0.99) * multiplier)


# --- the calendar -------------------------------------------------------------------------------------

@dataclass
class Visit:
    session_id: str
    row: int
    events: list[dict]
    """Events with their original times (retimed by :func:`plan`)."""
    day: float
    """Midnight (epoch s, UTC) of the visit's start date."""
    duration: float


@dataclass
class Wave:
    number: int
    end: float
    """Epoch s at which every visit of the wave has its last event."""
    visits: list[Visit]

    def tick_time(self, gap_s: float) -> float:
        """When the bot tick that ends the wave's visits is dated: past the purchases by the gap."""
        return self.end + PURCHASE_DELAY_S + 1.0 + gap_s

    def records(self) -> list[tuple[bytes, bytes]]:
        """(key, value) of the wave's events, in time order."""
        timed = [(_epoch(event["ts"]), visit.session_id.encode(), orjson.dumps(event))
                 for visit in self.visits for event in visit.events]
        return [(key, value) for _, key, value in sorted(timed, key=lambda item: item[0])]


def visits_of(frame, n: int, rng: np.random.Generator, run: str) -> tuple[list[tuple[bytes, bytes]], list[Visit]]:
    """The page catalog and ``n`` visits of UCI rows drawn without replacement (cycling if ``n`` exceeds
    them), with fresh session ids; rows of more than :data:`MAX_VISIT_S` seconds are left out."""
    seconds = frame["Administrative_Duration"] + frame["Informational_Duration"] + frame["ProductRelated_Duration"]
    eligible = np.flatnonzero(seconds.to_numpy() <= MAX_VISIT_S)
    rows = np.concatenate([rng.permutation(eligible) for _ in range(math.ceil(n / len(eligible)))])[:n]
    catalog, records = uci_records(frame.iloc[rows].reset_index(drop=True))
    events: dict[bytes, list[dict]] = defaultdict(list)
    for record in records:
        events[record.key].append(orjson.loads(record.value))
    visits = []
    for i, row in enumerate(rows):
        sid = f"sim-{run}-{i}"
        renamed = [{**e, "session_id": sid, "event_id": f"{sid}-{k}"}
                   for k, e in enumerate(events[f"uci-{i}".encode()])]
        times = [_epoch(e["ts"]) for e in renamed]
        visits.append(Visit(sid, int(row), renamed, min(times) // DAY_S * DAY_S, max(times) - min(times)))
    return catalog, visits


def plan(visits: list[Visit], wave_size: int, gap_s: float, not_before: float = -math.inf) -> list[Wave]:
    """Waves of visits of one start date each, dates in order, retimed in place so each wave's visits end
    together and start after the previous wave's tick (see the module docstring)."""
    per_day = max(1, int(DAY_S // (MAX_VISIT_S + MARGIN_S)))
    first_day = min(v.day for v in visits)
    shift = max(0, math.ceil((not_before - first_day) / WEEKS_53_S)) * WEEKS_53_S if not_before > first_day else 0.0
    by_day: dict[float, list[Visit]] = defaultdict(list)
    for visit in visits:
        by_day[visit.day].append(visit)
    waves: list[Wave] = []
    free = -math.inf  # after the previous wave's tick, events older than this would end at once
    for day in sorted(by_day):
        group = by_day[day]
        size = max(wave_size, math.ceil(len(group) / per_day))
        for start in range(0, len(group), size):
            chunk = group[start:start + size]
            end = max(free, day + shift + MARGIN_S) + max(v.duration for v in chunk)
            for visit in chunk:
                offset = end - max(_epoch(e["ts"]) for e in visit.events)
                for event in visit.events:
                    event["ts"] = _iso(_epoch(event["ts"]) + offset)
            waves.append(Wave(len(waves), end, chunk))
            free = waves[-1].tick_time(gap_s) - gap_s + MARGIN_S
    return waves


# --- the loop -----------------------------------------------------------------------------------------

@dataclass
class Options:
    truth: Path
    out: Path
    csv: Path
    visits: int = 2000
    wave_size: int = 60
    seed: int = 7
    wave_timeout_s: float = 180.0


class Link:
    """The simulator's side of Kafka: a producer, and readers of this run's PersonaEvents (decisions) and
    of the shared posteriors on the model topic."""

    def __init__(self, conf: Settings, run: str, timeout_s: float) -> None:
        self.conf, self.run, self.timeout_s = conf, run, timeout_s
        self.decisions: dict[str, dict] = {}
        """decision_id -> the first PersonaEvent that carried it (+ ``wave``), for this run's visits."""
        self.newest: dict[str, dict] = {}
        """session id -> its newest PersonaEvent."""
        self.bandit = BetaBandit()
        """The newest shared posteriors."""
        self.wave = 0
        self.producer = AIOKafkaProducer(bootstrap_servers=conf.bootstrap, acks="all", enable_idempotence=True,
                                         linger_ms=5, max_batch_size=262144)
        self.outputs = AIOKafkaConsumer(bootstrap_servers=conf.bootstrap, group_id=None, enable_auto_commit=False,
                                        max_partition_fetch_bytes=8 * 1024 * 1024)
        self.models = AIOKafkaConsumer(bootstrap_servers=conf.bootstrap, group_id=None, enable_auto_commit=False)

    async def __aenter__(self) -> Link:
        for client in (self.producer, self.outputs, self.models):
            await client.start()
        for tp in await assign_all(self.outputs, self.conf.personas_topic, from_beginning=False):
            await self.outputs.position(tp)  # resolve "the end" now, before anything is sent
        await assign_all(self.models, persona_model_topic(self.conf))
        await self._read_models(timeout_ms=1000)
        return self

    async def __aexit__(self, *exc) -> None:
        for client in (self.producer, self.outputs, self.models):
            await client.stop()

    async def partitions(self) -> list[int]:
        return sorted((await self.outputs._client.fetch_all_metadata()).partitions_for_topic(self.conf.events_topic))

    async def send(self, records: list[tuple[bytes, bytes, int | None]]) -> None:
        """Produce (key, value, partition or None) in order and wait until the broker has them all."""
        pending = [await self.producer.send(self.conf.events_topic, value, key=key, partition=partition)
                   for key, value, partition in records]
        await self.producer.flush()
        await asyncio.gather(*pending)

    def reflects(self, events: Mapping[str, int]) -> bool:
        """Each visit's newest PersonaEvent reflects its ``events[session id]`` events."""
        return all(self.newest.get(sid, {}).get("events_seen") == n for sid, n in events.items())

    async def until(self, condition: Callable[[], bool], what: str) -> None:
        """Read both topics until ``condition()``; TimeoutError naming ``what``."""
        deadline = time.monotonic() + self.timeout_s
        ours, ticks = f"sim-{self.run}-", f"sim-{self.run}-tick-"
        while True:
            for records in (await self.outputs.getmany(timeout_ms=100, max_records=10000)).values():
                for record in records:
                    event = orjson.loads(record.value)
                    sid = event["session_id"]
                    if sid.startswith(ours) and not sid.startswith(ticks):
                        self.newest[sid] = event
                        if event.get("decision_id") and event["decision_id"] not in self.decisions:
                            self.decisions[event["decision_id"]] = {**event, "wave": self.wave}
            await self._read_models(timeout_ms=0)
            if condition():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {self.timeout_s:g}s for {what}: are workers running on these topics "
                                   "(and PERSONASTREAM_PERSONA_SYNC_S short)?")

    async def _read_models(self, timeout_ms: int) -> None:
        for records in (await self.models.getmany(timeout_ms=timeout_ms, max_records=10000)).values():
            for record in records:
                if record.key == BANDIT_KEY and record.value is not None:
                    self.bandit = BetaBandit.from_bytes(record.value)


async def simulate(conf: Settings, opts: Options, frame, log: Callable[[str], None] = print) -> dict:
    """Run the closed loop; write ``opts.out``/simulation.json and the PNGs; return the summary."""
    catalog = ActionCatalog.load(conf.actions)
    truth = load_truth(opts.truth)
    rng = np.random.default_rng(opts.seed)
    run = uuid.uuid4().hex[:8]
    pages, visits = visits_of(frame, opts.visits, rng, run)
    rows: list[dict] = []
    started = time.monotonic()
    async with Link(conf, run, opts.wave_timeout_s) as link:
        partitions = await link.partitions()
        waves = plan(visits, opts.wave_size, conf.session_gap_s, await _newest_event_time(conf))
        await seed_pages(conf.bootstrap, conf.pages_topic, pages)
        await asyncio.sleep(1.0)  # the workers follow the pages topic
        baseline = link.bandit.learned
        rewarded = lambda: link.bandit.learned >= baseline + len(link.decisions)  # noqa: E731
        log(f"run {run}: {len(visits)} visits in {len(waves)} waves; shared posteriors {link.bandit.version}")
        for wave in waves:
            link.wave = wave.number
            await link.send([(key, value, None) for key, value in wave.records()])
            counts = {v.session_id: len(v.events) for v in wave.visits}
            await link.until(lambda: link.reflects(counts), f"wave {wave.number}'s decisions")  # noqa: B023
            purchases = []
            for visit in wave.visits:
                row = _row(link.newest[visit.session_id], wave.number, visit, catalog, truth)
                row["bought"] = bool(rng.random() < row["p_purchase"])
                rows.append(row)
                if row["bought"]:
                    purchases.append((visit.session_id.encode(), orjson.dumps(_purchase(visit, wave)), None))
            ticks = [(f"sim-{run}-tick-{p}".encode(), orjson.dumps(_tick(run, wave, p, conf.session_gap_s)), p)
                     for p in partitions]
            await link.send(purchases + ticks)  # in order: each partition's purchases before its tick
            await link.until(rewarded, f"the shared posteriors to learn wave {wave.number}")
            log(f"wave {wave.number + 1}/{len(waves)}: {len(wave.visits)} visits, {len(purchases)} purchases, "
                f"{len(link.decisions)} decisions, posteriors {link.bandit.version}")
    for row in rows:
        default = catalog.default(row["persona"], row["band"]).action_id
        a, b = link.bandit.posterior((row["persona"], row["band"]), default)
        row["posterior_default"] = a / (a + b)
    decisions = list(link.decisions.values())
    summary = summarize(rows, decisions, catalog, truth)
    summary["run"] = {"id": run, "visits": len(visits), "waves": len(waves), "csv": str(opts.csv), "truth": truth,
                      "seconds": round(time.monotonic() - started, 1), "seed": opts.seed, "holdout": conf.holdout,
                      "redated": sum(_redated(v) for v in visits), "catalog": str(conf.actions),
                      "last_event_time": _iso(waves[-1].tick_time(conf.session_gap_s))}
    summary["rewards"] = {"decisions": len(decisions), "learned": link.bandit.learned - baseline,
                          "posteriors": link.bandit.version}
    summary["posteriors"] = _posteriors(link.bandit, catalog, truth)
    opts.out.mkdir(parents=True, exist_ok=True)
    summary["plots"] = plots(rows, decisions, opts.out)
    logged = [{k: d[k] for k in ("decision_id", "session_id", "wave", "persona", "intent_band", "action_id", "policy",
                                 "propensity", "events_seen", "bandit_model_version")} for d in decisions]
    document = orjson.dumps({**summary, "visits": rows, "decisions": logged},
                            option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    (opts.out / "simulation.json").write_bytes(document)
    return {k: v for k, v in orjson.loads(document).items() if k not in ("visits", "decisions")}


def _row(final: dict, wave: int, visit: Visit, catalog: ActionCatalog, truth: Truth) -> dict:
    persona, band, action = final["persona"], final["intent_band"], final["action_id"]
    multipliers = {a.action_id: truth.get(persona, {}).get(a.action_id, 1.0) for a in catalog.arms(persona, band)}
    base = final["intent_score"]
    best = max(purchase_probability(base, m) for m in multipliers.values())
    p = purchase_probability(base, multipliers.get(action, 1.0))
    p_default = purchase_probability(base, multipliers[catalog.default(persona, band).action_id])
    return {"wave": wave, "session_id": visit.session_id, "row": visit.row, "persona": persona, "band": band,
            "action_id": action, "default": action == catalog.default(persona, band).action_id,
            "policy": final["policy"], "propensity": final["propensity"], "decision_id": final["decision_id"],
            "base": base, "multiplier": multipliers.get(action, 1.0), "p_purchase": p, "p_default": p_default,
            "regret": best - p}


def _purchase(visit: Visit, wave: Wave) -> dict:
    last = visit.events[-1]
    return {**{k: last[k] for k in ("device", "traffic_source", "visitor_type", "region") if k in last},
            "type": "purchase", "event_id": f"{visit.session_id}-purchase", "session_id": visit.session_id,
            "ts": _iso(wave.end + PURCHASE_DELAY_S), "page": {"id": f"{visit.session_id}/checkout", "type": "checkout"},
            "value": 50.0}


def _tick(run: str, wave: Wave, partition: int, gap_s: float) -> dict:
    sid = f"sim-{run}-tick-{partition}"
    return {"type": "page_view", "event_id": f"{sid}-{wave.number}", "session_id": sid, "bot": True,
            "ts": _iso(wave.tick_time(gap_s)), "page": {"id": "sim-tick", "type": "other"}}


async def _newest_event_time(conf: Settings) -> float:
    """The newest event time on the events topic (its last record per partition), -inf if empty."""
    consumer = AIOKafkaConsumer(bootstrap_servers=conf.bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = await assign_all(consumer, conf.events_topic, from_beginning=False)
        end = await consumer.end_offsets(partitions)
        newest = -math.inf
        for tp in partitions:
            if end[tp] == 0:
                continue
            consumer.seek(tp, end[tp] - 1)
            records = (await consumer.getmany(tp, timeout_ms=5000)).get(tp, [])
            for record in records:
                try:
                    newest = max(newest, _epoch(orjson.loads(record.value)["ts"]))
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    continue
        return newest
    finally:
        await consumer.stop()


def _redated(visit: Visit) -> bool:
    start = min(_epoch(e["ts"]) for e in visit.events)
    return (start - visit.day) % WEEKS_53_S >= DAY_S


# --- the measures -------------------------------------------------------------------------------------

def summarize(rows: list[dict], decisions: list[dict], catalog: ActionCatalog, truth: Truth) -> dict:
    """Conversion and lift of bandit vs holdout, IPW off-policy lift, regret and arm shares."""
    bandit = [r for r in rows if r["policy"] == "bandit"]
    holdout = [r for r in rows if r["policy"] == "holdout"]
    conversion = {"bandit": _rate([r["bought"] for r in bandit]), "holdout": _rate([r["bought"] for r in holdout])}
    return {
        "holdout_share": len(holdout) / len(rows) if rows else 0.0,
        "conversion": conversion,
        "holdout_lift": _ratio_interval(conversion["bandit"], conversion["holdout"]),
        "true_lift": sum(r["p_purchase"] for r in bandit) / sum(r["p_default"] for r in bandit) - 1 if bandit else None,
        "ipw": ipw(bandit),
        "regret": {"bandit": sum(r["regret"] for r in bandit), "holdout": sum(r["regret"] for r in holdout),
                   "bandit_per_visit": _mean([r["regret"] for r in bandit]),
                   "holdout_per_visit": _mean([r["regret"] for r in holdout])},
        "arm_share": arm_shares(decisions),
        "best_arm_share": best_arm_shares(decisions, catalog, truth),
    }


def ipw(bandit: list[dict], resamples: int = 1000, seed: int = 0) -> dict:
    """Off-policy value of "always the default action" from the bandit's logged decisions, and the
    bandit's lift over it (its on-policy conversion / that value - 1) with 95% bootstrap intervals.

    Inverse propensity weighting with w = 1[a = default] / p: IPS = mean(w·r), SNIPS = Σw·r / Σw
    (self-normalized; the ``lift``). Once the bandit has converged the default arm's propensities are
    small and a few weights dominate (see ``effective_sample``), so the doubly robust estimate
    mean(μ + w·(r - μ)), with μ the default arm's final posterior mean in the visit's context
    (``posterior_default`` of each row), is given too (``dr_lift``).
    """
    if not bandit:
        return {}
    r = np.array([row["bought"] for row in bandit], dtype=float)
    w = np.array([row["default"] / row["propensity"] for row in bandit], dtype=float)
    mu = np.array([row["posterior_default"] for row in bandit], dtype=float)

    def lifts(index: np.ndarray) -> tuple[float, float]:
        snips = (w[index] * r[index]).sum() / max(w[index].sum(), 1e-12)
        dr = (mu[index] + w[index] * (r[index] - mu[index])).mean()
        value = r[index].mean()
        return (value / snips - 1 if snips > 0 else math.inf), (value / dr - 1 if dr > 0 else math.inf)

    rng = np.random.default_rng(seed)
    boot = np.array([lifts(rng.integers(len(r), size=len(r))) for _ in range(resamples)])
    snips_lift, dr_lift = lifts(np.arange(len(r)))

    def interval(column: np.ndarray) -> list[float] | None:
        finite = column[np.isfinite(column)]
        return [float(np.quantile(finite, 0.025)), float(np.quantile(finite, 0.975))] if len(finite) else None

    return {"bandit_conversion": float(r.mean()), "default_policy_ips": float((w * r).mean()),
            "default_policy_snips": float((w * r).sum() / max(w.sum(), 1e-12)),
            "default_policy_dr": float((mu + w * (r - mu)).mean()),
            "lift": float(snips_lift) if math.isfinite(snips_lift) else None, "lift_95": interval(boot[:, 0]),
            "dr_lift": float(dr_lift) if math.isfinite(dr_lift) else None, "dr_lift_95": interval(boot[:, 1]),
            "effective_sample": float(w.sum() ** 2 / max((w ** 2).sum(), 1e-12)), "decisions": len(r)}


def arm_shares(decisions: list[dict]) -> dict[str, dict[str, dict[str, float]]]:
    """persona -> {first_half, second_half} -> action_id -> share of that persona's bandit decisions."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    by_persona: dict[str, list[str]] = defaultdict(list)
    for d in decisions:
        if d["policy"] == "bandit":
            by_persona[d["persona"]].append(d["action_id"])
    for persona, actions in by_persona.items():
        half = len(actions) // 2
        out[persona] = {name: {a: part.count(a) / len(part) for a in sorted(set(part))}
                        for name, part in (("first_half", actions[:half]), ("second_half", actions[half:])) if part}
        out[persona]["decisions"] = len(actions)
    return out


def best_arm_shares(decisions: list[dict], catalog: ActionCatalog, truth: Truth) -> dict[str, dict]:
    """persona -> the truth's best arm and its share of the persona's bandit decisions in the second half,
    among decisions in contexts (bands) whose catalog offers that arm."""
    out = {}
    for persona, arms in truth.items():
        if not arms:
            continue
        best = max(arms, key=arms.get)
        offered = [d["action_id"] == best for d in decisions if d["policy"] == "bandit" and d["persona"] == persona
                   and catalog.action(persona, d["intent_band"], best) is not None]
        late = offered[len(offered) // 2:]
        out[persona] = {"arm": best, "decisions": len(late), "second_half": sum(late) / len(late) if late else None}
    return out


def _posteriors(bandit: BetaBandit, catalog: ActionCatalog, truth: Truth) -> list[dict]:
    rows = []
    for persona, band, _action in sorted({key[:3] for key in bandit.counts}):
        action = catalog.action(persona, band, _action)
        a, b = bandit.posterior((persona, band), _action)
        rows.append({"persona": persona, "band": band, "action_id": _action, "alpha": a, "beta": b,
                     "mean": a / (a + b), "default": action is not None and catalog.default(persona, band) == action,
                     "truth_multiplier": truth.get(persona, {}).get(_action, 1.0)})
    return rows


def _rate(outcomes: list[bool]) -> dict:
    n, k = len(outcomes), sum(outcomes)
    return {"visits": n, "purchases": k, "rate": k / n if n else 0.0}


def _ratio_interval(a: dict, b: dict) -> dict:
    """Relative lift a/b - 1 with a 95% interval (delta method on the log ratio)."""
    if not (a["purchases"] and b["purchases"]):
        return {"lift": None, "lift_95": None}
    ratio = a["rate"] / b["rate"]
    se = math.sqrt((1 - a["rate"]) / a["purchases"] + (1 - b["rate"]) / b["purchases"])
    return {"lift": ratio - 1, "lift_95": [ratio * math.exp(-1.96 * se) - 1, ratio * math.exp(1.96 * se) - 1]}


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


# --- plots --------------------------------------------------------------------------------------------

def plots(rows: list[dict], decisions: list[dict], out: Path) -> list[str]:
    """bandit-arms.png: each arm's share of a persona's bandit decisions over time (moving window);
    bandit-lift.png: cumulative conversion and expected regret per visit of bandit and holdout, over
    all visits in time order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    personas = sorted({d["persona"] for d in decisions if d["policy"] == "bandit"})
    columns = min(3, max(len(personas), 1))
    lines = math.ceil(len(personas) / columns) or 1
    fig, axes = plt.subplots(lines, columns, figsize=(5 * columns, 3.4 * lines), squeeze=False)
    for ax, persona in zip(axes.flat, personas):
        actions = [d["action_id"] for d in decisions if d["policy"] == "bandit" and d["persona"] == persona]
        window = max(10, len(actions) // 10)
        seen = np.arange(1, len(actions) + 1)
        for arm in sorted(set(actions)):
            hits = np.array([a == arm for a in actions], dtype=float)
            ax.plot(seen, np.convolve(hits, np.ones(window))[:len(hits)] / np.minimum(seen, window), label=arm)
        ax.set(title=f"{persona} ({len(actions)} bandit decisions)", ylim=(0, 1), xlabel="decision (in time order)",
               ylabel=f"share of the last {window}")
        ax.title.set_fontsize(10)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(personas):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "bandit-arms.png", dpi=110)
    plt.close(fig)

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    for policy in ("bandit", "holdout"):
        at = np.array([i + 1 for i, r in enumerate(rows) if r["policy"] == policy])
        group = [r for r in rows if r["policy"] == policy]
        seen = np.arange(1, len(group) + 1)
        left.plot(at, np.cumsum([r["bought"] for r in group]) / seen, label=f"{policy} ({len(group)} visits)")
        right.plot(at, np.cumsum([r["regret"] for r in group]) / seen, label=policy)
    left.set(title="cumulative conversion", xlabel="visits (in time order)")
    right.set(title="cumulative expected regret per visit vs the truth's best arm", xlabel="visits (in time order)")
    left.legend()
    right.legend()
    fig.tight_layout()
    fig.savefig(out / "bandit-lift.png", dpi=110)
    plt.close(fig)
    return ["bandit-arms.png", "bandit-lift.png"]


def _epoch(ts: str) -> float:
    return datetime.fromisoformat(ts).timestamp()


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")



# --- make demo-bandit -------------------------------------------------------------------------------------

def demo(visits: int = 4000, out: Path = Path("reports/bandit")) -> int:
    """`make demo-bandit`: a fresh local broker, two workers (hand-over every second), the closed loop
    with the shipped example truth; prints the lift; stops everything it started."""
    import os
    import shutil
    import subprocess
    import sys

    from models.training.uci import read_uci
    from stream.config import settings
    from stream.tools.broker import LocalBroker, free_port, stop_process
    from stream.topics import ensure_topics

    root = Path(__file__).resolve().parents[2]
    home = Path(".personastream/demo-bandit").resolve()
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    broker = LocalBroker(home, port=free_port())
    conf = settings(home=home, broker=f"kafka://127.0.0.1:{broker.port}", persona_sync_s=1.0)
    env = {**os.environ, "PERSONASTREAM_BROKER": conf.broker, "PERSONASTREAM_PERSONA_SYNC_S": "1"}
    csv = root / "../shared/data/online_shoppers/train.csv"
    csv = csv if csv.is_file() else root / "data/sample/online_shoppers_sample.csv"
    workers: list[subprocess.Popen] = []
    try:
        print(f"starting Kafka on 127.0.0.1:{broker.port} and two workers …", flush=True)
        broker.start()
        asyncio.run(ensure_topics(conf))
        for i in range(2):
            workers.append(subprocess.Popen(
                [sys.executable, "-c", "from stream.cli import main; main()", "worker", "--web-port", str(free_port())],
                env={**env, "PERSONASTREAM_HOME": str(home / f"w{i}")}, stdin=subprocess.DEVNULL,
                stdout=open(home / f"worker-{i}.log", "ab"), stderr=subprocess.STDOUT))
        opts = Options(truth=root / "models/artifacts/truth-example.json", out=out, csv=csv, visits=visits)
        summary = asyncio.run(simulate(conf, opts, read_uci(csv), log=lambda line: print(line, flush=True)))
        print(report(summary))
        return 0
    finally:
        for worker in workers:
            stop_process(worker)
        broker.stop()
        print("stopped the workers and the broker")


def report(summary: dict) -> str:
    """The lift, in a few lines."""
    run, conv, off, held = summary["run"], summary["conversion"], summary["ipw"], summary["holdout_lift"]

    def lift(value: float | None, interval: list[float] | None) -> str:
        if value is None:
            return "n/a (no purchases on one side yet)"
        return f"{value:+.1%} (95% {interval[0]:+.1%} … {interval[1]:+.1%})" if interval else f"{value:+.1%}"

    lines = [f"{run['visits']} visits in {run['waves']} waves, {run['seconds']:.0f} s; "
             f"holdout share {summary['holdout_share']:.1%}",
             f"conversion: bandit {conv['bandit']['rate']:.3f} ({conv['bandit']['visits']} visits), "
             f"holdout {conv['holdout']['rate']:.3f} ({conv['holdout']['visits']} visits)",
             f"lift vs holdout:                  {lift(held['lift'], held['lift_95'])}",
             f"off-policy lift vs default, IPW:  {lift(off.get('lift'), off.get('lift_95'))} "
             f"(effective sample {off.get('effective_sample', 0):.0f})",
             f"off-policy lift vs default, DR:   {lift(off.get('dr_lift'), off.get('dr_lift_95'))}",
             f"true lift (from the truth file):  {lift(summary['true_lift'], None)}"]
    for persona, best in summary["best_arm_share"].items():
        if best["second_half"] is not None:
            lines.append(f"{persona}: the truth's best arm {best['arm']!r} has {best['second_half']:.0%} of the "
                         f"{best['decisions']} bandit decisions offering it in the second half")
    lines.append(f"rewards: {summary['rewards']['learned']} learned for {summary['rewards']['decisions']} decisions")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(demo())
