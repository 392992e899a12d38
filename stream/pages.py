"""Page statistics for session features: a catalog (seeded) plus statistics observed online.

Every worker keeps the whole page table in memory, read from the compacted pages topic: records
keyed ``catalog/<page>`` come from a seeded catalog, records keyed ``observed/<page>`` from the
page-observation aggregator. Catalog statistics win; observed ones count once a page has
``MIN_VIEWS`` views; other pages get the model's prior.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import orjson
from aiokafka import AIOKafkaConsumer

from schemas.pages import PageStats
from stream.kafka_io import assign_all

log = logging.getLogger(__name__)
MIN_VIEWS = 20


@dataclass
class PageTable:
    """Page id -> (bounce rate, exit rate, page value), with a prior for unknown pages."""

    prior: tuple[float, float, float]
    catalog: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    observed: dict[str, tuple[float, float, float]] = field(default_factory=dict)

    def __call__(self, page_id: str) -> tuple[float, float, float]:
        found = self.catalog.get(page_id)
        if found is None:
            found = self.observed.get(page_id, self.prior)
        return found

    def apply(self, key: bytes, value: bytes | None) -> None:
        source, _, page_id = key.decode().partition("/")
        table = self.catalog if source == "catalog" else self.observed
        if value is None:
            table.pop(page_id, None)
            return
        stats = PageStats.model_validate_json(value)
        if stats.source == "catalog" or stats.views >= MIN_VIEWS:
            table[page_id] = (stats.bounce_rate, stats.exit_rate, stats.page_value)


class PageFeed:
    """Reads the pages topic into a :class:`PageTable`: to its end before ``ready``, then live."""

    def __init__(self, bootstrap: str, topic: str, table: PageTable) -> None:
        self.bootstrap, self.topic, self.table = bootstrap, topic, table
        self.ready = asyncio.Event()

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False, group_id=None,
                                    auto_offset_reset="earliest")
        await consumer.start()
        try:
            partitions = await assign_all(consumer, self.topic)
            end = await consumer.end_offsets(partitions)
            pending = set(partitions)
            while True:
                for tp, records in (await consumer.getmany(timeout_ms=200, max_records=5000)).items():
                    for record in records:
                        try:
                            self.table.apply(record.key, record.value)
                        except ValueError as exc:
                            log.warning("skipping bad page record at %s:%s: %s", tp, record.offset, exc)
                if not self.ready.is_set():
                    pending = {tp for tp in pending if await consumer.position(tp) < end[tp]}
                    if not pending:
                        log.info("page table loaded: %d catalog, %d observed pages",
                                 len(self.table.catalog), len(self.table.observed))
                        self.ready.set()
        finally:
            await consumer.stop()


def page_record(stats: PageStats) -> tuple[bytes, bytes]:
    """The pages-topic record of ``stats``: key ``<source>/<page id>``, JSON value."""
    return f"{stats.source}/{stats.page_id}".encode(), orjson.dumps(stats.model_dump())
