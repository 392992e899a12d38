"""The topic layout holds every topic a worker reads or writes, its tables' changelogs included."""

from stream.config import settings
from stream.topics import TABLES, changelog_topic, layout


def test_the_layout_holds_the_changelog_of_every_table_of_the_app() -> None:
    from stream.app import app

    changelogs = {table.changelog_topic.get_topic_name() for table in app.tables.values()}
    assert changelogs == {changelog_topic(settings(), table) for table in TABLES}
    wanted = layout(settings())
    assert all(wanted[name] == (settings().partitions, {"cleanup.policy": "compact"}) for name in changelogs)
