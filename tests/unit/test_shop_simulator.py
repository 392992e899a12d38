"""The shop simulator (tools.shopsim): valid, ordered, deterministic events with realistic funnel rates."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timezone

import orjson
import pytest

from schemas.events import parse_event
from tools.shopsim import ShopConfig, main, simulate, visit_summary

START = datetime(2026, 11, 1, tzinfo=timezone.utc)
SEEDS = (1, 2, 3, 4, 5)
VISITS = 5000


@pytest.fixture(scope="module")
def runs() -> dict[int, list[dict]]:
    """The events of 5,000 visits to each of five random shops."""
    return {seed: list(simulate(ShopConfig.random(seed), VISITS, START, seed)) for seed in SEEDS}


def by_visit(events: list[dict]) -> dict[str, list[dict]]:
    visits: dict[str, list[dict]] = defaultdict(list)
    for event in events:
        visits[event["session_id"]].append(event)
    return visits


def test_every_event_is_accepted_unchanged(runs):
    for event in runs[1]:
        parsed = parse_event(orjson.dumps(event))
        assert parsed.ts == datetime.fromisoformat(event["ts"])
        assert parsed.model_dump(mode="json", exclude={"ts"}, exclude_none=True) == \
            {key: value for key, value in event.items() if key != "ts"}


def test_events_are_ordered_by_time_and_uniquely_identified(runs):
    for events in runs.values():
        times = [event["ts"] for event in events]
        assert times == sorted(times)
        assert len({event["event_id"] for event in events}) == len(events)
        for visit in by_visit(events).values():
            assert visit[0]["type"] == "page_view"
            assert all(a["ts"] < b["ts"] for a, b in zip(visit, visit[1:]))


def test_visits_interleave_and_each_has_its_own_session(runs):
    events = runs[1]
    assert len(by_visit(events)) == VISITS
    switches = sum(a["session_id"] != b["session_id"] for a, b in zip(events, events[1:]))
    assert switches > 2 * VISITS  # not one visit after another


def test_deterministic_per_seed():
    shop = ShopConfig.random(7)
    first = list(simulate(shop, 300, START, seed=7))
    assert first == list(simulate(ShopConfig.random(7), 300, START, seed=7))
    assert first != list(simulate(shop, 300, START, seed=8))


def test_shops_differ_by_seed():
    shops = [ShopConfig.random(seed) for seed in range(1, 9)]
    assert len({shop.name for shop in shops}) == len(shops)
    assert len({shop.currency for shop in shops}) > 1
    assert len({len(shop.products) for shop in shops}) == len(shops)
    assert len({shop.home.id for shop in shops}) > 1  # the sites' own page id styles
    assert len({tuple(source.name for source in shop.sources) for shop in shops}) > 1


@pytest.mark.parametrize("seed", SEEDS)
def test_funnel_rates_of_random_shops(runs, seed):
    summary = visit_summary(runs[seed])
    assert summary["visits"] == VISITS
    assert 0.02 <= summary["conversion"] <= 0.04, summary
    assert 0.65 <= summary["cart_abandonment"] <= 0.75, summary
    assert 0.35 <= summary["bounce"] <= 0.50, summary
    assert 3 <= summary["median_page_views"] <= 6, summary
    assert 0.015 <= summary["bot_share"] <= 0.035, summary


def test_every_event_type_appears(runs):
    kinds = {event["type"] for event in runs[1]}
    assert kinds == {"page_view", "click", "scroll", "dwell", "add_to_cart", "remove_from_cart", "search", "purchase"}


def test_purchase_pays_the_cart_and_ends_the_visit(runs):
    purchases = 0
    for events in runs.values():
        for visit in by_visit(events).values():
            cart: dict[str, list[float]] = {}  # product -> [quantity, price]
            for index, event in enumerate(visit):
                if event["type"] == "add_to_cart":
                    line = cart.setdefault(event["product_id"], [0, event["price"]])
                    line[0] += event["quantity"]
                elif event["type"] == "remove_from_cart":
                    cart[event["product_id"]][0] -= event["quantity"]
                elif event["type"] == "purchase":
                    purchases += 1
                    assert cart and event["value"] == pytest.approx(sum(q * p for q, p in cart.values()), abs=0.005)
                    assert event["currency"]
                    after = visit[index + 1:]
                    assert {e["type"] for e in after} <= {"dwell", "scroll", "page_view"}
                    assert [e["page"]["type"] for e in after if e["type"] == "page_view"] == ["other"]
    assert purchases > 400


def test_bots_browse_fast_and_never_shop(runs):
    bots = [visit for visit in by_visit(runs[2]).values() if visit[0]["bot"]]
    assert bots
    for visit in bots:
        assert {event["type"] for event in visit} == {"page_view"}
        assert all(event["bot"] and event["device"]["device_class"] == "other" for event in visit)
        seconds = [datetime.fromisoformat(e["ts"]).timestamp() for e in visit]
        gaps = [b - a for a, b in zip(seconds, seconds[1:])]
        assert max(gaps) - min(gaps) < 0.2 and max(gaps) < 5


def test_latent_effects_show_in_aggregate(runs):
    """Returning visitors convert more than new ones, desktops more than phones: rates, not rules."""
    visits = [visit for events in runs.values() for visit in by_visit(events).values() if not visit[0]["bot"]]

    def conversion(keep) -> float:
        chosen = [visit for visit in visits if keep(visit[0])]
        return sum(any(e["type"] == "purchase" for e in visit) for visit in chosen) / len(chosen)

    returning = conversion(lambda e: e["visitor_type"] == "returning")
    new = conversion(lambda e: e["visitor_type"] == "new")
    desktop = conversion(lambda e: e["device"]["device_class"] == "desktop")
    mobile = conversion(lambda e: e["device"]["device_class"] == "mobile")
    assert returning > 1.3 * new and desktop > 1.2 * mobile
    assert 0 < new and 0 < mobile and returning < 0.2  # no group buys always or never


def test_cli_writes_jsonl_and_prints_the_rates(tmp_path, capsys):
    out = tmp_path / "events.jsonl"
    main(["--visits", "200", "--seed", "3", "--out", str(out), "--start", "2026-11-01", "--days", "2"])
    lines = out.read_bytes().splitlines()
    assert lines and all(parse_event(line) for line in lines)
    assert all(line.startswith(b'{"event_id"') for line in lines[:5])
    printed = capsys.readouterr().out
    assert "conversion=" in printed and "bounce=" in printed
