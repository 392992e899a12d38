"""The Faust application: the app, its topics and its tables.

``personastream worker`` (or ``faust -A stream.app worker``) runs it. The agents and timers in
:mod:`stream.agents` and the web views in :mod:`stream.views` import this module; Faust's
autodiscovery finds them when the worker starts. Importing this module loads no model: what a
worker loads is built once, at worker start-up, by :func:`runtime`.
"""

from __future__ import annotations

import sys
from functools import cache
from typing import TYPE_CHECKING

import faust

from stream import config, gc_pauses
from stream.intake import App
from stream.logs import GuardedWorker
from stream.topics import page_observations_topic, persona_learning_topic, persona_model_topic
from stream.web.guard import answer_failures

if TYPE_CHECKING:
    from stream.runtime import Runtime

settings = config.current()

SWITCH_INTERVAL_S = 0.001
"""How long the processor's thread holds the GIL before the event loop may take it (Python's default is
5 ms): web requests and fetches wait at most about this long while a batch is processed."""

app = App(
    settings.app_id,
    origin="stream.app",
    autodiscover=["stream.agents", "stream.web.views", "stream.web.dashboard"],
    broker=settings.broker,
    store=settings.store,
    datadir=str(settings.home / "worker"),
    topic_partitions=settings.partitions,
    topic_replication_factor=settings.replication_factor,
    topic_allow_declare=True,
    topic_disable_leader=False,
    consumer_auto_offset_reset="earliest",
    table_standby_replicas=0,
    web_port=settings.web_port,
    web_host="127.0.0.1",
    web_application_options={"middlewares": [answer_failures]},
    Worker=GuardedWorker,
    stream_buffer_maxsize=settings.buffer_maxsize,
    broker_max_poll_records=2000,
    fetch_min_bytes=settings.fetch_min_bytes,
    fetch_max_wait_ms=settings.fetch_max_wait_ms,
    producer_linger=0.005,
    producer_request_timeout=settings.produce_timeout_s,  # Faust: 1200 s, a whole CPU for 20 min of an outage
    producer_max_batch_size=262144,  # a batch of changelog or persona records per partition goes out in one
    stream_wait_empty=False,  # at stop, commit what is acked and go: unacked records are read again
    broker_session_timeout=20.0,  # a worker that died without leaving hands its partitions over sooner
    key_serializer="raw",
    value_serializer="raw",
)


def _topic(name: str, **options) -> faust.TopicT:
    return app.topic(name, key_serializer="raw", value_serializer="raw", **options)


events = _topic(settings.events_topic)
personas = _topic(settings.personas_topic)
dead_letters = _topic(settings.dlq_topic)
pages = _topic(settings.pages_topic)
page_observations = _topic(page_observations_topic(settings))
persona_model = _topic(persona_model_topic(settings), partitions=1)
persona_learning = _topic(persona_learning_topic(settings), partitions=1)

sessions = app.Table("sessions", partitions=settings.partitions, key_type=bytes, value_type=bytes)
"""session id -> SessionState of its current (or last ended) visit."""
visits = app.Table("visits", partitions=settings.partitions, key_type=bytes, value_type=bytes)
"""session id -> the newest PersonaEvent published for it (JSON), for the visit lookup."""
event_intake = app.intake(events, maxsize=settings.buffer_maxsize)
"""The events topic's records, for the session agent (see :mod:`stream.intake`)."""
observation_intake = app.intake(page_observations, maxsize=settings.buffer_maxsize)
"""The page-observations topic's records, for the page agent."""

page_counters = app.Table("page-counters", partitions=settings.partitions, key_type=bytes, value_type=bytes)


@cache
def runtime() -> Runtime:
    """Models, session processor and feeds of this worker, built on first use (at worker start-up)."""
    from stream.runtime import Runtime  # LightGBM and the compiled model load here, not at import

    return Runtime.build(settings)


@app.on_worker_init.connect
def load_runtime(app: faust.App, **kwargs) -> None:
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    runtime()
    gc_pauses.time_pauses()
    if settings.gc_tuning:
        gc_pauses.tune()
