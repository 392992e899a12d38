"""What a worker loads at start-up: the intent model, the page table, the session processor and the
feeds that keep every worker's copy of the compacted pages and persona-model topics."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, TypeVar

from models.actions import ActionCatalog
from models.directory import ModelDirectory
from stream.config import Settings
from stream.kafka_io import CompactedFeed
from stream.pages import PageTable
from stream.persona_sync import SharedPersona
from stream.sessions import SessionProcessor
from stream.topics import persona_model_topic

T = TypeVar("T")


@dataclass(frozen=True)
class Runtime:
    processor: SessionProcessor
    page_feed: CompactedFeed
    persona_feed: CompactedFeed
    serial: ThreadPoolExecutor
    """The one thread that runs the processor and everything that changes its models, in submission
    order: the event loop stays free for fetching, producing and web requests meanwhile."""

    @classmethod
    def build(cls, conf: Settings) -> "Runtime":
        """Load the actions catalog and the model directory ``conf.models`` (the intent model compiled,
        cached in ``conf.model_cache``); :class:`~models.intent.ModelFileError` names a missing or broken
        model file (:class:`~models.actions.CatalogError`, one of them, the catalog entry at fault)."""
        catalog = ActionCatalog.load(conf.actions)
        models = ModelDirectory.load(conf.models)
        intent = models.intent.compiled(conf.model_cache)
        pages = PageTable(prior=intent.page_prior, learned=dict(models.pages.pages) if models.pages else {})
        processor = SessionProcessor.for_worker(conf, intent, pages, catalog, models.personas)
        serial = ThreadPoolExecutor(1, "processor")
        return cls(processor=processor, serial=serial,
                   page_feed=CompactedFeed(conf.bootstrap, conf.pages_topic, pages.apply, serial),
                   persona_feed=CompactedFeed(conf.bootstrap, persona_model_topic(conf), processor.personas.apply,
                                              serial))

    async def serially(self, fn: Callable[..., T], *args) -> T:
        """``fn(*args)`` on the processor's thread, after everything submitted before it."""
        return await asyncio.get_running_loop().run_in_executor(self.serial, fn, *args)

    @property
    def pages(self) -> PageTable:
        return self.processor.pages

    @property
    def personas(self) -> SharedPersona:
        return self.processor.personas

    async def wait_ready(self) -> None:
        await self.page_feed.ready.wait()
        await self.persona_feed.ready.wait()
