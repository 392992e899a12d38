"""Settings: one frozen object per process, from the environment (``PERSONASTREAM_*``) and
command-line overrides.

The ``personastream`` commands build it with :func:`settings` and :func:`install` it before the
worker's app module is imported; ``faust -A stream.app worker`` reads it from the environment.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PERSONASTREAM_", extra="ignore", frozen=True)

    broker: str = Field("kafka://127.0.0.1:9092", description="Kafka bootstrap URL(s), kafka://host:port[;host:port]")
    home: Path = Field(Path(".personastream"), description="runtime state: broker data, logs, worker tables")
    app_id: str = "personastream"
    events_topic: str = "clickstream.events"
    personas_topic: str = "clickstream.personas"
    dlq_topic: str = "clickstream.dlq"
    pages_topic: str = "clickstream.pages"
    partitions: int = Field(4, ge=1, description="partitions of the events topic and every table changelog")
    replication_factor: int = Field(1, ge=1, description="replication factor of topics the pipeline creates")
    session_gap_s: float = Field(1800.0, gt=0, description="event-time inactivity gap that ends a visit")
    session_retain_s: float = Field(1800.0, ge=0, description="an ended visit's state is deleted when its "
                                    "partition's event time passes its last event by the gap plus this")
    max_future_s: float = Field(3600.0, gt=0, description="events dated more than this ahead of the worker's "
                                "clock are dead letters")
    max_clock_lead_s: float = Field(60.0, gt=0, description="a partition's event time runs at most this far ahead "
                                    "of the worker's clock (keep it well below the gap): an event dated further "
                                    "ahead is folded into its visit but cannot end the other visits of its partition")
    max_open_visits: int = Field(1_000_000, ge=1000, description="open visits indexed per partition for ending "
                                 "them by event time; beyond it those with the oldest last events are closed when "
                                 "they return")
    max_page_counters: int = Field(50_000, ge=100, description="pages counted for observed page statistics, per "
                                   "partition of the page observations; counting one more deletes the counters and "
                                   "observed statistics of the least recently counted")
    batch_size: int = Field(16_000, ge=1, description="events taken per batch by the session agent (fewer when "
                            "the batch window passes first: only a worker that is behind takes full batches, which "
                            "score each visit once for more of its events)")
    batch_window_s: float = Field(0.03, gt=0, le=0.5, description="longest an event waits for its batch to fill "
                                  "(counted from its arrival)")
    page_window_s: float = Field(1.0, gt=0, le=10, description="longest a page observation waits before the page "
                                 "agent counts it (page statistics need no lower latency; one page batch per "
                                 "second instead of one per session batch spares the event loop)")
    fetch_min_bytes: int = Field(32768, ge=1, description="bytes the broker gathers for a worker's fetch before "
                                 "answering (at most fetch_max_wait_ms; Faust asks for 1 byte, which under moderate "
                                 "load makes every fetch a round trip for a few records)")
    fetch_max_wait_ms: int = Field(25, ge=0, le=5000, description="longest the broker holds a worker's fetch "
                                   "to gather fetch_min_bytes (Faust: 1500)")
    buffer_maxsize: int = Field(
        200_000, ge=1000, description="records buffered by the events and the page-observations intakes (the fetch "
        "loop waits while one is full) and per partition of Faust's other streams")
    top_features: int = Field(3, ge=0, le=10, description="TreeSHAP top features in each medium/high-intent "
                              "PersonaEvent; 0 turns explanations off (about 2× the processor's throughput)")
    explain_delta: float = Field(
        0.1, ge=0, le=1, description="re-explain a medium/high-intent visit (TreeSHAP top features) when its band "
        "changes or its score moves by more than this; 0 explains every such PersonaEvent")
    gc_tuning: bool = Field(True, description="freeze the objects alive after start-up (models, app) out of the "
                            "garbage collector and collect less often: shorter pauses, more throughput (BENCHMARKS.md)")
    model_cache: Path = Field(Path.home() / ".cache" / "personastream" / "models",
                              description="where the intent model compiled to native code is cached")
    persona_sync_s: float = Field(
        10.0, gt=0, description="how often workers hand persona learning over and the merging worker "
        "publishes the next shared persona model")
    models: Path = Field(Path(__file__).resolve().parents[1] / "models" / "artifacts",
                         description="model directory the workers score with: intent model, persona model and "
                         "learned page statistics (personastream train --events ... --out DIR writes one); "
                         "the shipped UCI-trained models by default")
    actions: Path = Field(Path(__file__).resolve().parents[1] / "models" / "artifacts" / "actions.json",
                          description="the actions catalog: candidate actions (bandit arms) per persona and band")
    holdout: float = Field(0.1, ge=0, le=1, description="share of sessions (by a hash of the session id) that always "
                           "get the default action, to measure the bandit's lift")
    store: str = Field("memory://", description="Faust table store: memory:// or rocksdb:// "
                       "(needs the [rocksdb] extra)")
    produce_timeout_s: float = Field(
        10.0, gt=0, description="longest a produced record may wait for the broker's confirmation before it fails "
        "(and is sent again, with back-off): while records wait for a partition without a leader (the broker is "
        "away), the Kafka client asks for metadata in a loop that has no back-off, at up to a whole CPU")
    web_port: int = Field(6066, ge=0, le=65535)
    allowed_origins: str = Field("", description="comma-separated origins (https://shop.example) whose pages may "
                                 "call the collector and the visit lookup from a browser, and the only origins "
                                 "whose POST /collect is accepted; none by default")
    allow_no_origin: bool = Field(True, description="accept a POST /collect without an Origin header (servers, "
                                  "curl; browsers always send one); false: only pages of ALLOWED_ORIGINS may write")
    collect_requests_per_s: float = Field(20.0, gt=0, description="requests per second one client may send to "
                                          "/collect (bursts of 5 s), kept in memory only")
    kafka_port: int = Field(9092, ge=1, le=65535, description="port of the local development broker")
    kafka_version: str = "4.1.1"

    @property
    def origins(self) -> list[str]:
        return [origin.strip().rstrip("/") for origin in self.allowed_origins.split(",") if origin.strip()]

    @property
    def bootstrap(self) -> str:
        """The broker list as plain host:port pairs, for aiokafka clients."""
        return ",".join(part.removeprefix("kafka://") for part in self.broker.replace(";", ",").split(","))


def settings(**overrides: object) -> Settings:
    """Settings from the environment, with non-None overrides applied."""
    return Settings(**{key: value for key, value in overrides.items() if value is not None})


_installed: Settings | None = None


def install(conf: Settings) -> None:
    """Make ``conf`` the settings of this process (call before importing :mod:`stream.app`)."""
    global _installed
    _installed = conf


def current() -> Settings:
    """The settings of this process: the installed ones, else the environment's (read once)."""
    global _installed
    if _installed is None:
        _installed = Settings()
    return _installed
