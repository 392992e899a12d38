"""BENCHMARKS.md and the JSON file from one bench run's results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

Results = dict[str, Any]
KB = 1024


def targets(r: Results) -> list[dict[str, Any]]:
    """Each performance target: the measured ratio or value, the target and whether it is met."""
    ceiling = r["ceiling"]["events_per_s"]
    one, two = r["pipeline_1"]["events_per_s"], r["pipeline_2"]["events_per_s"]
    raw_p99, p99 = r["raw_latency"]["p99_ms"], r["pipeline_latency"]["p99_ms"]
    store = r["memory"]["memory_store"]["rss_bytes_per_session"]
    rows = [
        ("pipeline throughput / ceiling", one / ceiling, ">= 0.5", one / ceiling >= 0.5),
        ("pipeline p99 / raw p99 at offered load", p99 / raw_p99, "<= 3", p99 / raw_p99 <= 3),
        ("one-row Booster.predict / worker intent scoring per event", r["scoring"]["ratio"], ">= 20",
         r["scoring"]["ratio"] >= 20),
        ("2 workers / 1 worker throughput", two / one, ">= 1.6", two / one >= 1.6),
        ("state bytes per session, memory:// (RSS)", store, "<= 2048", store <= 2 * KB),
        ("one worker / ceiling, explanations on", one / ceiling, ">= 0.2", one / ceiling >= 0.2),
        ("p99 ms at half the one-worker rate", r["pipeline_latency_low"]["p99_ms"], "<= 100",
         r["pipeline_latency_low"]["p99_ms"] <= 100),
    ]
    return [{"measure": m, "value": round(v, 3), "target": t, "met": bool(ok)} for m, v, t, ok in rows]


def write(r: Results, markdown: Path, json_file: Path) -> Results:
    """Add the target verdicts to ``r``, write both files and return ``r``."""
    r = {**r, "targets": targets(r)}
    json_file.parent.mkdir(parents=True, exist_ok=True)
    json_file.write_bytes(orjson.dumps(r, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    markdown.write_text(render(r, json_file) + _kept_sections(markdown))
    return r


KEPT = (("<!-- commits -->", "<!-- /commits -->"), ("<!-- soak -->", "<!-- /soak -->"),
        ("<!-- web -->", "<!-- /web -->"))
"""Marked sections of BENCHMARKS.md other commands write (``personastream bench-commits``, ``soak``,
``bench-web``); a bench run keeps them."""


def replace_section(markdown: Path, begin: str, end: str, section: str) -> None:
    """Put ``section`` between the ``begin`` and ``end`` markers of ``markdown`` (appended if absent)."""
    text = markdown.read_text() if markdown.exists() else ""
    block = f"{begin}\n{section.strip()}\n{end}"
    start, stop = text.find(begin), text.find(end)
    if start >= 0 and stop > start:
        text = text[:start] + block + text[stop + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    markdown.write_text(text)


def _kept_sections(markdown: Path) -> str:
    text = markdown.read_text() if markdown.exists() else ""
    kept = []
    for begin, end in KEPT:
        start, stop = text.find(begin), text.find(end)
        if start >= 0 and stop > start:
            kept.append(text[start:stop + len(end)])
    return "".join(f"\n{section}\n" for section in kept)


def _row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _n(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def _cpu(run: Results) -> str:
    """The run's CPU time per event of its workers and of the broker, if measured."""
    if "broker_cpu_us_per_event" not in run:
        return ""
    return (f"; CPU per event: workers {run['workers_cpu_us_per_event']} µs (every thread), broker "
            f"{run['broker_cpu_us_per_event']} µs")


def _budget_reading(r: Results) -> list[str]:
    """The one-worker target rate against the CPU time a worker and the broker spent per event in the 1-worker run."""
    c, one, proc = r["ceiling"], r["pipeline_1"], r["processor"]
    if "broker_cpu_us_per_event" not in one:
        return []
    cpus, target = r["machine"]["cpus"], 0.2 * c["events_per_s"]
    worker, broker = one["workers_cpu_us_per_event"], one["broker_cpu_us_per_event"]
    budget = cpus / target * 1e6
    cap = cpus / (worker + broker) * 1e6
    proc_us, gil_us = 1e6 / proc["events_per_s"], 1e6 / target
    return [
        f"* **One worker ≥ 0.2 × the ceiling: the CPU budget.** 0.2 × the ceiling is "
        f"{_n(target)} ev/s. At that rate the {cpus} CPUs that the worker and the broker share leave "
        f"{budget:.1f} µs of CPU per event for both together. In the 1-worker run the worker spent "
        f"{worker} µs per event (all its threads: the processor's Python, the event loop's fetching and producing, "
        f"TreeSHAP) and the broker {broker} µs: {worker + broker:.1f} µs, which caps any run on this machine at "
        f"{_n(cap)} ev/s with every CPU busy ({cap / c['events_per_s']:.3f} × the ceiling). One worker reached "
        f"{_n(one['events_per_s'])} ev/s, {one['events_per_s'] / cap:.0%} of that cap (the rest is the one GIL "
        "that the processor and the event loop share, below). Meeting the target here would take "
        f"{(worker + broker) / budget:.1f}× less CPU per event. The processor alone, no Kafka, runs at "
        f"{_n(proc['events_per_s'])} ev/s on one core ({1e6 / proc['events_per_s']:.1f} µs per event of wall "
        f"time, TreeSHAP included). A worker's Python runs on one GIL, so at the target rate all of it, the "
        f"processor's and the event loop's, has {gil_us:.1f} µs per event: the processor alone "
        + ("already needs more" if proc_us > gil_us else f"leaves {gil_us - proc_us:.1f} µs of it to the event loop")
        + ", whatever the number of cores. Faust's "
        "per-record machinery is gone: records reach the session task a batch at a time from an intake "
        "filled by Faust's fetch loop (no per-record task, Event, queue or ack), outputs go to the producer as one "
        "batch per partition, and a batch is processed while the broker confirms the previous one "
        "(`personastream bench-commits` shows what each of these bought).",
    ]


def _complete(run: Results) -> str:
    text = f"{_n(run['sessions_complete'])}/{_n(run['sessions'])} visits complete"
    if run["events_covered"] < run["events"]:
        text += (f", **only {_n(run['events_covered'])} of {_n(run['events'])} events reflected before the outputs "
                 "stalled**; the rate counts those")
    if "diagnosis" in run:
        text += f" (events missing per partition: {run['diagnosis']['missing_events_by_partition']})"
    return text


def _latency(x: dict) -> str:
    cpu = f"worker CPU {x['worker_cpu_us_per_event']} µs/event"
    if "broker_cpu_us_per_event" in x:
        cpu += f", broker {x['broker_cpu_us_per_event']}, load generator {x['load_generator_cpu_us_per_event']}"
    return (f"p50 {x['p50_ms']} ms, p90 {x['p90_ms']} ms, p99 {x['p99_ms']} ms at {_n(x['offered_events_per_s'])} "
            f"ev/s offered ({_n(x['n'])} events, {x['unmatched']} unmatched; {cpu})")


def _moderate_load_reading(r: Results) -> list[str]:
    """Where the CPU went at half the 1-worker rate, thread by thread, against the saturated worker's."""
    low, one = r["pipeline_latency_low"], r["pipeline_1"]
    if "processor" not in low.get("worker_threads_cpu_us_per_event", {}) or "broker_cpu_us_per_event" not in low:
        return []  # measured without py-spy (no thread roles) or without the broker's PID
    threads = ", ".join(f"{role} {us}" for role, us in low["worker_threads_cpu_us_per_event"].items())
    total = low["worker_cpu_us_per_event"] + low["broker_cpu_us_per_event"] + low["load_generator_cpu_us_per_event"]
    by_thread = low["worker_threads_cpu_us_per_event"]
    python = sum(by_thread.get(role, 0.0) for role in ("processor", "event loop", "consumer"))
    return [
        f"* **CPU at half the 1-worker rate.** At {_n(low['offered_events_per_s'])} ev/s the worker spent "
        f"{low['worker_cpu_us_per_event']} µs of CPU per event ({threads} µs), against "
        f"{one['workers_cpu_us_per_event']} µs in the throughput run: a batch of {r['batch_window_s'] * 1000:.0f} ms "
        "holds only a few events of each visit it touches, and every visit a batch touches is scored, its "
        "PersonaEvent encoded and its state and lookup record written, which a worker that is behind does once for "
        "many more of the visit's events. The "
        f"broker spent {low['broker_cpu_us_per_event']} µs per event and this harness's load generator (producing "
        f"the events, reading the PersonaEvents) {low['load_generator_cpu_us_per_event']} µs: together "
        f"{total * low['offered_events_per_s'] / 1e6:.2f} of the {r['machine']['cpus']} CPUs. The CPUs are not what "
        f"runs out: the worker's Python threads (processor, event loop, consumer) needed {python:.1f} µs per event, "
        f"so at this rate they needed the one GIL up to {python * low['offered_events_per_s'] / 1e6:.0%} of the time "
        "(CPU time, a little of it in system calls that release it). "
        "Half the rate of a saturated worker is near the capacity of a worker under moderate load, where its "
        "queue, and with it the p99, grows with every hiccup of the machine.",
    ]


def _fetch(update: dict) -> str:
    return f"{update['fetch_min_bytes']} B or {update['fetch_max_wait_ms']} ms"


def render(r: Results, json_file: Path) -> str:
    w, c, one, two = r["workload"], r["ceiling"], r["pipeline_1"], r["pipeline_2"]
    raw, lat, sc, mem, proc = r["raw_latency"], r["pipeline_latency"], r["scoring"], r["memory"], r["processor"]
    short, fresh, faust_fetch = (r["pipeline_latency_short_window"], r["pipeline_latency_fresh_shipped"],
                                 r["pipeline_latency_fresh_faust_fetch"])
    low = r["pipeline_latency_low"]
    rocks = mem["rocksdb"]
    wp = r["worker_profile"]
    lines = [
        "# Benchmarks",
        "",
        f"One run of `{r['command']}` ({r['finished_at']}, {r['machine']['cpus']} CPUs, Python "
        f"{r['machine']['python']}, {r['machine']['platform']}; {r['seconds']:.0f} s). Every ratio is measured "
        "side by side in that run on a fresh local broker; the machine is shared and noisy, so single numbers "
        f"move between runs. Raw numbers: [`{json_file.name}`]({json_file.name}). Regenerate with `make bench` "
        "(`personastream bench --quick` for a two-minute smoke run).",
        "",
        "## Targets",
        "",
        _row("measure", "value", "target", "met"),
        _row("---", "---:", "---", "---"),
        *[_row(t["measure"], t["value"], t["target"], "yes" if t["met"] else "**no**") for t in r["targets"]],
        "",
        "## Measurements",
        "",
        _row("measurement", "result"),
        _row("---", "---"),
        _row("input", f"{_n(w['events'])} events in {_n(w['sessions'])} visits ({_n(w['uci_events'])} from "
                      f"{_n(w['uci_rows'])} replayed UCI rows, the rest synthetic click/scroll/dwell/page-view "
                      f"visits), {r['pipeline_1']['partitions']} partitions; preloaded at "
                      f"{_n(r['preload']['events_per_s'])} ev/s"),
        _row("1. ceiling: AIOKafkaConsumer + orjson.loads", f"{_n(c['events_per_s'])} ev/s"),
        _row("1. raw produce→consume latency", f"p50 {raw['p50_ms']} ms, p99 {raw['p99_ms']} ms at "
                                               f"{_n(raw['offered_events_per_s'])} ev/s offered"),
        _row("2. pipeline, 1 worker", f"{_n(one['events_per_s'])} ev/s first→last PersonaEvent "
                                      f"({one['span_s']} s; steady 10–90%: {_n(one['steady_events_per_s'])} ev/s; "
                                      f"{_complete(one)}; "
                                      f"{one['wall_s_with_startup']} s with start-up){_cpu(one)}"),
        _row("2. processor alone (no Kafka)", f"{_n(proc['events_per_s'])} ev/s (batches of {proc['batch']})"),
        _row("3. event→PersonaEvent latency", _latency(lat)),
        _row("3. event→PersonaEvent latency, half the 1-worker rate (after the run above)", _latency(low)),
        _row(f"3. event→PersonaEvent latency, same rate, {r['short_window_s'] * 1000:.0f} ms batch window "
             "(fresh worker)", _latency(short)),
        _row("3. event→PersonaEvent latency, same rate, fresh worker as shipped", _latency(fresh)),
        _row(f"3. event→PersonaEvent latency, same rate, fresh worker with Faust's fetch ({_fetch(r['faust_fetch'])})",
             _latency(faust_fetch)),
        _row("4. worker scoring per event (scores + top-3 contributions, as the processor calls them)",
             f"{sc['worker_us_per_event']} µs/event: scores {sc['worker_scores_only_us_per_event']} µs "
             f"({'native' if sc['native_scoring'] else 'LightGBM'}, {proc['scored_rows_per_event']} rows/event), "
             f"contributions {sc['worker_contributions_us_per_event']} µs "
             f"({proc['explained_rows_per_event']} rows/event); "
             f"one-row predict / scores {sc['ratio']}×, / scores + contributions {sc['ratio_with_explanations']}×"),
        _row("4. Booster.predict, one row", f"{sc['booster_predict_one_row_us']} µs "
                                            f"(pred_contrib: {sc['booster_pred_contrib_one_row_us']} µs)"),
        _row("5. pipeline, 2 workers", f"{_n(two['events_per_s'])} ev/s (steady {_n(two['steady_events_per_s'])} ev/s; "
                                       f"{_complete(two)}; {two['wall_s_with_startup']} s with start-up){_cpu(two)}"),
        _row("5. memory:// store, as the worker stores blobs",
             f"{mem['memory_store']['rss_bytes_per_session']} B RSS/session, "
             f"{mem['memory_store']['python_object_bytes_per_session']} B of Python objects "
             f"({mem['memory_store']['state_blob_bytes']} B blob), {_n(mem['memory_store']['sessions'])} sessions"),
        _row("5. memory:// store, blobs copied",
             f"{mem['memory_store_compact']['rss_bytes_per_session']} B RSS/session"),
        _row("5. rocksdb:// (Faust options, rocksdict)",
             f"{rocks['rss_bytes_per_session']} B RSS/session, {rocks['disk_bytes_per_session']} B on disk/session"
             if rocks.get("available") else f"not measured: {rocks.get('error')}"),
        "",
        "## Profile: `SessionProcessor.process` (pyinstrument, no Kafka)",
        "",
        f"{_n(r['profile']['events'])} events in batches of {proc['batch']}, {r['profile']['seconds']} s under the "
        "profiler. Top frames by self time:",
        "",
        _row("frame", "self s", "share"),
        _row("---", "---:", "---:"),
        *[_row(f"`{f['frame']}`", f["seconds"], f"{f['share']:.1%}") for f in r["profile"]["top_self"]],
        "",
        "<details><summary>call tree</summary>",
        "",
        "```",
        r["profile"]["tree"].strip("\n"),
        "```",
        "</details>",
        "",
        "## Profile: the worker's threads (py-spy, 1-worker throughput run)",
        "",
        f"{wp['seconds']} s of the worker once it is busy, every thread sampled at {wp['rate']} Hz. *Busy* is the "
        "share of that time a thread was running Python or a C call or waiting for the GIL (not idle, not waiting "
        "for the network); the frames are where its busy time went (self time). `processor_0` runs "
        "`SessionProcessor.process`, `MainThread` is Faust's event loop (fetching, the intake, delivery, the page "
        "and persona agents), `treeshap_0` waits in LightGBM's TreeSHAP, which releases the GIL.",
        "",
        _row("thread", "busy", "where its busy time went (self)"),
        _row("---", "---:", "---"),
        *[_row(f"`{t['thread']}`", f"{t['share']:.0%}",
               ", ".join(f"`{f['frame']}` {f['share']:.0%}" for f in t["top"])) for t in wp["threads"]],
        "",
        *_floors_section(r),
        "## What each optimization buys (processor alone, same events, side by side)",
        "",
        _row("variant", "events/s", "vs as run"),
        _row("---", "---:", "---:"),
        *[_row(a["variant"], _n(a["events_per_s"]), f"{a['events_per_s'] / r['ablations'][0]['events_per_s']:.2f}×")
          for a in r["ablations"]],
        "",
        "## What each worker setting buys (through the broker, one fresh worker each, same events)",
        "",
        f"The first {_n(r['worker_ablations'][0]['events'])} events of the workload, pre-loaded once; each variant is "
        "a fresh worker with its own consumer group and outputs, run in two rounds (the second in reverse order); "
        "events/s is the mean of the rounds.",
        "",
        _row("variant", "events/s", "rounds", "vs as shipped", "visits complete (worst round)"),
        _row("---", "---:", "---:", "---:", "---:"),
        *[_row(a["variant"], _n(a["events_per_s"]), " / ".join(_n(x) for x in a.get("rounds_events_per_s", [])),
               f"{a['events_per_s'] / r['worker_ablations'][0]['events_per_s']:.2f}×",
               f"{_n(a['sessions_complete'])}/{_n(a['sessions'])}") for a in r["worker_ablations"]],
        "",
        *own_traffic_section(r),
        "## Interpretation",
        "",
        *interpretation(r),
        "",
    ]
    return "\n".join(lines)


MIB = 1024 * 1024
MODEL_DROP = 0.15
"""A site model more than this much slower than the UCI model comes with a profile."""


def own_traffic_section(r: Results) -> list[str]:
    """Training on a site's own events, and its model beside the UCI model through the broker, if measured."""
    if "own_traffic" not in r:
        return []
    o = r["own_traffic"]
    t, serving = o["training"], o["serving"]
    uci, site = o["models"]
    lines = [
        "## Own-traffic models (training on a site's events, then serving beside the UCI model)",
        "",
        f"`personastream train --events FILE --out DIR` on the JSONL events of {_n(t['visits'])} visits of a "
        f"simulated shop (`tools.shopsim`, `ShopConfig.random({t['shop_seed']})`, {t['days']:g} days), run as its own "
        "process: wall time from start to exit, CPU time (user + system) from that process's own rusage "
        "(`os.wait4`), peak RSS its `VmHWM` sampled every 20 ms; interpreter start-up and imports included.",
        "",
        _row("events", "visits (trained on, without bots)", "wall s", "CPU s", "CPU µs/event", "peak RSS",
             "trees", "validation ROC-AUC at 50% of each visit"),
        _row("---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:"),
        _row(_n(t["events"]), f"{_n(t['visits'])} ({_n(t['training_visits'])}, {_n(t['buying_visits'])} buying)",
             t["wall_s"], t["cpu_s"], _n(t["cpu_s"] / t["events"] * 1e6, 1), f"{t['peak_rss_bytes'] / MIB:,.0f} MiB",
             t["trees"], f"{t['validation_roc_auc_at_50pct']:.4f} ({_n(t['validation_visits'])} latest visits)"),
        "",
        f"Serving: the first {_n(serving['events'])} events of later visits of the same shop "
        f"({_n(serving['sessions'])} visits from the day after the training period, their simulated event "
        f"times), pre-loaded once on {serving['partitions']} partitions; the shipped UCI model directory and the "
        "one trained above each score them in a fresh worker, two rounds (the second in reverse order); events/s "
        "and the worker's CPU per event (every thread) are the means of the rounds. *Processor alone*: the same "
        f"session processing with each model, no Kafka, on the first {_n(uci['offline']['events'])} of these "
        "events; *scoring* is the intent scores and TreeSHAP explanations it timed.",
        "",
        _row("model", "events/s", "rounds", "vs UCI", "worker CPU µs/event", "rounds", "visits complete (worst)",
             "processor alone ev/s", "scoring µs/event (scores + explanations)"),
        _row("---", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:"),
        *[_row(m["variant"], _n(m["events_per_s"]), " / ".join(_n(x) for x in m["rounds_events_per_s"]),
               f"{m['events_per_s'] / uci['events_per_s']:.2f}×", m["workers_cpu_us_per_event"],
               " / ".join(str(x) for x in m["rounds_workers_cpu_us_per_event"]),
               f"{_n(m['sessions_complete'])}/{_n(m['sessions'])}", _n(m["offline"]["events_per_s"]),
               f"{m['offline']['scores_us_per_event']} + {m['offline']['contributions_us_per_event']}")
          for m in o["models"]],
        "",
        *_own_traffic_reading(o),
        "",
    ]
    for p in o.get("profiles", []):
        lines += [f"Processor profile with the {p['variant']}: {_n(p['events'])} events, {p['seconds']} s; top "
                  "frames by self time:", "",
                  _row("frame", "self s", "share"), _row("---", "---:", "---:"),
                  *[_row(f"`{f['frame']}`", f["seconds"], f"{f['share']:.1%}") for f in p["top_self"]], ""]
    return lines


def _own_traffic_reading(o: Results) -> list[str]:
    uci, site = o["models"]
    ratio, offline_ratio = o["site_vs_uci_events_per_s"], o["site_vs_uci_offline_events_per_s"]
    overlap = (min(site["rounds_events_per_s"]) <= max(uci["rounds_events_per_s"])
               and min(uci["rounds_events_per_s"]) <= max(site["rounds_events_per_s"]))
    cpu = o.get("site_vs_uci_cpu_per_event")
    text = (f"Through the broker the site model ran at {ratio:.2f}× the UCI model's events/s"
            + (f", with {cpu:.2f}× its worker CPU per event" if cpu is not None else "")
            + ("; the two models' rounds overlap, so the difference is within this run's noise" if overlap else "")
            + f". The processor alone ran at {offline_ratio:.2f}× with the site model; its scoring cost "
            f"{site['offline']['scores_us_per_event'] + site['offline']['contributions_us_per_event']:.2f} µs per "
            f"event against {uci['offline']['scores_us_per_event'] + uci['offline']['contributions_us_per_event']:.2f}"
            " µs with the UCI model.")
    slower = [where for where, x in (("through the broker", ratio), ("in the processor alone", offline_ratio))
              if x < 1 - MODEL_DROP]
    if slower:
        text += (f" The site model is more than {MODEL_DROP:.0%} slower {' and '.join(slower)}: the processor's "
                 "profile with each model is below.")
    else:
        text += f" Neither measure shows the site model more than {MODEL_DROP:.0%} slower than the UCI model."
    return [text]


def _gc_reading(r: Results) -> list[str]:
    default = next((a for a in r["worker_ablations"] if a["variant"].startswith("CPython's default garbage")), None)
    if default is None:
        return []
    shipped = r["worker_ablations"][0]["events_per_s"]
    tuned, untuned = (variant.get("rounds_events_per_s", []) for variant in (r["worker_ablations"][0], default))
    spread = f"{' / '.join(_n(n) for n in tuned)} ev/s tuned, {' / '.join(_n(n) for n in untuned)} untuned"
    noisy = bool(tuned and untuned) and min(tuned) <= max(untuned) and min(untuned) <= max(tuned)  # rounds overlap
    return [
        "* **Garbage collector.** A worker keeps about 200,000 objects from start-up (models, catalog, Faust's "
        "services); CPython's full collections walked all of them every second or two, 170–240 ms a pause in a busy "
        "worker: a sixth of its time, and a stall every event in the batch waits for. The worker moves them to the "
        "permanent generation once, after loading (`gc.freeze()`), and collects less often (thresholds 50,000/20/20 "
        "instead of 700/10/10), so a batch's objects die young instead of being promoted and walked again; its "
        "allocations are still collected, and `personastream_gc_full_pause_seconds` on `/metrics` shows the full "
        f"collections' pauses. Through the broker the worker runs {shipped / default['events_per_s']:.2f}× as fast as "
        "with CPython's defaults (`PERSONASTREAM_GC_TUNING=false`, table above, alternating rounds)"
        + (f"; in this run that is within the rounds' spread ({spread}), where earlier runs measured 1.19× for the "
           "freeze and 1.09× more for the thresholds (three alternating rounds each)." if noisy else "."),
    ]


FLOOR_NAMES = {"acknowledge": "fetches, batches and acknowledges only (Faust, the intake; no processing, no output)",
               "validate": "… and parses and validates each event (orjson, pydantic, the privacy rule), nothing more",
               "sessionize": "… and folds the events into sessions, with state, changelogs and page statistics; "
                             "scores no visit, publishes no PersonaEvent"}


def _timed_floors(r: Results) -> bool:
    return "floors" in r and all(f["events_per_s"] is not None for f in r["floors"])


def _floors_section(r: Results) -> list[str]:
    """The floor workers beside the whole pipeline, if this run measured them."""
    if not _timed_floors(r):
        return []
    ceiling, one = r["ceiling"]["events_per_s"], r["pipeline_1"]
    rows = [(FLOOR_NAMES[f["floor"]], f["events_per_s"], " / ".join(_n(x) for x in f["rounds_events_per_s"]),
             f["worker_cpu_us_per_event"]) for f in r["floors"]]
    rows.append(("the whole pipeline (`2. pipeline, 1 worker` above)", one["events_per_s"], _n(one["events_per_s"]),
                 one.get("workers_cpu_us_per_event", "")))
    return [
        "## What bounds one worker: floors (through the broker, one fresh worker each, same events)",
        "",
        f"The shipped worker on the {_n(r['floors'][0]['events'])} events of the throughput runs, with their page "
        "catalog, and with less of the session processing (`bench/floors.py`); two rounds, the second in reverse "
        "order; "
        "events/s is the mean of the rounds, timed by the worker's own `personastream_events_total` (a floor "
        "publishes nothing). CPU is the worker's, every thread.",
        "",
        _row("worker", "events/s", "rounds", "× ceiling", "CPU µs/event"),
        _row("---", "---:", "---:", "---:", "---:"),
        *[_row(name, _n(rate), rounds, f"{rate / ceiling:.3f}", cpu) for name, rate, rounds, cpu in rows],
        "",
    ]


def _floors_reading(r: Results) -> list[str]:
    if not _timed_floors(r):
        return []
    ceiling, one = r["ceiling"]["events_per_s"], r["pipeline_1"]
    floors = {f["floor"]: f for f in r["floors"]}
    ack, valid, sessions = floors["acknowledge"], floors["validate"], floors["sessionize"]
    target = 0.2 * ceiling
    return [
        f"* **The floors.** A worker that only fetches, batches and acknowledges runs at "
        f"{_n(ack['events_per_s'])} ev/s ({ack['events_per_s'] / ceiling:.2f} × the ceiling, "
        f"{ack['worker_cpu_us_per_event']} µs of CPU per event): Faust and the Kafka client are not what bounds a "
        f"worker. One that also parses and validates each event, and does nothing else, runs at "
        f"{_n(valid['events_per_s'])} ev/s ({valid['events_per_s'] / ceiling:.2f} × the ceiling, "
        f"{valid['worker_cpu_us_per_event']} µs per event): validation with the privacy rule, which stays "
        "as the schema of record, "
        + ("already falls short of" if valid["events_per_s"] < target else "is about all there is room for in")
        + f" the target of {_n(target)} ev/s. Sessions, their state and changelogs and page statistics add "
        f"{sessions['worker_cpu_us_per_event'] - valid['worker_cpu_us_per_event']:.1f} µs per event "
        f"({_n(sessions['events_per_s'])} ev/s); scoring the visits each batch touched, explaining, assigning "
        "personas, deciding actions and publishing PersonaEvents and lookup records add "
        f"{one.get('workers_cpu_us_per_event', 0) - sessions['worker_cpu_us_per_event']:.1f} µs more: the whole "
        f"pipeline runs at {_n(one['events_per_s'])} ev/s.",
    ]


def _gil_reading(r: Results) -> list[str]:
    busy = {t["thread"]: t["share"] for t in r["worker_profile"]["threads"]}
    if "processor_0" not in busy or "MainThread" not in busy:
        return []
    processor, loop, shap = busy["processor_0"], busy["MainThread"], busy.get("treeshap_0", 0.0)
    together = processor + loop
    how = ("the GIL is all but saturated, and each waits for the other" if together >= 0.95 else
           f"the processor thread is idle the rest of the time, waiting for TreeSHAP (busy {shap:.0%}) or for the "
           "event loop to hand it the next batch, so their Python runs mostly one after the other")
    return [
        f"* **One GIL.** In the worker profile the processor thread was busy {processor:.0%} of the time and the "
        f"event loop {loop:.0%}: together {together:.0%} of the one GIL they share; {how}. The event loop's own "
        "Python — fetching, the intake, producing and acknowledging each batch, the page-statistics agent — is "
        f"{loop / processor:.0%} of the processor thread's busy time, and takes GIL time the processor frees, also "
        "while TreeSHAP runs without it: time the processor saves turns only partly into throughput "
        "(`bench-commits`). "
        "A worker is one Python process: more cores are used by more workers on more partitions, which "
        "`pipeline, 2 workers` measures.",
    ]


def interpretation(r: Results) -> list[str]:
    """Short, number-driven reading of the run: what bounds each target."""
    c, one, two, proc, sc = r["ceiling"], r["pipeline_1"], r["pipeline_2"], r["processor"], r["scoring"]
    raw, lat, low, mem = r["raw_latency"], r["pipeline_latency"], r["pipeline_latency_low"], r["memory"]
    fresh, faust_fetch = r["pipeline_latency_fresh_shipped"], r["pipeline_latency_fresh_faust_fetch"]
    top = ", ".join(f"`{f['frame'].split(' (')[0]}` {f['share']:.0%}" for f in r["profile"]["top_self"][:4])
    shipped = r["ablations"][0]["events_per_s"]
    unexplained = next(a["events_per_s"] for a in r["ablations"] if a["variant"].startswith("no TreeSHAP"))
    load = lat["offered_events_per_s"] / one["events_per_s"]
    window_ms = r["batch_window_s"] * 1000
    return [
        f"* **Throughput.** The processor alone, with no Kafka client at all, runs at {_n(proc['events_per_s'])} ev/s "
        f"= {proc['events_per_s'] / c['events_per_s']:.2f} × the consumer ceiling of {_n(c['events_per_s'])} ev/s, so "
        f"the per-event Python work bounds the pipeline ({_n(one['events_per_s'])} ev/s = "
        f"{one['events_per_s'] / proc['events_per_s']:.2f} × the processor alone, which does no fetching, producing "
        f"or acknowledging and has a core to itself; the worker shares {r['machine']['cpus']} CPUs with the broker — "
        f"see the worker profile). Top self time in the processor profile: {top}. Each batch scores every visit it "
        f"touched ({proc['scored_rows_per_event']} rows per event in batches of {_n(proc['batch'])}: a worker that is "
        "behind takes full batches, which score each visit once for more of its events) and re-explains "
        f"{proc['explained_rows_per_event']} rows per "
        f"event with TreeSHAP; without explanations the processor runs {unexplained / shipped:.2f}× faster "
        "(`PERSONASTREAM_TOP_FEATURES=0`). Even then it stays far below 0.5 × the ceiling: parsing and validating "
        "each event with pydantic, folding it and producing outputs in Python costs more than a bare consumer's "
        "decode.",
        *_budget_reading(r),
        *_floors_reading(r),
        *_gil_reading(r),
        *_gc_reading(r),
        f"* **Scoring cost.** As the processor calls it, intent scoring costs {sc['worker_us_per_event']} µs per "
        f"event: {sc['worker_scores_only_us_per_event']} µs of scores, {sc['worker_contributions_us_per_event']} µs "
        f"of contributions; one-row `Booster.predict` costs {sc['booster_predict_one_row_us']} µs and one-row "
        f"`pred_contrib` {sc['booster_pred_contrib_one_row_us']} µs. Scores alone are {sc['ratio']}× cheaper per event "
        f"than one-row predict (batched per visit, trees compiled by lleaves); with the TreeSHAP explanations of "
        f"medium/high-intent visits {sc['ratio_with_explanations']}×: explanations are what a worker pays for.",
        f"* **Latency.** Raw produce→consume p99 is {raw['p99_ms']} ms, so the target (3 × = "
        f"{3 * raw['p99_ms']:.0f} ms) is below the worker's batch window of {window_ms:.0f} ms, which is there to "
        f"amortize per-batch costs: the target cannot be met without giving that up. At "
        f"{_n(lat['offered_events_per_s'])} ev/s ({load:.0%} of what one worker sustained in the throughput run) the "
        f"pipeline p99 is {lat['p99_ms']} ms: queues build up"
        + (" for the whole run" if load > 1 else " at that utilization on a shared 2-CPU machine")
        + f". At {_n(low['offered_events_per_s'])} ev/s (half the 1-worker rate, the same visits continued once the "
        f"first run has drained) p50/p99 are {low['p50_ms']}/{low['p99_ms']} ms"
        + (": the batch window, the batch's processing and the producer round trips before the PersonaEvent is sent."
           if low["p50_ms"] < 3 * window_ms else
           f", far above the {window_ms:.0f} ms batch window: the worker fell behind during this run (CPU contention "
           "or a stall on this shared machine), so this number varies a lot between runs.")
        + f" With a {r['short_window_s'] * 1000:.0f} ms window at the same rate a fresh worker gives p50/p99 "
        f"{r['pipeline_latency_short_window']['p50_ms']}/{r['pipeline_latency_short_window']['p99_ms']} ms "
        f"(raw p99 × 3 = {3 * raw['p99_ms']:.0f} ms).",
        *_moderate_load_reading(r),
        f"* **Fetching.** Faust's consumer asks the broker to answer a fetch with the first byte available "
        f"({_fetch(r['faust_fetch'])}); under moderate load every fetch then carries a few records, and the "
        f"consumer thread and the broker spend their time on round trips. A worker asks for "
        f"{_fetch(r['fetch'])} (`FETCH_MIN_BYTES`, `FETCH_MAX_WAIT_MS`). At "
        f"{_n(fresh['offered_events_per_s'])} ev/s a fresh worker used {fresh['worker_cpu_us_per_event']} µs of CPU "
        f"per event as shipped and {faust_fetch['worker_cpu_us_per_event']} with Faust's fetch "
        f"({faust_fetch['worker_cpu_us_per_event'] / max(fresh['worker_cpu_us_per_event'], 0.1):.2f}×); p50/p99 "
        f"{fresh['p50_ms']}/{fresh['p99_ms']} ms against {faust_fetch['p50_ms']}/{faust_fetch['p99_ms']} ms. "
        f"The price: an event may wait up to {r['fetch']['fetch_max_wait_ms']} ms in the broker when traffic is "
        "light, and an idle worker polls the broker that often: before the load it used "
        f"{fresh['worker_idle_cpu_share']:.1%} of a CPU as shipped, {faust_fetch['worker_idle_cpu_share']:.1%} with "
        "Faust's fetch.",
        f"* **Scale.** 2 workers vs 1: {two['events_per_s'] / one['events_per_s']:.2f}× (steady "
        f"{two['steady_events_per_s'] / one['steady_events_per_s']:.2f}×), on {r['machine']['cpus']} CPUs "
        "that also run "
        "the broker and this harness; both workers compete for the same cores, so this does not show how the "
        "pipeline scales across hosts.",
        f"* **Memory.** A session's state blob is ~{mem['memory_store']['state_blob_bytes']:.0f} B; the memory store "
        f"costs {mem['memory_store']['rss_bytes_per_session']:.0f} B RSS per session as the worker stores blobs and "
        f"{mem['memory_store_compact']['rss_bytes_per_session']:.0f} B with blobs copied (the worker copies "
        "`orjson.dumps` output to right-size it: uncopied, each blob kept a ~4 KB buffer resident, 4,152 B per "
        "session in the first run). "
        + (f"RocksDB holds it in {mem['rocksdb']['rss_bytes_per_session']:.0f} B RSS and "
           f"{mem['rocksdb']['disk_bytes_per_session']:.0f} B of disk per session."
           if mem["rocksdb"].get("available") else f"RocksDB was not measured: {mem['rocksdb'].get('error')}.")
        + " Not counted: the worker's in-memory index of open visits (one dict entry per open visit).",
    ]
