"""The ``personastream`` command line."""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime
from pathlib import Path
from typing import Optional

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from stream.config import Settings, settings

cli = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
kafka_cli = typer.Typer(no_args_is_help=True, help="The local single-node Kafka broker (KRaft) for development.")
pages_cli = typer.Typer(no_args_is_help=True, help="The page statistics table.")
cli.add_typer(kafka_cli, name="kafka")
personas_cli = typer.Typer(no_args_is_help=True, help="The persona model.")
cli.add_typer(pages_cli, name="pages")
cli.add_typer(personas_cli, name="personas")
console = Console(stderr=True)

BrokerOpt = typer.Option(None, "--broker", help="kafka://host:port (env PERSONASTREAM_BROKER)")
HomeOpt = typer.Option(None, "--home", help="runtime state directory (env PERSONASTREAM_HOME)")
DEFAULT_UCI = Path("../shared/data/online_shoppers/train.csv")


def fail(message: str, code: int = 2) -> None:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def _settings(**overrides) -> Settings:
    try:
        return settings(**overrides)
    except ValueError as exc:
        fail(f"invalid configuration: {exc}")


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=console)


def _ensure_topics(conf: Settings) -> None:
    from stream.topics import TopicLayoutError, ensure_topics

    try:
        created = asyncio.run(ensure_topics(conf))
    except TopicLayoutError as exc:
        fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - connection problems: name the broker
        fail(f"cannot reach Kafka at {conf.bootstrap}: {exc!r}")
    if created:
        console.print(f"created topics: {', '.join(created)}")


# --- kafka ----------------------------------------------------------------------------------------

def _broker(home: Optional[Path], port: Optional[int]):
    from stream.tools.broker import LocalBroker

    conf = _settings(home=home, kafka_port=port)
    return LocalBroker(conf.home, conf.kafka_port, conf.kafka_version)


@kafka_cli.command("fetch")
def kafka_fetch() -> None:
    """Download the Kafka broker jars with Maven into the cache."""
    from stream.tools.broker import BrokerError, fetch

    try:
        console.print(f"Kafka jars in {fetch(_settings().kafka_version)}")
    except BrokerError as exc:
        fail(str(exc))


@kafka_cli.command("start")
def kafka_start(home: Optional[Path] = HomeOpt,
                port: Optional[int] = typer.Option(None, help="broker port (env PERSONASTREAM_KAFKA_PORT)")) -> None:
    """Start the broker (fetching jars and formatting storage on first use) and wait until it answers."""
    from stream.tools.broker import BrokerError

    broker = _broker(home, port)
    try:
        pid = broker.start()
    except BrokerError as exc:
        fail(str(exc))
    console.print(f"Kafka {broker.version} running on 127.0.0.1:{broker.port} (pid {pid}, state in {broker.root})")


@kafka_cli.command("stop")
def kafka_stop(home: Optional[Path] = HomeOpt, port: Optional[int] = typer.Option(None)) -> None:
    """Stop the broker started from this home."""
    console.print("stopped" if _broker(home, port).stop() else "not running")


@kafka_cli.command("status")
def kafka_status(home: Optional[Path] = HomeOpt, port: Optional[int] = typer.Option(None)) -> None:
    """Say whether the broker of this home is running."""
    typer.echo(_broker(home, port).status())


# --- pipeline ------------------------------------------------------------------------------------

@cli.command()
def topics(broker: Optional[str] = BrokerOpt) -> None:
    """Create the pipeline's topics (the worker and replay commands also do this)."""
    _ensure_topics(_settings(broker=broker))


@cli.command()
def worker(broker: Optional[str] = BrokerOpt, home: Optional[Path] = HomeOpt,
           web_port: Optional[int] = typer.Option(None, help="Faust web port: /metrics, /status"),
           models: Optional[Path] = typer.Option(None, "--models", help="model directory to score with "
                                                 "(env PERSONASTREAM_MODELS; default: the shipped models)"),
           loglevel: str = typer.Option("warn", "--loglevel", "-l", help="crit|error|warn|info|debug")) -> None:
    """Run a Faust worker (equivalent: faust -A stream.app worker). Start more to scale out."""
    from stream import config

    conf = _settings(broker=broker, home=home, web_port=web_port, models=models)
    conf.home.mkdir(parents=True, exist_ok=True)
    _ensure_topics(conf)
    config.install(conf)
    from models.intent import ModelFileError
    from stream.app import app, runtime

    try:
        runtime()
    except ModelFileError as exc:
        fail(str(exc))
    sys.argv = ["personastream", "worker", "-l", loglevel, "--web-port", str(conf.web_port),
                "--web-host", "127.0.0.1"]
    app.main()


@cli.command()
def collector(port: int = typer.Option(8080, help="HTTP port of POST /collect and GET /tracker.js"),
              broker: Optional[str] = BrokerOpt) -> None:
    """Serve only the HTTP collector (events in, produced to the events topic), apart from the workers."""
    from stream.web.collector_server import serve

    conf = _settings(broker=broker)
    _ensure_topics(conf)
    console.print(f"collector on http://127.0.0.1:{port}/collect -> {conf.events_topic}")
    serve(conf, port)


@cli.command()
def schema(out: Path = typer.Option(Path("schemas/json"), help="directory for the JSON Schema files")) -> None:
    """Write JSON Schema for every event and output model, for producers in other languages."""
    from pydantic import TypeAdapter

    from schemas import DeadLetter, Event, PageStats, PersonaEvent

    out.mkdir(parents=True, exist_ok=True)
    models = {"event": TypeAdapter(Event).json_schema(), "persona_event": PersonaEvent.model_json_schema(),
              "dead_letter": DeadLetter.model_json_schema(), "page_stats": PageStats.model_json_schema()}
    for name, document in models.items():
        (out / f"{name}.schema.json").write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
        console.print(f"wrote {out / f'{name}.schema.json'}")


def _read_uci(path: Path, limit: Optional[int] = None):
    from models.training.uci import UCIFormatError, read_uci

    if not path.is_file():
        fail(f"{path} does not exist")
    try:
        frame = read_uci(path)
    except UCIFormatError as exc:
        fail(str(exc))
    return frame.head(limit) if limit else frame


@cli.command()
def train(csv: Path = typer.Argument(DEFAULT_UCI, help="UCI Online Shoppers CSV with a Revenue column"),
          events: Optional[str] = typer.Option(None, "--events", help="train on recorded events instead: a JSONL "
                                               "file, a folder of them, or kafka://host:port/topic"),
          out: Optional[Path] = typer.Option(None, "--out", help="model directory to write (with --events)"),
          since: Optional[datetime] = typer.Option(None, "--since", help="with a topic: events from this time on"),
          ) -> None:
    """Train the intent model: on the site's own recorded events (--events, --out: a model directory for
    `worker --models`), or on UCI rows replayed through the stream's feature code (models/artifacts/)."""
    if events is not None:
        _train_on_events(events, out, since)
        return
    from models.training.train import train as train_model

    frame = _read_uci(csv)
    with _progress() as progress:
        task = progress.add_task("replaying sessions", total=len(frame))
        meta = train_model(frame, str(csv), progress=lambda i: progress.update(task, completed=i + 1))
    cv = meta["cv"]
    console.print(f"intent model {meta['version']}: {cv['folds']}-fold CV ROC-AUC {cv['roc_auc']['mean']:.4f} "
                  f"± {cv['roc_auc']['std']:.4f}, PR-AUC {cv['pr_auc']['mean']:.4f} ± {cv['pr_auc']['std']:.4f}")


def _train_on_events(source: str, out: Optional[Path], since: Optional[datetime]) -> None:
    from models.training.site import TrainingDataError, train_site
    from models.training.visits import ReadReport, read_visits
    from stream.recorded import SourceError, recorded_lines

    if out is None:
        fail("--events needs --out DIR: the model directory to write")
    report = ReadReport()
    try:
        visits = read_visits(recorded_lines(source, since), _settings().session_gap_s, report)
    except SourceError as exc:
        fail(str(exc))
    console.print(f"read {source}: {report.summary()}")
    if report.events == 0:
        fail(f"no valid events in {source} ({report.lines} lines read)")
    try:
        meta = train_site(visits, out, source, log=console.print)
    except TrainingDataError as exc:
        fail(str(exc))
    validation = meta["validation"]
    console.print(f"serve it with: personastream worker --models {out}  (validation ROC-AUC at 50% of each "
                  f"visit {validation['roc_auc_at_50pct']:.4f}; report in {out / 'report'})")


@cli.command()
def evaluate(csv: Path = typer.Argument(DEFAULT_UCI, help="UCI Online Shoppers CSV with a Revenue column"),
             out: Path = typer.Option(Path("reports/evaluation"),
                                      help="folder for metrics.json and PNG plots")) -> None:
    """Cross-validate the intent model (final and partial sessions); write metrics.json and plots."""
    from models.training.evaluate import evaluate as run_evaluation

    frame = _read_uci(csv)
    with _progress() as progress:
        task = progress.add_task("replaying sessions", total=len(frame))
        metrics = run_evaluation(frame, out, progress=lambda i: progress.update(task, completed=i + 1),
                                 log=console.print)
    console.print_json(orjson.dumps({k: metrics[k] for k in metrics if k in {"final", "progress", "brier", "cv"}
                                     or k.startswith(("roc", "pr", "auc"))}).decode())
    console.print(f"wrote {out / 'metrics.json'} and {len(metrics['plots'])} plots")


@personas_cli.command("report")
def personas_report(csv: Path = typer.Argument(DEFAULT_UCI, help="UCI Online Shoppers CSV with a Revenue column"),
                    out: Path = typer.Option(Path("reports/personas"),
                                             help="folder for the PNGs and profile table")) -> None:
    """Compare clusterers and describe the personas: projection PNG, profile table, conversion by persona."""
    from models.training.persona_eval import compare, load, report

    frame = _read_uci(csv)
    data = load(frame)
    console.print(compare(frame, out, data=data)["markdown"])
    result = report(frame, out, data=data)
    console.print(result["markdown"])
    console.print(f"wrote persona_projection.png and persona_profile.png to {out}")


@cli.command()
def replay(file: Path = typer.Argument(..., help="JSONL (one event per line) or CSV (dotted column names)"),
           speed: Optional[float] = typer.Option(None, help="speed factor of real (event) time; default: as fast as "
                                                            "possible"),
           broker: Optional[str] = BrokerOpt) -> None:
    """Push raw events to the events topic, keyed by session_id."""
    from stream.tools.replay import read_events

    conf = _settings(broker=broker)
    if not file.is_file():
        fail(f"{file} does not exist")
    records = read_events(file)
    _ensure_topics(conf)
    _send(conf, records, speed, f"replaying {file.name}")


def _send(conf: Settings, records, speed: Optional[float], label: str) -> None:
    from stream.tools.replay import paced, produce

    with _progress() as progress:
        task = progress.add_task(label, total=len(records))
        sent = asyncio.run(produce(conf.bootstrap, conf.events_topic, paced(records, speed),
                                   lambda n: progress.advance(task, n)))
    console.print(f"sent {sent} events to {conf.events_topic}")


@cli.command("replay-uci")
def replay_uci(csv: Path = typer.Argument(DEFAULT_UCI, help="UCI Online Shoppers CSV"),
               limit: Optional[int] = typer.Option(None, help="replay only the first N rows"),
               fraction: float = typer.Option(1.0, min=0.0, max=1.0,
                                              help="replay each visit up to this share of its page views"),
               speed: Optional[float] = typer.Option(None,
                                                     help="speed factor of real time; default: as fast as possible"),
               settle: float = typer.Option(1.0, help="seconds to wait after seeding page statistics"),
               broker: Optional[str] = BrokerOpt) -> None:
    """Replay every UCI row as one visit `uci-<i>`: page catalog first, then interleaved events."""
    import time

    from stream.tools.replay import seed_pages, uci_records

    conf = _settings(broker=broker)
    frame = _read_uci(csv, limit)
    catalog, records = uci_records(frame, fraction)
    _ensure_topics(conf)
    asyncio.run(seed_pages(conf.bootstrap, conf.pages_topic, catalog))
    console.print(f"seeded {len(catalog)} pages into {conf.pages_topic}")
    time.sleep(settle)
    _send(conf, records, speed, f"replaying {len(frame)} UCI visits")


@cli.command("score-uci")
def score_uci(csv: Path = typer.Argument(DEFAULT_UCI, help="UCI Online Shoppers CSV"),
              out: Path = typer.Option(..., help="output CSV: session_id,intent_score,persona"),
              limit: Optional[int] = typer.Option(None, help="score only the first N rows"),
              fraction: float = typer.Option(1.0, min=0.0, max=1.0,
                                             help="score each visit up to this share of its page views")) -> None:
    """Score UCI rows offline with the worker's own processing code."""
    from models.intent import IntentModel, ModelFileError
    from stream.tools.offline import score_uci as score

    try:
        intent = IntentModel.load()
    except ModelFileError as exc:
        fail(str(exc))
    frame = _read_uci(csv, limit)
    result = score(frame, intent, fraction=fraction)
    result.to_csv(out, index=False, float_format="%.17g")
    console.print(f"wrote {len(result)} scores to {out}")


@cli.command()
def tail(as_json: bool = typer.Option(False, "--json", help="one JSON object per line"),
         idle_exit: Optional[float] = typer.Option(None, help="exit after S seconds without a new event"),
         from_beginning: bool = typer.Option(False, help="start at the oldest PersonaEvent"),
         broker: Optional[str] = BrokerOpt) -> None:
    """Show the persona topic as a live table (or JSON lines)."""
    from stream.tools.tail import run

    conf = _settings(broker=broker)
    run(conf.bootstrap, conf.personas_topic, as_json, idle_exit, from_beginning)


@cli.command("demo-site")
def demo_site(port: int = typer.Option(8000, help="port of the demo shop"),
              endpoint: str = typer.Option("http://127.0.0.1:6066", help="a worker's web URL: the tracker is "
                                           "loaded from it and sends to it"),
              host: str = typer.Option("127.0.0.1", help="interface to listen on"),
              heartbeat: float = typer.Option(15.0, min=0.1, help="seconds between the tracker's dwell heartbeats"),
              flush: float = typer.Option(5.0, min=0.1, help="seconds between the tracker's batch sends"),
              poll: float = typer.Option(3.0, min=0.1, help="seconds between the banner's persona lookups")) -> None:
    """Serve a small demo shop instrumented with the browser tracker; its banner shows the live persona."""
    from stream.tools.demo_site import SiteConfig, endpoint_url, serve

    try:
        url = endpoint_url(endpoint)
    except ValueError as exc:
        fail(str(exc))
    serve(SiteConfig(url, heartbeat_s=heartbeat, flush_s=flush, poll_s=poll), host=host, port=port,
          log=lambda message: console.print(message, soft_wrap=True))


@cli.command()
def bench(events: int = typer.Option(1_000_000, help="events pre-loaded for the throughput runs"),
          quick: bool = typer.Option(False, "--quick", help="small sizes for a smoke run (about two minutes)"),
          out: Path = typer.Option(Path("BENCHMARKS.md"), help="the Markdown report"),
          json_out: Optional[Path] = typer.Option(None, "--json",
                                                  help="the JSON results (default: benchmarks.json next to --out)"),
          rate: float = typer.Option(5000.0, help="offered load of the latency runs, events/s"),
          latency_seconds: Optional[float] = typer.Option(None,
                                                          help="length of each latency run (default 20, quick 8)"),
          memory_sessions: Optional[int] = typer.Option(None, help="concurrent sessions of the memory measurement"),
          csv: Path = typer.Option(DEFAULT_UCI, help="UCI Online Shoppers CSV replayed as visits"),
          keep: bool = typer.Option(False, help="keep the temporary broker home and worker logs")) -> None:
    """Benchmark on a fresh local broker: ceiling, throughput, latency, scoring, scale, memory, profile;
    training on a simulated shop's events and serving its model beside the UCI model."""
    from bench.run import QUICK, Options, run

    if not csv.is_file():
        fail(f"{csv} does not exist")
    sizes = {**(QUICK if quick else {}), **({} if quick and events == 1_000_000 else {"events": events})}
    for name, value in (("latency_s", latency_seconds), ("memory_sessions", memory_sessions)):
        if value is not None:
            sizes[name] = value
    command = " ".join(["personastream", *sys.argv[1:]])
    opts = Options(csv=csv, out=out, json_out=json_out or out.with_name("benchmarks.json"), command=command,
                   rate=rate, keep=keep, **sizes)
    for target in run(opts, console)["targets"]:
        console.print(f"{'met' if target['met'] else '[red]not met[/]'}: {target['measure']} = {target['value']} "
                      f"(target {target['target']})")
    console.print(f"wrote {opts.out} and {opts.json_out}")


@cli.command("bench-web")
def bench_web(csv: Path = typer.Option(DEFAULT_UCI, help="UCI Online Shoppers CSV replayed as visits"),
              out: Path = typer.Option(Path("BENCHMARKS.md"), help="Markdown report; only its web section is replaced"),
              json_out: Path = typer.Option(Path("benchmarks-web.json"), "--json", help="the JSON results")) -> None:
    """Visit-lookup latency on 2 workers under load and collector throughput, on a fresh local broker."""
    from bench.web import run

    if not csv.is_file():
        fail(f"{csv} does not exist")
    results = run(csv, out, json_out, console.print)
    console.print(f"lookup p50/p99 {results['lookup']['p50_ms']}/{results['lookup']['p99_ms']} ms; collector "
                  f"{results['collector']['collector_process']['events_per_s']} ev/s; wrote {out} and {json_out}")


@cli.command("bench-commits")
def bench_commits(refs: list[str] = typer.Argument(..., help="git commits to compare, oldest first"),
                  events: int = typer.Option(200_000, help="events pre-loaded once, read by every worker"),
                  rounds: int = typer.Option(2, help="rounds; each runs every commit once, in the given order"),
                  csv: Path = typer.Option(DEFAULT_UCI, help="UCI Online Shoppers CSV replayed as visits"),
                  out: Path = typer.Option(Path("BENCHMARKS.md"), help="Markdown report; only its commits section "
                                           "is replaced"),
                  json_out: Path = typer.Option(Path("benchmarks-commits.json"), "--json",
                                                help="the JSON results")) -> None:
    """One worker of each commit over the same pre-loaded events, on a fresh local broker: what each change bought."""
    from bench.commits import run

    if not csv.is_file():
        fail(f"{csv} does not exist")
    results = run(csv.resolve(), refs, events, rounds, out.resolve(), json_out.resolve(), console.print)
    for commit in results["commits"]:
        console.print(f"{commit['subject'][:70]}: median {commit['median_events_per_s']:,.0f} ev/s")
    console.print(f"wrote {out} and {json_out}")


@cli.command()
def soak(minutes: float = typer.Option(10.0, help="measured minutes, after the warm-up"),
         rate: float = typer.Option(1500.0, help="events/s produced, steadily"),
         warmup_minutes: float = typer.Option(2.0, help="minutes of load before the measured window"),
         out: Path = typer.Option(Path("BENCHMARKS.md"), help="Markdown report; only its soak section is replaced"),
         json_out: Path = typer.Option(Path("soak.json"), "--json", help="the samples and results"),
         png: Path = typer.Option(Path("docs/img/soak.png"), help="RSS, lag and throughput over time"),
         session_gap: float = typer.Option(60.0, help="the worker's PERSONASTREAM_SESSION_GAP_S for the soak"),
         session_retain: float = typer.Option(60.0, help="the worker's PERSONASTREAM_SESSION_RETAIN_S for the soak"),
         distinct_visits: int = typer.Option(200_000, min=0, help="one-event visits of new pages sent at once after "
                                             "the measured minutes; RSS once retention deleted them (0: no phase)"),
         max_page_counters: int = typer.Option(10_000, help="the worker's PERSONASTREAM_MAX_PAGE_COUNTERS"),
         csv: Path = typer.Option(DEFAULT_UCI, help="UCI Online Shoppers CSV; its first 1,000 rows are replayed"),
         keep: bool = typer.Option(False, help="keep the temporary broker home and worker log")) -> None:
    """Soak one worker on a fresh local broker: steady load for minutes; RSS growth and consumer lag."""
    from bench.soak import Options, run

    if not csv.is_file():
        fail(f"{csv} does not exist")
    opts = Options(csv=csv, out=out, json_out=json_out, png=png, command=" ".join(["personastream", *sys.argv[1:]]),
                   minutes=minutes, rate=rate, warmup_minutes=warmup_minutes, session_gap_s=session_gap,
                   session_retain_s=session_retain, keep=keep, distinct_visits=distinct_visits,
                   max_page_counters=max_page_counters)
    for target in run(opts, console)["targets"]:
        console.print(f"{'met' if target['met'] else '[red]not met[/]'}: {target['measure']} = {target['value']} "
                      f"(target {target['target']})")
    console.print(f"wrote {opts.out} (soak section), {opts.json_out} and {opts.png}")


@cli.command()
def actions(as_json: bool = typer.Option(False, "--json",
                                         help="a JSON list of {persona, band, action_id, text}")) -> None:
    """Show the actions catalog in effect (PERSONASTREAM_ACTIONS): the candidate actions per persona and band."""
    from rich.table import Table

    from models.actions import ActionCatalog, CatalogError

    conf = _settings()
    try:
        listing = ActionCatalog.load(conf.actions).listing()
    except CatalogError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(orjson.dumps(listing, option=orjson.OPT_INDENT_2).decode())
        return
    table = Table(title=f"actions catalog {conf.actions} (the first of a persona and band is its default)")
    for column in ("persona", "band", "action_id", "text"):
        table.add_column(column)
    for entry in listing:
        table.add_row(entry["persona"], entry["band"] or "any", entry["action_id"], entry["text"])
    Console().print(table)


@cli.command()
def simulate(visits: int = typer.Option(2000, min=1, help="UCI visits to replay"),
             truth: Path = typer.Option(..., help="JSON {persona: {action_id: conversion multiplier}}"),
             out: Path = typer.Option(Path("reports/simulation"), help="folder for simulation.json and the PNGs"),
             csv: Optional[Path] = typer.Option(None, help=f"UCI CSV (default {DEFAULT_UCI} if present, else the "
                                                "sample)"),
             wave_size: int = typer.Option(60, min=1, help="visits per wave (between two learning steps)"),
             seed: int = typer.Option(7, help="seed of the row draw and of the purchases"),
             broker: Optional[str] = BrokerOpt) -> None:
    """Closed loop against running workers: replay visits, buy with probability min(1, intent × truth), measure."""
    from models.actions import CatalogError
    from stream.tools.simulate import Options, load_truth
    from stream.tools.simulate import simulate as run

    conf = _settings(broker=broker)
    csv = csv or (DEFAULT_UCI if DEFAULT_UCI.is_file() else Path("data/sample/online_shoppers_sample.csv"))
    try:
        load_truth(truth)
    except (OSError, ValueError) as exc:
        fail(f"truth file: {exc}")
    frame = _read_uci(csv)
    _ensure_topics(conf)
    try:
        summary = asyncio.run(run(conf, Options(truth=truth, out=out, csv=csv, visits=visits, wave_size=wave_size,
                                                seed=seed), frame, log=console.print))
    except (CatalogError, TimeoutError) as exc:
        fail(str(exc))
    console.print_json(orjson.dumps({k: summary[k] for k in ("holdout_share", "conversion", "holdout_lift", "ipw",
                                                             "regret", "rewards")}).decode())
    console.print(f"wrote {out / 'simulation.json'} and {', '.join(summary['plots'])}")


@pages_cli.command("seed")
def pages_seed(catalog: Path = typer.Argument(..., help="CSV/JSONL with page_id,bounce_rate,exit_rate,page_value"),
               broker: Optional[str] = BrokerOpt) -> None:
    """Seed page statistics from a catalog (catalog values win over online-observed ones)."""
    from stream.tools.replay import read_catalog, seed_pages

    conf = _settings(broker=broker)
    if not catalog.is_file():
        fail(f"{catalog} does not exist")
    try:
        records = read_catalog(catalog)
    except ValueError as exc:
        fail(f"{catalog}: {exc}")
    _ensure_topics(conf)
    console.print(f"seeded {asyncio.run(seed_pages(conf.bootstrap, conf.pages_topic, records))} pages")


def main() -> None:
    cli()
