"""The site feature set, recorded visits, learned page statistics and the leakage rule of training rows."""

from __future__ import annotations

import doctest
import itertools
from datetime import datetime, timedelta, timezone

import orjson
import pytest

import models.featuresets
import models.pagestats
import stream.pages
from models.features import SessionState, fold, start_visit
from models.featuresets import SITE, UCI, feature_set
from models.pagestats import PageCounts
from models.training.site import out_of_fold_lookups
from models.training.visits import LeakageError, ReadReport, check_before_purchase, prefix_ends, read_visits, replay
from schemas.events import parse_event

T0 = datetime(2026, 11, 2, 9, tzinfo=timezone.utc)
EVENT_IDS = itertools.count()


@pytest.mark.parametrize("module", [models.featuresets, models.pagestats, stream.pages])
def test_doctests(module) -> None:
    assert doctest.testmod(module).failed == 0


def event(kind: str, session: str, seconds: float, page: str = "p1", page_type: str = "product",
          **fields) -> bytes:
    return orjson.dumps({"type": kind, "event_id": f"e{next(EVENT_IDS)}", "session_id": session,
                         "ts": (T0 + timedelta(seconds=seconds)).isoformat(), "page": {"id": page, "type": page_type},
                         "device": {"os": "Android 14", "browser": "Chrome Mobile 124.0", "device_class": "mobile"},
                         "traffic_source": "google-cpc", **fields})


def buying_visit(session: str = "s1", start: float = 0.0) -> list[bytes]:
    return [event("page_view", session, start, "home", "home"),
            event("page_view", session, start + 10),
            event("scroll", session, start + 12, depth_pct=40.0),
            event("scroll", session, start + 14, depth_pct=90.0),
            event("click", session, start + 15, target="size-guide"),
            event("add_to_cart", session, start + 20, product_id="p1", price=30.0, quantity=2),
            event("page_view", session, start + 30, "cart", "cart"),
            event("purchase", session, start + 40, "checkout", "checkout", value=60.0),
            event("page_view", session, start + 45, "thanks", "other")]


def fold_all(raw: list[bytes]) -> SessionState:
    state = None
    for line in raw:
        e = parse_event(line)
        state = start_visit(None, e) if state is None else state
        fold(state, e, lambda page: (0.1, 0.2, 5.0))
    return state


def test_fold_reads_every_event_type() -> None:
    raw = buying_visit()
    before = fold_all(raw[:7])
    row = dict(zip(SITE.features, SITE.row(before, {name: {} for name in SITE.categorical})))
    assert (row["CartAdds"], row["CartItems"], row["CartValue"]) == (1, 2, 60.0)
    assert (row["ScrollMaxProduct"], row["ScrollMeanProduct"], row["Clicks"]) == (90.0, 90.0, 1)
    assert (row["DetailViews"], row["CartViews"], row["PageViews"]) == (1, 1, 3)
    after = fold_all(raw)
    assert (after.purchases, after.revenue, after.cart_items, after.cart_value) == (1, 60.0, 0, 0.0)


def test_removing_from_the_cart_takes_its_mean_item_price_off() -> None:
    state = fold_all([event("add_to_cart", "s", 0, product_id="a", price=10.0),
                      event("add_to_cart", "s", 1, product_id="b", price=30.0),
                      event("remove_from_cart", "s", 2, product_id="b")])
    assert (state.cart_items, state.cart_value, state.cart_removes) == (1, 20.0, 1)


def test_site_context_drops_versions_and_unseen_values_are_nan() -> None:
    state = fold_all(buying_visit()[:2])
    assert SITE.context(state)["OS"] == "Android" and SITE.context(state)["Browser"] == "Chrome Mobile"
    vocabulary = {name: {} for name in SITE.categorical} | {"TrafficSource": {"google-cpc": 0}}
    row = dict(zip(SITE.features, SITE.row(state, vocabulary)))
    assert row["TrafficSource"] == 0.0 and row["OS"] != row["OS"]


def test_feature_sets_by_name() -> None:
    assert feature_set("uci-v1") is UCI and feature_set("site-v1") is SITE
    with pytest.raises(KeyError, match="unknown feature set"):
        feature_set("site-v0")


def test_visits_are_cut_by_the_gap_and_invalid_lines_counted() -> None:
    lines = buying_visit("s1") + [event("page_view", "s1", 4000), b"{not json", b'{"type": "page_view"}',
                                  buying_visit("s2")[0]]
    lines.append(lines[0])  # an exact re-send
    report = ReadReport()
    visits = read_visits(lines, gap_s=1800, report=report)
    assert [(v.session_id, v.size, v.bought) for v in visits] == [
        ("s1", 9, True), ("s2", 1, False), ("s1", 1, False)]
    assert (report.lines, report.events, report.duplicates, report.invalid_lines) == (14, 11, 1, 2)
    assert visits[0].first_purchase == 7 and visits[0].learnable == 7 and visits[0].revenue == 60.0


def test_training_rows_never_see_the_purchase() -> None:
    visit = read_visits(buying_visit(), gap_s=1800)[0]
    ends = prefix_ends(visit, [0.1 * i for i in range(1, 11)])
    assert max(ends) == 7
    states = replay(visit, ends, lambda page: (0.0, 0.0, 0.0))
    assert all(state.purchases == 0 and state.revenue == 0 for state in states)


def test_a_row_built_after_a_purchase_fails_the_leakage_rule() -> None:
    visit = read_visits(buying_visit(), gap_s=1800)[0]
    check_before_purchase(visit, 7)
    with pytest.raises(LeakageError, match="would see its purchase"):
        check_before_purchase(visit, 8)
    with pytest.raises(LeakageError):
        replay(visit, [3, 9], lambda page: (0.0, 0.0, 0.0))


def test_page_values_of_a_row_never_include_its_own_purchase() -> None:
    def visits(first_value: float):
        lines = []
        for i in range(50):
            lines += buying_visit(f"b{i}", start=i * 4000.0)
        lines[7] = event("purchase", "b0", 40, "checkout", "checkout", value=first_value)
        return read_visits(lines, gap_s=1800)

    usual, _ = out_of_fold_lookups(visits(60.0))
    changed, total = out_of_fold_lookups(visits(6000.0))
    assert total.table()("p1")[2] == pytest.approx((49 * 60.0 + 6000.0) / 50)
    assert changed[0]("p1") == usual[0]("p1") == pytest.approx((0.0, 0.0, 60.0))
    assert changed[1]("p1")[2] > 60.0  # another fold's row does learn from it


def test_page_counts_subtract() -> None:
    a = PageCounts.of([(["home", "p1"], 10.0)])
    both = PageCounts.of([(["home", "p1"], 10.0), (["home"], 0.0)])
    assert both.minus(a).pages["home"] == PageCounts.of([(["home"], 0.0)]).pages["home"]
    assert both.minus(a).pages["p1"] == [0.0] * 6


def test_hostile_training_lines_are_counted_and_skipped() -> None:
    good = buying_visit("s1")
    hostile = [b"\x00\xff\xfe", b"null", b"[]", b"x" * 20_000, orjson.dumps({"padding": "y" * 20_000}),
               event("page_view", "s2", 0.0).replace(b'"ts":"2026', b'"ts":"9999'),
               event("page_view", "ann@example.com", 0.0), event("page_view", "4155550172", 0.0)]
    report = ReadReport()
    visits = read_visits([*hostile, *good], gap_s=1800, report=report)
    assert [(v.session_id, v.size) for v in visits] == [("s1", 9)]
    assert report.invalid_lines == len(hostile) and report.events == 9
    assert "example.com" not in report.summary() and "4155550172" not in report.summary()
