"""The Faust application: ``faust -A stream.app worker`` or ``personastream worker``.

Topics and tables are declared here; the agents in :mod:`stream.agents` wire them to the pure
processing in :mod:`stream.sessions`.
"""

from __future__ import annotations

import faust

from models.intent import IntentModel
from stream.config import settings
from stream.kafka_io import CompactedFeed
from stream.pages import PageTable
from stream.sessions import SessionProcessor
from stream.topics import page_observations_topic, persona_learning_topic, persona_model_topic

SETTINGS = settings()
INTENT = IntentModel.load().compiled(SETTINGS.model_cache)

app = faust.App(
    SETTINGS.app_id,
    broker=SETTINGS.broker,
    store=SETTINGS.store,
    datadir=str(SETTINGS.home / "worker"),
    topic_partitions=SETTINGS.partitions,
    topic_replication_factor=SETTINGS.replication_factor,
    topic_allow_declare=True,
    topic_disable_leader=False,
    consumer_auto_offset_reset="earliest",
    table_standby_replicas=0,
    web_port=SETTINGS.web_port,
    web_host="127.0.0.1",
    stream_buffer_maxsize=SETTINGS.buffer_maxsize,
    broker_max_poll_records=2000,
    producer_linger=0.005,
    stream_wait_empty=False,  # at stop, commit what is acked and go: unacked records are read again
    broker_session_timeout=20.0,  # a worker that died without leaving hands its partitions over sooner
    key_serializer="raw",
    value_serializer="raw",
)

events = app.topic(SETTINGS.events_topic, key_serializer="raw", value_serializer="raw")
personas = app.topic(SETTINGS.personas_topic, key_serializer="raw", value_serializer="raw")
dead_letters = app.topic(SETTINGS.dlq_topic, key_serializer="raw", value_serializer="raw")
pages = app.topic(SETTINGS.pages_topic, key_serializer="raw", value_serializer="raw")
page_observations = app.topic(page_observations_topic(SETTINGS), key_serializer="raw", value_serializer="raw")
persona_model = app.topic(persona_model_topic(SETTINGS), partitions=1, key_serializer="raw", value_serializer="raw")
persona_learning = app.topic(persona_learning_topic(SETTINGS), partitions=1, key_serializer="raw",
                             value_serializer="raw")

sessions = app.Table("sessions", partitions=SETTINGS.partitions, key_type=bytes, value_type=bytes)
page_counters = app.Table("page-counters", partitions=SETTINGS.partitions, key_type=bytes, value_type=bytes)

page_table = PageTable(prior=INTENT.page_prior)
page_feed = CompactedFeed(SETTINGS.bootstrap, SETTINGS.pages_topic, page_table.apply)
processor = SessionProcessor.for_worker(SETTINGS, INTENT, page_table)
shared_persona = processor.personas
persona_feed = CompactedFeed(SETTINGS.bootstrap, persona_model.get_topic_name(), shared_persona.apply)

import stream.agents  # noqa: E402,F401 - registers agents, tasks and web views on ``app``
