"""Prometheus metrics of a worker, served by the Faust web server at /metrics."""

from prometheus_client import Counter, Histogram

EVENTS = Counter("personastream_events_total", "raw records consumed")
DEAD_LETTERS = Counter("personastream_dead_letters_total", "records sent to the dead-letter topic")
DUPLICATES = Counter("personastream_duplicate_events_total", "events dropped as duplicates by event_id")
PERSONAS = Counter("personastream_persona_events_total", "PersonaEvents published")
BATCH_SECONDS = Histogram("personastream_batch_seconds", "processing time of one batch",
                          buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
VISITS_CLOSED = Counter("personastream_visits_closed_total", "visits ended by the inactivity gap and learned from")
PERSONA_HANDOVERS = Counter("personastream_persona_handovers_total", "persona learner snapshots sent for merging")
PERSONA_MERGES = Counter("personastream_persona_merges_total", "shared persona models published by this worker")
REWINDS = Counter("personastream_offset_rewinds_total",
                  "seeks back to read again records the consumer dropped (see stream/offsets.py)")
DELIVERY_RETRIES = Counter("personastream_delivery_retries_total",
                           "batches sent again because Kafka could not be reached")
LOG_LINES_HELD = Counter("personastream_log_lines_held_total", "repeated Kafka client warnings and errors not logged")
COLLECTED = Counter("personastream_collected_events_total", "events accepted by /collect and produced to Kafka")
COLLECT_REFUSED = Counter("personastream_collect_refused_total", "requests /collect refused as a whole", ["status"])
