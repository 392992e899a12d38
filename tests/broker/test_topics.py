"""`personastream topics` creates every topic before a worker starts, the tables' changelogs included, and
returns once the broker's metadata lists them all (a worker joining its group meanwhile would otherwise leave
a changelog out of the assignment, and no worker would restore that table)."""

import pytest

from stream.config import Settings
from stream.topics import TABLES, changelog_topic

pytestmark = pytest.mark.kafka


def test_topics_creates_the_changelogs_of_the_workers_tables(pipeline):
    pipeline.cli("topics")
    conf = Settings(app_id=pipeline.env["PERSONASTREAM_APP_ID"])
    changelogs = {changelog_topic(conf, table) for table in TABLES}
    assert changelogs <= set(pipeline.broker_topics())
    assert {pipeline.partition_count(topic) for topic in changelogs} == {pipeline.partitions}
