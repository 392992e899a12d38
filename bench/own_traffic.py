"""Own-traffic check: the shipped trainer against a tuned LightGBM on the same shop's events.

A simulated shop (``tools.shopsim``, a seed the product was not tuned on) records ``--visits`` visits;
the earliest 80 % train, the later 20 % are scored after the first half of their events (cut before any
purchase) against whether they bought. Side by side:

- ``personastream``: ``train_site`` on the training visits' events, scored through the worker's feature
  function (the broker test shows the worker gives the same scores);
- ``tuned LightGBM``: generic per-visit aggregates of the same half-visits (counts by event and page type,
  dwell, scroll, cart, device, source, time), trained directly on half-visits of the training period, its
  hyperparameters chosen on the latest quarter of the training period;
- ``UCI model``: the shipped UCI-trained model scoring the same visits.

Run: ``python -m bench.own_traffic --seed 101 --visits 30000`` (prints one JSON line per seed).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import datetime, timezone
from itertools import product
from pathlib import Path

import lightgbm as lgb
import numpy as np
import orjson
from sklearn.metrics import roc_auc_score

from models.directory import ModelDirectory
from models.pagestats import PageValues
from models.training.site import train_site
from models.training.visits import Visit, prefix_end, read_visits, replay
from tools.shopsim import ShopConfig, simulate

EVENT_TYPES = ("page_view", "click", "scroll", "dwell", "add_to_cart", "remove_from_cart", "search", "purchase")
PAGE_TYPES = ("home", "category", "product", "search", "cart", "checkout", "account", "info", "other")
CATEGORIES = ("device_class", "os", "browser", "traffic_source", "visitor_type", "region")
GRID = {"num_leaves": (7, 15, 31), "learning_rate": (0.03, 0.1), "min_data_in_leaf": (20, 50, 100)}


def half(visit: Visit) -> int:
    """Events of a visit's first half, cut before its first purchase."""
    return prefix_end(visit, 0.5)


def aggregates(visit: Visit, seen: int, codes: dict[str, dict[str, int]]) -> list[float]:
    """Generic features of a visit's first ``seen`` events, as a data scientist would write them."""
    events = visit.events[:seen]
    first = events[0]
    kinds = [sum(e.type == t for e in events) for t in EVENT_TYPES]
    pages = [sum(e.type == "page_view" and e.page.type.value == t for e in events) for t in PAGE_TYPES]
    dwell = sum(e.seconds for e in events if e.type == "dwell")
    scroll = max((e.depth_pct for e in events if e.type == "scroll"), default=0.0)
    cart = sum((e.price or 0.0) * e.quantity for e in events if e.type == "add_to_cart")
    duration = events[-1].ts.timestamp() - first.ts.timestamp()
    unique_pages = len({e.page.id for e in events if e.type == "page_view"})
    context = {"device_class": first.device.device_class.value, "os": first.device.os,
               "browser": first.device.browser, "traffic_source": first.traffic_source,
               "visitor_type": first.visitor_type.value, "region": first.region}
    return [*kinds, *pages, dwell, scroll, cart, duration, unique_pages, len(events),
            first.ts.hour, first.ts.weekday(), *(codes[c].get(context[c], -1) for c in CATEGORIES)]


def tuned_lightgbm(train: list[Visit], test: list[Visit]) -> tuple[float, dict]:
    """Per-visit aggregates of half-visits, hyperparameters chosen on the latest quarter of training."""
    codes = {c: {} for c in CATEGORIES}
    for visit in train:
        first = visit.events[0]
        for c, value in zip(CATEGORIES, (first.device.device_class.value, first.device.os, first.device.browser,
                                         first.traffic_source, first.visitor_type.value, first.region)):
            codes[c].setdefault(value, len(codes[c]))
    X = np.asarray([aggregates(v, half(v), codes) for v in train])
    y = np.asarray([v.bought for v in train], dtype=int)
    T = np.asarray([aggregates(v, half(v), codes) for v in test])
    categorical = list(range(X.shape[1] - len(CATEGORIES), X.shape[1]))
    inner = int(len(train) * 0.75)
    best = (-1.0, None, 0)
    for leaves, rate, leaf in product(*GRID.values()):
        params = {"objective": "binary", "num_leaves": leaves, "learning_rate": rate, "min_data_in_leaf": leaf,
                  "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1, "verbose": -1, "seed": 1,
                  "num_threads": 2}
        booster = lgb.train(params, lgb.Dataset(X[:inner], y[:inner], categorical_feature=categorical), 2000,
                            valid_sets=[lgb.Dataset(X[inner:], y[inner:], categorical_feature=categorical)],
                            callbacks=[lgb.early_stopping(100, verbose=False)])
        auc = roc_auc_score(y[inner:], booster.predict(X[inner:], num_iteration=booster.best_iteration))
        if auc > best[0]:
            best = (auc, params, booster.best_iteration)
    _, params, rounds = best
    booster = lgb.train(params, lgb.Dataset(X, y, categorical_feature=categorical), max(rounds, 1))
    return float(roc_auc_score([v.bought for v in test], booster.predict(T))), {**params, "rounds": rounds}


def run(seed: int, visits: int) -> dict:
    shop = ShopConfig.random(seed)
    start = datetime(2026, 9, 1, tzinfo=timezone.utc)
    lines = [orjson.dumps(e) for e in simulate(shop, visits, start, seed, days=28)]
    every = [v for v in read_visits(lines, 1800.0) if not v.bot and v.learnable]
    cut = int(len(every) * 0.8)
    train, test = every[:cut], every[cut:]
    labels = [v.bought for v in test]
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        train_site(train, Path(out), f"shopsim seed {seed}")
        models = ModelDirectory.load(Path(out))
    trained_s = time.perf_counter() - began
    ours = site_scores(models.intent, models.pages, test)
    shipped = ModelDirectory.load()
    uci = shipped.intent.score([shipped.intent.row(replay(v, [half(v)], lambda page: shipped.intent.page_prior)[-1])
                                for v in test])
    tuned, params = tuned_lightgbm(train, test)
    return {"seed": seed, "shop": shop.name, "events": len(lines), "train_visits": len(train),
            "test_visits": len(test), "test_buying": int(sum(labels)), "train_seconds": round(trained_s, 1),
            "auc_personastream": round(float(roc_auc_score(labels, ours)), 4),
            "auc_tuned_lightgbm": round(tuned, 4), "auc_uci_model": round(float(roc_auc_score(labels, uci)), 4),
            "tuned_params": params}


def site_scores(intent, pages: PageValues | None, visits: list[Visit]) -> np.ndarray:
    lookup = pages if pages is not None else (lambda page: intent.page_prior)
    return intent.score([intent.row(replay(v, [half(v)], lookup)[-1]) for v in visits])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, nargs="+", default=[101])
    parser.add_argument("--visits", type=int, default=30_000)
    args = parser.parse_args()
    for seed in args.seed:
        print(orjson.dumps(run(seed, args.visits)).decode(), flush=True)


if __name__ == "__main__":
    main()
