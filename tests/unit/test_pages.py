"""Page-observation records between the session batches and the page agent (no Kafka)."""

from collections import Counter

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner

from stream.pages import PAGES_PER_RECORD, CountedPages, observation_records, observations


def test_each_page_goes_once_to_the_partition_its_id_hashes_to() -> None:
    observed = {f"page-{i}": Counter(views=i + 1, entrances=i % 2) for i in range(200)}
    records = observation_records(observed, partitions=4)
    every = [0, 1, 2, 3]
    seen = {}
    for partition, value in records:
        for page_id, counts in observations(value).items():
            assert partition == DefaultPartitioner()(page_id.encode(), every, every)
            assert page_id not in seen
            seen[page_id] = counts
    assert seen == {page_id: dict(counts) for page_id, counts in observed.items()}
    assert len(records) == 4


def test_no_pages_no_records() -> None:
    assert observation_records({}, partitions=4) == []


def test_a_partitions_pages_are_split_into_records_the_producer_can_send() -> None:
    """20,000 exit pages of 128-character ids (a batch that ends as many visits)."""
    observed = {f"{i:0>128}": {"exits": 1, "bounces": 1} for i in range(20_000)}
    records = observation_records(observed, partitions=2)
    assert all(len(observations(value)) <= PAGES_PER_RECORD and len(value) < 200_000 for _, value in records)
    assert sum(len(observations(value)) for _, value in records) == 20_000


@pytest.mark.parametrize("raw, reason", [
    (None, "JSON object"),
    (b"", "JSON object"),
    (b"\xff\xfe", "malformed"),
    (b"[1, 2]", "JSON object"),
    (b'{"views": 1}', "maps views"),  # one page's counts, not keyed by page id
    (b'{"": {"views": 1}}', "1 to 128"),
    (orjson.dumps({"p" * 129: {"views": 1}}), "1 to 128"),
    (b'{"home": {"clicks": 1}}', "maps views"),
    (b'{"home": {"views": -1}}', "maps views"),
    (b'{"home": {"views": 1.5}}', "maps views"),
    (b'{"home": {"views": true}}', "maps views"),
    (b'{"home": {"views": 4294967296}}', "maps views"),
    (b'{"home": {"views": 1}, "cart": null}', "maps views"),
])
def test_anything_but_page_ids_to_counts_is_refused_with_the_reason(raw, reason) -> None:
    with pytest.raises(ValueError, match=reason):
        observations(raw)


def test_counted_pages_evict_the_least_recently_counted_beyond_the_limit_per_partition() -> None:
    counted = CountedPages(limit=3)
    assert [counted.count(0, key) for key in (b"a", b"b", b"c", b"a")] == [[], [], [], []]
    assert counted.count(0, b"d") == [b"b"]  # "a" was counted again since
    assert counted.count(1, b"x") == []  # partitions are bounded apart
    assert counted.count(0, b"e") == [b"c"] and len(counted) == 4
    assert counted.restore([(0, b"p"), (0, b"q"), (0, b"r"), (0, b"s"), (2, b"y")]) == [(0, b"p")]  # over the limit
    assert len(counted) == 4 and counted.count(0, b"t") == [b"q"]
