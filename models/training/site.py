"""Training on a site's own recorded events: the ``site-v1`` intent model, its learned page statistics
and a persona model, written as one self-contained model directory.

Steps (:func:`train_site`):

1. visits (from :mod:`models.training.visits`), bots left out, ordered by start; at least
   :data:`MIN_CLASS` buying and non-buying visits;
2. split by time: the earliest :data:`TRAIN_SHARE` of visits train, the later ones validate;
3. page statistics learned from the training visits; each training row reads them *out of fold*
   (:data:`PAGE_FOLDS` folds of visits), so no row's page values include its own purchase;
   validation rows read those of all training visits, as a worker would;
4. rows: prefix states at fractions of each visit's events, cut strictly before its first purchase,
   weighing 1 per visit, most at its middle (:func:`point_weight`);
5. LightGBM, early-stopped on the latest training visits; validation ROC-AUC by visit progress,
   PR-AUC, Brier; calibration chosen on validation scores (cross-fitted); score bands;
6. the published model: refit on all visits with the same number of trees; page statistics of all
   visits; a persona model learned from all visits' final states.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import lightgbm as lgb
import numpy as np
import orjson
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from models.features import build_vocabulary
from models.featuresets import SITE
from models.intent import CALIBRATIONS, calibrate
from models.pagestats import PageCounts, PageValues
from models.persona import PersonaModel, persona_features
from models.training.train import PARAMS, choose_bands, fit_calibration
from models.training.visits import Visit, final_state, prefix_end, prefix_ends, replay

MIN_CLASS = 100
"""Buying and non-buying visits needed to train (Segment Predictions asks the same)."""
TRAIN_SHARE = 0.8
STOP_SHARE = 0.15
"""Latest share of the training visits that early stopping watches."""
PAGE_FOLDS = 5
TRAIN_POINTS = tuple(round(0.1 * i, 1) for i in range(1, 11))
"""Fractions of a visit's events at which training rows are taken (cut before its first purchase)."""
MIDDLE_EMPHASIS = 1.5
"""A row at fraction ``q`` of its visit weighs ``1 - MIDDLE_EMPHASIS * |q - 0.5|`` (then each visit sums to 1):
a score matters most mid-visit, while there is time to act on it, and is hardest there."""

EVAL_POINTS = (0.25, 0.5, 0.75, 1.0)
"""Fractions at which validation ROC-AUC is reported (validation rows are taken at these and the training points)."""
MIN_CATEGORY_VISITS = 20
"""Visits a categorical value needs in training to get its own code (rarer values read as unseen)."""
SITE_PARAMS = {**PARAMS, "min_data_in_leaf": 40, "min_data_per_group": 50, "cat_smooth": 20.0,
               "max_cat_to_onehot": 4}
MAX_ROUNDS = 2000
EARLY_STOP = 100

Log = Callable[[str], None]


def point_weight(q: float) -> float:
    """The relative weight of a training row at fraction ``q`` of its visit."""
    return 1.0 - MIDDLE_EMPHASIS * abs(q - 0.5)


class TrainingDataError(ValueError):
    """Recorded events that cannot train a model; the message says what is missing and how much there is."""


def page_counts(visits: Sequence[Visit]) -> PageCounts:
    counts = PageCounts()
    for visit in visits:
        counts.add(visit.pages, visit.revenue, visit.pages_before_purchase)
    return counts


@dataclass
class Rows:
    """Feature rows of prefix states: which visit each belongs to, its label, weight and progress."""

    X: np.ndarray
    visit: np.ndarray
    label: np.ndarray
    weight: np.ndarray
    progress: np.ndarray


def build_rows(visits: Sequence[Visit], lookups: Sequence[PageValues], vocabulary, points: Sequence[float]) -> Rows:
    """Rows at ``points`` of each visit (:func:`prefix_end`), each visit's pages read through its lookup."""
    X, owner, label, weight, progress = [], [], [], [], []
    total = sum(point_weight(q) for q in points)
    for i, (visit, lookup) in enumerate(zip(visits, lookups)):
        ends = prefix_ends(visit, points)
        if not ends:
            continue
        states = replay(visit, ends, lookup)
        at = {end: state for end, state in zip(ends, states)}
        for q in points:
            end = prefix_end(visit, q)
            X.append(SITE.row(at[end], vocabulary))
            owner.append(i)
            label.append(int(visit.bought))
            weight.append(point_weight(q) / total)
            progress.append(q)
    return Rows(np.asarray(X, dtype=np.float64), np.asarray(owner), np.asarray(label), np.asarray(weight),
                np.asarray(progress))


def out_of_fold_lookups(visits: Sequence[Visit]) -> tuple[list[PageValues], PageCounts]:
    """Per visit, page statistics learned from the other folds' visits; and the counts of all of them."""
    fold = np.arange(len(visits)) % PAGE_FOLDS
    per_fold = [page_counts([v for v, f in zip(visits, fold) if f == k]) for k in range(PAGE_FOLDS)]
    total = page_counts(visits)
    tables = [total.minus(counts).table() for counts in per_fold]
    return [tables[f] for f in fold], total


def _dataset(rows: Rows, mask: np.ndarray | None = None) -> lgb.Dataset:
    m = slice(None) if mask is None else mask
    return lgb.Dataset(rows.X[m], rows.label[m], weight=rows.weight[m], feature_name=list(SITE.features),
                       categorical_feature=SITE.categorical_indices(), free_raw_data=False)


def _auc(y: np.ndarray, s: np.ndarray) -> float | None:
    return float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else None


def _choose_calibration(raw: np.ndarray, rows: Rows) -> tuple[dict, np.ndarray, dict]:
    """Calibration by the lowest 2-fold cross-fitted Brier on the validation rows (split by visit)."""
    half = rows.visit % 2
    briers, fitted = {}, {}
    for method in CALIBRATIONS:
        out = np.empty_like(raw)
        for h in (0, 1):
            cal = fit_calibration(method, raw[half != h], rows.label[half != h], rows.weight[half != h])
            out[half == h] = calibrate(raw[half == h], cal)
        briers[method] = float(np.average((out - rows.label) ** 2, weights=rows.weight))
        fitted[method] = out
    best = min(CALIBRATIONS, key=lambda m: briers[m])
    calibration = fit_calibration(best, raw, rows.label, rows.weight)
    return calibration, fitted[best], {"selected": best, "cross_fitted_weighted_brier": briers}


def validation_metrics(rows: Rows, scores: np.ndarray) -> dict:
    """ROC-AUC by progress, and PR-AUC and Brier of the last learnable state, of validation visits."""
    out: dict = {}
    for q in EVAL_POINTS:
        at = np.isclose(rows.progress, q)
        out[f"roc_auc_at_{int(q * 100)}pct"] = _auc(rows.label[at], scores[at])
    final = np.isclose(rows.progress, 1.0)
    out["pr_auc"] = float(average_precision_score(rows.label[final], scores[final]))
    out["brier"] = float(brier_score_loss(rows.label[final], scores[final]))
    return out


def train_site(visits: Sequence[Visit], out: Path, source: str, log: Log = lambda message: None) -> dict:
    """Train on ``visits`` and write the model directory ``out``; return the intent metadata."""
    humans = [v for v in visits if not v.bot]
    buying = sum(v.bought for v in humans)
    learnable = [v for v in humans if v.learnable]
    if buying == 0:
        raise TrainingDataError(f"no purchase events among {len(humans)} visits: the intent model learns "
                                "from purchases (send them with personastream.track('purchase', ...))")
    if buying < MIN_CLASS or len(humans) - buying < MIN_CLASS:
        raise TrainingDataError(f"too little data: {buying} buying and {len(humans) - buying} non-buying visits "
                                f"(bots left out); at least {MIN_CLASS} of each are needed")
    cut = int(len(learnable) * TRAIN_SHARE)
    train, valid = learnable[:cut], learnable[cut:]
    log(f"{len(humans)} visits ({len(visits) - len(humans)} bot visits left out), {buying} buying; "
        f"training on {len(train)}, validating on the {len(valid)} latest")

    train_lookups, train_counts = out_of_fold_lookups(train)
    contexts = [SITE.context(replay(v, [v.learnable], lookup)[-1]) for v, lookup in zip(train, train_lookups)]
    vocabulary = build_vocabulary(contexts, SITE.categorical, MIN_CATEGORY_VISITS)
    rows = build_rows(train, train_lookups, vocabulary, TRAIN_POINTS)
    valid_table = train_counts.table()
    valid_rows = build_rows(valid, [valid_table] * len(valid), vocabulary, sorted({*TRAIN_POINTS, *EVAL_POINTS}))

    stop = rows.visit >= int(len(train) * (1 - STOP_SHARE))
    booster = lgb.train(SITE_PARAMS, _dataset(rows, ~stop), MAX_ROUNDS, valid_sets=[_dataset(rows, stop)],
                        callbacks=[lgb.early_stopping(EARLY_STOP, verbose=False)])
    rounds = max(booster.best_iteration, 1)
    raw = booster.predict(valid_rows.X, num_iteration=rounds)
    calibration, calibrated, comparison = _choose_calibration(raw, valid_rows)
    metrics = {"validation": {**validation_metrics(valid_rows, calibrated), "raw": validation_metrics(valid_rows, raw),
                              "visits": len(valid), "buying": int(sum(v.bought for v in valid))},
               "calibration": comparison, "rounds": rounds,
               "gain": dict(sorted(zip(SITE.features, map(float, booster.feature_importance("gain", rounds))),
                                   key=lambda kv: -kv[1]))}
    final_rows = np.isclose(valid_rows.progress, 1.0)
    bands, bands_rule = choose_bands(calibrated[final_rows], valid_rows.label[final_rows])
    log(f"validation ROC-AUC at 50% of each visit {metrics['validation']['roc_auc_at_50pct']:.4f}, "
        f"final {metrics['validation']['roc_auc_at_100pct']:.4f} ({rounds} trees)")

    all_lookups, all_counts = out_of_fold_lookups(learnable)
    all_rows = build_rows(learnable, all_lookups, vocabulary, TRAIN_POINTS)
    published = lgb.train(SITE_PARAMS, _dataset(all_rows), rounds)
    pages = all_counts.table()
    meta = write_directory(out, published, source, vocabulary, calibration, bands, bands_rule, pages, metrics,
                           humans, learnable)
    write_report(out / "report", metrics, valid_rows, calibrated)
    personas = fit_personas(learnable, pages, published, vocabulary, calibration)
    personas.save(out / "persona.json")
    log(f"wrote {out}: intent model {meta['version']}, {len(pages.pages)} pages with learned statistics, "
        f"personas {', '.join(personas.names)}")
    return meta


def write_directory(out: Path, booster: lgb.Booster, source: str, vocabulary, calibration: dict, bands: dict,
                    bands_rule: str, pages: PageValues, metrics: dict, humans: Sequence[Visit],
                    learnable: Sequence[Visit]) -> dict:
    """Write ``intent.lgb.txt``, ``intent.json`` and ``pages.json`` into ``out``; return the metadata."""
    out.mkdir(parents=True, exist_ok=True)
    text = booster.model_to_string().encode()
    digest = hashlib.sha256(text).hexdigest()
    window = [datetime.fromtimestamp(v.start, timezone.utc).isoformat(timespec="seconds")
              for v in (humans[0], humans[-1])]
    meta = {
        "version": f"intent-{digest[:10]}",
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "feature_set": SITE.name,
        "features": list(SITE.features),
        "training_data": {"source": source, "window": window, "visits": len(humans),
                          "buying_visits": int(sum(v.bought for v in humans)),
                          "rows_from_visits": len(learnable),
                          "positive_rate": float(np.mean([v.bought for v in learnable]))},
        "vocabulary": vocabulary,
        "params": SITE_PARAMS,
        "training": {"prefix_points": list(TRAIN_POINTS), "rounds": metrics["rounds"],
                     "rows": "per visit of n events, the state after ceil(q * n) of them for each q in prefix_points, "
                             "cut before its first purchase, weighing 1 per visit; page statistics out of fold"},
        "validation": metrics["validation"],
        "calibration": calibration,
        "bands": bands,
        "bands_rule": bands_rule,
        "page_prior": list(pages.prior),
        "sha256": digest,
    }
    (out / "intent.lgb.txt").write_bytes(text)
    (out / "intent.json").write_bytes(orjson.dumps(meta, option=orjson.OPT_INDENT_2))
    (out / "pages.json").write_bytes(pages.to_bytes())
    return meta


def fit_personas(visits: Sequence[Visit], pages: PageValues, booster: lgb.Booster, vocabulary,
                 calibration: dict) -> PersonaModel:
    """A persona model learned from the visits' final states (page statistics of all visits), in random order."""
    finals = [final_state(v, pages) for v in visits]
    intent = calibrate(booster.predict(np.asarray([SITE.row(s, vocabulary) for s in finals])), calibration)
    model = PersonaModel(6, seed=7)
    for i in np.random.default_rng(7).permutation(len(finals)):
        model.learn_one(persona_features(finals[i], float(intent[i])))
    return model.rebase()


def write_report(out: Path, metrics: dict, rows: Rows, scores: np.ndarray) -> None:
    """metrics.json and the ROC, PR, calibration, AUC-by-progress and importance plots of the validation."""
    from models.training.report import plot_report

    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_bytes(orjson.dumps(metrics, option=orjson.OPT_INDENT_2))
    plot_report(out, metrics, rows.label, scores, rows.progress, EVAL_POINTS)

