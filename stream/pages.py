"""Page statistics for session features: a catalog (seeded), statistics learned with the model, and
statistics observed online.

Every worker keeps the whole page table in memory, read from the compacted pages topic: records
keyed ``catalog/<page>`` come from a seeded catalog, records keyed ``observed/<page>`` from the
page-observation aggregator. The model directory's learned statistics (page values included) come
with the model. Catalog statistics win, then learned ones; observed ones count once a page has
``MIN_VIEWS`` views; other pages get the model's prior.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import orjson

from schemas.pages import PageStats
from stream.topics import key_hash

MIN_VIEWS = 20


@dataclass
class PageTable:
    """Page id -> (bounce rate, exit rate, page value), with a prior for unknown pages."""

    prior: tuple[float, float, float]
    catalog: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    observed: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    learned: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    """Statistics learned with the model from the site's own visits (fixed while the worker runs)."""

    def __call__(self, page_id: str) -> tuple[float, float, float]:
        found = self.catalog.get(page_id)
        if found is None:
            found = self.learned.get(page_id)
            if found is None:
                found = self.observed.get(page_id, self.prior)
        return found

    def observes(self, page_id: str) -> bool:
        """Whether the pipeline counts the views, exits and bounces of ``page_id``: not for a page the
        catalog describes or the model learned, whose statistics win over observed ones (they would
        never be used).

        >>> table = PageTable((0.1, 0.2, 0.0), catalog={"home": (0.3, 0.4, 0.0)}, learned={"p1": (0, 0, 9.0)})
        >>> table.observes("home"), table.observes("p1"), table.observes("blog/42")
        (False, False, True)
        >>> table("p1"), table("blog/42")
        ((0, 0, 9.0), (0.1, 0.2, 0.0))
        """
        return page_id not in self.catalog and page_id not in self.learned

    def apply(self, key: bytes, value: bytes | None) -> None:
        source, _, page_id = key.decode().partition("/")
        table = self.catalog if source == "catalog" else self.observed
        if value is None:
            table.pop(page_id, None)
            return
        stats = PageStats.model_validate_json(value)
        if stats.source == "catalog":
            table[page_id] = (stats.bounce_rate, stats.exit_rate, stats.page_value)
        elif stats.views >= MIN_VIEWS:  # observed online: bounce and exit rates; the value stays the prior's
            table[page_id] = (stats.bounce_rate, stats.exit_rate, self.prior[2])


def page_record(stats: PageStats) -> tuple[bytes, bytes]:
    """The pages-topic record of ``stats``: key ``<source>/<page id>``, JSON value."""
    return f"{stats.source}/{stats.page_id}".encode(), orjson.dumps(stats.model_dump())


def observed_stats(page_id: str, counts: Mapping[str, int]) -> PageStats | None:
    """Observed statistics of a page from its running counts (views, entrances, exits, bounces), as
    Google Analytics defines them: bounces per entrance, exits per view. None before :data:`MIN_VIEWS`
    views: page tables would ignore them, so they are not published."""
    views = counts.get("views", 0)
    if views < MIN_VIEWS:
        return None
    return PageStats(page_id=page_id, source="observed", views=views,
                     bounce_rate=min(1.0, counts.get("bounces", 0) / max(counts.get("entrances", 0), 1)),
                     exit_rate=min(1.0, counts.get("exits", 0) / views), page_value=0.0)


OBSERVED_COUNTS = ("views", "entrances", "exits", "bounces")


@dataclass
class CountedPages:
    """The pages whose views, entrances, exits and bounces the page agent keeps counting: at most
    ``limit`` page keys per partition, least recently counted first. Counting one more beyond it
    forgets the least recently counted, whose counters the agent deletes."""

    limit: int
    _recent: dict[int, OrderedDict[bytes, None]] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return sum(len(keys) for keys in self._recent.values())

    def restore(self, stored: Iterable[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
        """Start over from the (partition, page key) pairs a table holds (after a restart or a
        rebalance), in the order given; returns those beyond the limit, forgotten."""
        self._recent = {}
        return [(partition, gone) for partition, key in stored for gone in self.count(partition, key)]

    def count(self, partition: int, key: bytes) -> list[bytes]:
        """Mark ``key`` counted just now; returns the keys of ``partition`` forgotten for it."""
        recent = self._recent.get(partition)
        if recent is None:
            recent = self._recent[partition] = OrderedDict()
        recent[key] = None
        recent.move_to_end(key)
        return [recent.popitem(last=False)[0] for _ in range(len(recent) - self.limit)]


def applied_key(partition: int) -> bytes:
    """The page-counters key of the newest observation offset counted from ``partition``, written with
    the counts it led to, so an observation read again after a rebalance or a crash is not counted
    twice. Not UTF-8, so never a page id's key.

    >>> applied_key(3)
    b'\\xffapplied:3'
    """
    return b"\xffapplied:%d" % partition


PAGES_PER_RECORD = 1000
"""Pages in one page-observations record at most: under 200 KB however long their ids, well below the
producer's 1 MB request limit (a batch that ends 200,000 visits observes as many exit pages)."""


def observation_records(observed: Mapping[str, Mapping[str, int]], partitions: int) -> list[tuple[int, bytes]]:
    """A batch's page observations (page id -> counts) as page-observations records: (partition, JSON
    object of up to :data:`PAGES_PER_RECORD` page ids it owns and their counts). A page id's partition is
    the one Kafka's default partitioner gives it as a key, so each page is counted on one partition.

    >>> observation_records({"home": {"views": 2}, "cart": {"exits": 1}}, partitions=1)
    [(0, b'{"home":{"views":2},"cart":{"exits":1}}')]
    """
    owned: dict[int, list[dict[str, Mapping[str, int]]]] = {}
    for page_id, counts in observed.items():
        chunks = owned.setdefault(key_hash(page_id.encode()) % partitions, [{}])
        if len(chunks[-1]) == PAGES_PER_RECORD:
            chunks.append({})
        chunks[-1][page_id] = counts
    return [(partition, orjson.dumps(pages)) for partition, chunks in owned.items() for pages in chunks]


def observations(raw: bytes | None) -> dict[str, dict[str, int]]:
    """The page ids and counts of one page-observations record; ValueError if it is not one."""
    try:
        pages = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"malformed page observations: {exc}") from None
    if not isinstance(pages, dict):
        raise ValueError("a page-observations record is a JSON object of page ids and their counts")
    for page_id, counts in pages.items():
        if not 0 < len(page_id) <= 128:
            raise ValueError("page observations are keyed by page ids of 1 to 128 characters")
        if not isinstance(counts, dict) or not all(
                name in OBSERVED_COUNTS and type(n) is int and 0 <= n < 2**31 for name, n in counts.items()):
            raise ValueError(f"a page observation maps {', '.join(OBSERVED_COUNTS)} to counts")
    return pages


def compact_json(value: object, option: int = 0) -> bytes:
    """JSON bytes sized to their content: orjson's own result keeps its larger output buffer
    resident (~4 KB however small the value), which adds up in a table of many keys, and in a batch
    of many outputs (its buffers' freed memory stays with the worker, scattered between what it keeps)."""
    return bytes(memoryview(orjson.dumps(value, option=option)))
