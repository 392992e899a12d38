"""Training the intent model on UCI sessions replayed through the stream's own feature code.

The model scores a visit after every event, so it is trained on *session prefixes*: for each UCI
session with ``n`` page views, the state right after ``ceil(q * n)`` page views and their dwell
events (just before the next page view), for ``q`` in :data:`TRAIN_POINTS`. The last of these is the
final state. Each session's rows carry weights summing to 1 (:data:`FINAL_WEIGHT` on the final
state, the rest shared by its earlier prefixes), so long sessions do not outweigh short ones.

Cross-validation splits *sessions* (stratified by label), never prefix rows, so no visit is on
both sides of a fold. Out-of-fold scores give the reported metrics, the choice of calibration
(identity, Platt or isotonic, by cross-fitted Brier score) written to the metadata, and the
data-driven score bands.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import lightgbm as lgb
import numpy as np
import orjson
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold

from models.features import FEATURES, SessionState, build_vocabulary, raw_context, session_features
from models.intent import CALIBRATIONS, METADATA_FILE, MODEL_FILE, calibrate
from models.training.uci import fold_session, sessions

PARAMS = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 100,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 5.0,
    "seed": 7,
    "deterministic": True,
    "num_threads": 2,
    "verbose": -1,
}
"""A learning rate of 0.05 early-stops at about a quarter of the trees of 0.015 (110 vs 416) with the same
5-fold CV ROC-AUC and PR-AUC within noise over 5 seeds (-0.0002 and -0.0007 on average, the sign varying by
seed); TreeSHAP explanations cost about 1.5 µs per tree and row, so they are ~4× cheaper. 0.1 (46 trees)
lost ROC-AUC on every seed. Categorical features are passed as their vocabulary codes (most frequent first) and split as
ordinal numbers: LightGBM's categorical splits overfit the rare browser/region/traffic values
(about -0.001 to -0.002 ROC-AUC in 5-fold CV on train.csv)."""
MAX_ROUNDS = 3000
EARLY_STOP = 100
FOLDS = 5
FOLD_SEED = 7
TRAIN_POINTS = tuple(round(0.1 * i, 1) for i in range(1, 11))
"""Session progress (fraction of page views) of the training prefixes; 1.0 is the final state."""
EVAL_POINTS = (0.25, 0.5, 0.75, 1.0)
"""Session progress at which out-of-fold ROC-AUC is reported."""
FINAL_WEIGHT = 0.75
"""Share of a session's unit weight on its final state; the rest is split over earlier prefixes."""
HIGH_PRECISION = 0.7
"""The high band starts at the lowest score at which the out-of-fold precision of sessions scoring at
least it reaches this (0.6 put it at ~0.27, too close to the medium threshold to mean much)."""
CALIBRATION_MIN_GAIN = 1e-4
"""Brier improvement a fitted calibration needs over identity to be published."""

Progress = Callable[[int], None]


def views_at(fraction: float, n: int) -> int:
    """Page views seen at ``fraction`` of a visit with ``n`` page views: ``max(1, ceil(fraction * n))``."""
    return max(1, math.ceil(round(fraction * n, 9)))


@dataclass
class Replayed:
    """Replayed UCI sessions: final states, labels and the prefix states training and CV need."""

    finals: list[SessionState]
    labels: np.ndarray
    page_views: np.ndarray
    prefixes: list[dict[int, SessionState]]
    """Per session: page views seen -> the state after them and their dwell events."""


def needed_views(n: int) -> set[int]:
    return {views_at(q, n) for q in (*TRAIN_POINTS, *EVAL_POINTS)}


def replay_session(session) -> dict[int, SessionState]:
    """The states of one session after ``k`` page views and their dwell events, for the needed ``k``."""
    events = session.events
    n = sum(1 for e in events if e["type"] == "page_view")
    needed = needed_views(n)
    kept: dict[int, SessionState] = {}
    for i, (_, state) in enumerate(fold_session(session)):
        closes_page = i + 1 == len(events) or events[i + 1]["type"] == "page_view"
        if closes_page and state.page_views in needed:
            kept[state.page_views] = replace(state, recent_ids=b"")
    return kept


def replay_frame(frame: pd.DataFrame, progress: Progress | None = None) -> Replayed:
    finals, views, prefixes = [], [], []
    for i, session in enumerate(sessions(frame)):
        kept = replay_session(session)
        n = max(kept)
        finals.append(kept[n])
        views.append(n)
        prefixes.append(kept)
        if progress:
            progress(i)
    return Replayed(finals, frame["Revenue"].to_numpy(dtype=int), np.asarray(views), prefixes)


def matrix(states: list[SessionState], vocabulary) -> np.ndarray:
    return np.asarray([session_features(s, vocabulary) for s in states], dtype=np.float64)


@dataclass
class PrefixMatrix:
    """Feature rows of every kept prefix state, addressable by (session, page views seen)."""

    X: np.ndarray
    row: list[dict[int, int]]
    page_views: np.ndarray
    labels: np.ndarray

    @classmethod
    def build(cls, replayed: Replayed, vocabulary) -> "PrefixMatrix":
        states, rows = [], []
        for kept in replayed.prefixes:
            index = {}
            for k in sorted(kept):
                index[k] = len(states)
                states.append(kept[k])
            rows.append(index)
        return cls(matrix(states, vocabulary), rows, replayed.page_views, replayed.labels)

    def at(self, sessions_: Sequence[int], fraction: float) -> np.ndarray:
        """Row indices of ``sessions_`` at ``fraction`` of their page views."""
        return np.asarray([self.row[s][views_at(fraction, self.page_views[s])] for s in sessions_])

    def training_rows(self, sessions_: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows, labels and weights (summing to 1 per session) of the training prefixes."""
        rows, labels, weights = [], [], []
        for s in sessions_:
            n = self.page_views[s]
            ks = sorted({views_at(q, n) for q in TRAIN_POINTS})
            w = [(1 - FINAL_WEIGHT) / (len(ks) - 1)] * (len(ks) - 1) + [FINAL_WEIGHT] if len(ks) > 1 else [1.0]
            rows += [self.row[s][k] for k in ks]
            labels += [self.labels[s]] * len(ks)
            weights += w
        return np.asarray(rows), np.asarray(labels), np.asarray(weights)


def _dataset(X: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> lgb.Dataset:
    return lgb.Dataset(X, y, weight=w, feature_name=list(FEATURES), categorical_feature=[], free_raw_data=False)


def fit(data: PrefixMatrix, sessions_: np.ndarray, rounds: int | None = None) -> lgb.Booster:
    """Train on the prefixes of ``sessions_``; with ``rounds=None``, early-stop on 15% of them."""
    if rounds is not None:
        rows, y, w = data.training_rows(sessions_)
        return lgb.train(PARAMS, _dataset(data.X[rows], y, w), rounds)
    inner = np.random.default_rng(FOLD_SEED).random(len(sessions_)) < 0.85
    rows, y, w = data.training_rows(sessions_[inner])
    stop_rows, stop_y, stop_w = data.training_rows(sessions_[~inner])
    return lgb.train(PARAMS, _dataset(data.X[rows], y, w), MAX_ROUNDS,
                     valid_sets=[_dataset(data.X[stop_rows], stop_y, stop_w)],
                     callbacks=[lgb.early_stopping(EARLY_STOP, verbose=False)])


@dataclass
class OutOfFold:
    """Out-of-fold raw scores of every session at each of :data:`EVAL_POINTS`, and of the training prefixes."""

    fold: np.ndarray                      # fold of each session
    scores: dict[float, np.ndarray]       # progress -> raw score per session
    train_labels: np.ndarray              # training-prefix labels, weights, folds and raw scores
    train_weights: np.ndarray
    train_folds: np.ndarray
    train_scores: np.ndarray
    rounds: list[int]
    gain: np.ndarray                      # mean split gain per feature over the fold models


def out_of_fold(data: PrefixMatrix, progress: Callable[[str], None] | None = None) -> OutOfFold:
    """Stratified group K-fold by session: each session's prefixes are scored by a model that never saw it."""
    labels = data.labels
    n = len(labels)
    fold_of = np.empty(n, dtype=int)
    scores = {q: np.empty(n) for q in EVAL_POINTS}
    t_y, t_w, t_f, t_p = [], [], [], []
    rounds, gains = [], []
    splits = StratifiedKFold(FOLDS, shuffle=True, random_state=FOLD_SEED).split(np.zeros(n), labels)
    for f, (train, test) in enumerate(splits):
        booster = fit(data, train)
        it = booster.best_iteration
        rounds.append(it)
        gains.append(booster.feature_importance("gain", iteration=it))
        fold_of[test] = f
        for q in EVAL_POINTS:
            scores[q][test] = booster.predict(data.X[data.at(test, q)], num_iteration=it)
        rows, y, w = data.training_rows(test)
        t_y.append(y), t_w.append(w), t_f.append(np.full(len(rows), f))
        t_p.append(booster.predict(data.X[rows], num_iteration=it))
        if progress:
            progress(f"fold {f + 1}/{FOLDS}: {it} rounds, final ROC-AUC "
                     f"{roc_auc_score(labels[test], scores[1.0][test]):.4f}")
    cat = np.concatenate
    return OutOfFold(fold_of, scores, cat(t_y), cat(t_w), cat(t_f), cat(t_p), rounds,
                     np.mean(gains, axis=0))


def fit_calibration(method: str, raw: np.ndarray, y: np.ndarray, w: np.ndarray) -> dict:
    """A monotone map raw score -> probability, fitted on (out-of-fold) raw scores."""
    if method == "identity":
        return {"method": "identity"}
    if method == "platt":
        p = np.clip(raw, 1e-12, 1 - 1e-12)
        logit = (np.log(p) - np.log1p(-p))[:, None]
        lr = LogisticRegression(C=1e6, max_iter=1000).fit(logit, y, sample_weight=w)
        return {"method": "platt", "a": float(lr.coef_[0, 0]), "b": float(lr.intercept_[0])}
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    iso.fit(raw, y, sample_weight=w)
    return {"method": "isotonic", "x": [float(v) for v in iso.X_thresholds_],
            "y": [float(v) for v in iso.y_thresholds_]}


def choose_calibration(oof: OutOfFold) -> tuple[dict, dict[float, np.ndarray], dict]:
    """Pick the calibration with the lowest cross-fitted Brier score over the weighted training prefixes.

    Each candidate is cross-fitted (fold ``f`` is calibrated by a map fitted on the other folds'
    out-of-fold scores). A fitted map must beat ``identity`` by :data:`CALIBRATION_MIN_GAIN`, so
    an already calibrated model is published unchanged. Returns the map refitted on all out-of-fold
    scores, the chosen cross-fitted session scores by progress, and the comparison.
    """
    briers, fitted = {}, {}
    for method in CALIBRATIONS:
        prefix = np.empty_like(oof.train_scores)
        sessions_ = {q: np.empty_like(v) for q, v in oof.scores.items()}
        for f in range(FOLDS):
            other, mine, rows = oof.train_folds != f, oof.fold == f, oof.train_folds == f
            cal = fit_calibration(method, oof.train_scores[other], oof.train_labels[other], oof.train_weights[other])
            prefix[rows] = calibrate(oof.train_scores[rows], cal)
            for q, v in oof.scores.items():
                sessions_[q][mine] = calibrate(v[mine], cal)
        briers[method] = float(np.average((prefix - oof.train_labels) ** 2, weights=oof.train_weights))
        fitted[method] = sessions_
    best = min(CALIBRATIONS, key=lambda m: briers[m])
    if briers["identity"] - briers[best] < CALIBRATION_MIN_GAIN:
        best = "identity"
    calibration = fit_calibration(best, oof.train_scores, oof.train_labels, oof.train_weights)
    comparison = {"selected": best, "min_gain": CALIBRATION_MIN_GAIN,
                  "cross_fitted_weighted_brier": briers,
                  "rule": "lowest cross-fitted Brier over all training prefixes (each session weighing 1); "
                          "a fitted map must beat identity by min_gain"}
    calibration["fitted_on"] = "out-of-fold raw scores of the weighted training prefixes"
    return calibration, fitted[best], comparison


def _stat(values) -> dict:
    return {"mean": float(np.mean(values)), "std": float(np.std(values))}


def fold_metrics(labels: np.ndarray, folds: np.ndarray, scores: dict[float, np.ndarray]) -> dict:
    """Per-fold ROC-AUC at each progress point; PR-AUC and Brier of final scores (mean and std over folds)."""
    out: dict = {}
    for q, s in scores.items():
        out[f"roc_auc_at_{int(q * 100)}pct"] = _stat(
            [roc_auc_score(labels[folds == f], s[folds == f]) for f in range(FOLDS)])
    final = scores[1.0]
    out["roc_auc"] = out.pop("roc_auc_at_100pct")
    out["pr_auc"] = _stat([average_precision_score(labels[folds == f], final[folds == f]) for f in range(FOLDS)])
    out["brier"] = _stat([brier_score_loss(labels[folds == f], final[folds == f]) for f in range(FOLDS)])
    return out


def choose_bands(calibrated_final: np.ndarray, labels: np.ndarray) -> tuple[dict[str, float], str]:
    """medium: the base rate; high: the lowest score at which sessions scoring at least it are
    purchases with out-of-fold precision >= :data:`HIGH_PRECISION`."""
    base_rate = float(labels.mean())
    order = np.argsort(-calibrated_final, kind="stable")
    s, y = calibrated_final[order], labels[order]
    precision = np.cumsum(y) / np.arange(1, len(y) + 1)
    # only thresholds at the end of a run of tied scores (everything >= s[i] is included)
    last_of_tie = np.r_[s[1:] != s[:-1], True]
    ok = np.flatnonzero(last_of_tie & (precision >= HIGH_PRECISION))
    high = float(s[ok[-1]]) if len(ok) else 0.5
    high = max(high, base_rate)
    rule = (f"medium >= training base rate ({base_rate:.4f}); high >= lowest calibrated score at which the "
            f"out-of-fold precision of final-state scores at or above it is >= {HIGH_PRECISION}")
    return {"medium": base_rate, "high": high}, rule


@dataclass
class Evaluation:
    """Everything the CV produced: data, out-of-fold scores, calibration and metrics."""

    data: PrefixMatrix
    vocabulary: dict
    oof: OutOfFold
    calibrated: dict[float, np.ndarray]
    calibration: dict
    metrics: dict
    bands: dict[str, float]
    bands_rule: str


def evaluate_cv(frame: pd.DataFrame, progress: Progress | None = None,
                log: Callable[[str], None] | None = None) -> Evaluation:
    replayed = replay_frame(frame, progress)
    vocabulary = build_vocabulary([raw_context(s) for s in replayed.finals])
    data = PrefixMatrix.build(replayed, vocabulary)
    oof = out_of_fold(data, log)
    calibration, calibrated, comparison = choose_calibration(oof)
    labels = data.labels
    raw = fold_metrics(labels, oof.fold, oof.scores)
    cal = fold_metrics(labels, oof.fold, calibrated)
    metrics = {
        "folds": FOLDS, "split": "StratifiedKFold over sessions (all prefixes of a session in one fold)",
        "sessions": int(len(labels)), "positive_rate": float(labels.mean()),
        **cal,
        "raw": {"brier": raw["brier"], "roc_auc": raw["roc_auc"], "pr_auc": raw["pr_auc"]},
        "rounds": int(np.mean(oof.rounds)),
        "prefix_points": list(TRAIN_POINTS), "final_weight": FINAL_WEIGHT,
        "calibration": comparison,
        "note": "out-of-fold scores of the published (calibrated) score; the calibration is cross-fitted "
                "(each fold's map fitted on the other folds' out-of-fold scores); 'raw' is before calibration",
    }
    bands, rule = choose_bands(calibrated[1.0], labels)
    return Evaluation(data, vocabulary, oof, calibrated, calibration, metrics, bands, rule)


def train(frame: pd.DataFrame, source: str, progress: Progress | None = None,
          model_file: Path = MODEL_FILE, metadata_file: Path = METADATA_FILE,
          log: Callable[[str], None] | None = None, evaluation: Evaluation | None = None) -> dict:
    """Train, cross-validate and write the model and its metadata; return the metadata.

    ``progress(i)`` is called after replaying session ``i``; ``log(message)`` after each CV fold.
    """
    ev = evaluation or evaluate_cv(frame, progress, log)
    data = ev.data
    booster = fit(data, np.arange(len(data.labels)), rounds=ev.metrics["rounds"])
    text = booster.model_to_string().encode()
    digest = hashlib.sha256(text).hexdigest()
    base_rate = float(data.labels.mean())
    meta = {
        "version": f"intent-{digest[:10]}",
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "training_data": {"file": source, "rows": int(len(data.labels)), "positive_rate": base_rate,
                          "citation": "Sakar et al., Neural Computing and Applications 31, 6893-6908 (2019); "
                                      "CC BY 4.0"},
        "features": list(FEATURES),
        "vocabulary": ev.vocabulary,
        "params": PARAMS,
        "training": {"prefix_points": list(TRAIN_POINTS), "final_weight": FINAL_WEIGHT,
                     "rounds": ev.metrics["rounds"],
                     "rows": "per session, the state after ceil(q * page views) page views and their dwell "
                             "events for each q in prefix_points; weights sum to 1 per session"},
        "cv": ev.metrics,
        "calibration": ev.calibration,
        "bands": ev.bands,
        "bands_rule": ev.bands_rule,
        "page_prior": [float(frame["BounceRates"].mean()), float(frame["ExitRates"].mean()), 0.0],
        "sha256": digest,
    }
    Path(model_file).write_bytes(text)
    Path(metadata_file).write_bytes(orjson.dumps(meta, option=orjson.OPT_INDENT_2))
    return meta
