"""Training the intent model on UCI sessions replayed through the stream's own feature code."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import lightgbm as lgb
import numpy as np
import orjson
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold

from models.features import FEATURES, SessionState, build_vocabulary, raw_context, session_features
from models.intent import METADATA_FILE, MODEL_FILE, categorical_indices
from models.uci import sessions, fold_session

PARAMS = {
    "objective": "binary",
    "learning_rate": 0.03,
    "num_leaves": 15,
    "min_data_in_leaf": 40,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "cat_smooth": 20,
    "seed": 7,
    "deterministic": True,
    "num_threads": 2,
    "verbose": -1,
}
MAX_ROUNDS = 2000
FOLDS = 5


@dataclass
class Replayed:
    """Final visit states of a UCI frame, with their labels."""

    finals: list[SessionState]
    labels: np.ndarray


def replay_frame(frame: pd.DataFrame, progress: Callable[[int], None] | None = None) -> Replayed:
    finals = []
    for i, session in enumerate(sessions(frame)):
        state = None
        for _, state in fold_session(session):
            pass
        finals.append(replace(state, recent_ids=[]))
        if progress:
            progress(i)
    return Replayed(finals, frame["Revenue"].to_numpy(dtype=int))


def matrix(states: list[SessionState], vocabulary) -> np.ndarray:
    return np.asarray([session_features(s, vocabulary) for s in states], dtype=np.float64)


def _dataset(X: np.ndarray, y: np.ndarray) -> lgb.Dataset:
    return lgb.Dataset(X, y, feature_name=list(FEATURES), categorical_feature=categorical_indices(),
                       free_raw_data=False)


def cross_validate(X: np.ndarray, y: np.ndarray) -> dict:
    """Stratified 5-fold CV with early stopping inside each training fold."""
    folds = StratifiedKFold(FOLDS, shuffle=True, random_state=7)
    aucs, aps, briers, rounds = [], [], [], []
    for train, test in folds.split(X, y):
        inner = np.random.default_rng(7).random(len(train)) < 0.85
        fit, stop = train[inner], train[~inner]
        booster = lgb.train(PARAMS, _dataset(X[fit], y[fit]), MAX_ROUNDS,
                            valid_sets=[_dataset(X[stop], y[stop])],
                            callbacks=[lgb.early_stopping(100, verbose=False)])
        p = booster.predict(X[test], num_iteration=booster.best_iteration)
        aucs.append(roc_auc_score(y[test], p))
        aps.append(average_precision_score(y[test], p))
        briers.append(brier_score_loss(y[test], p))
        rounds.append(booster.best_iteration)
    stat = lambda v: {"mean": float(np.mean(v)), "std": float(np.std(v))}  # noqa: E731
    return {"folds": FOLDS, "roc_auc": stat(aucs), "pr_auc": stat(aps), "brier": stat(briers),
            "rounds": int(np.mean(rounds))}


def train(frame: pd.DataFrame, source: str, progress: Callable[[int], None] | None = None,
          model_file: Path = MODEL_FILE, metadata_file: Path = METADATA_FILE) -> dict:
    """Train, cross-validate and write the model and its metadata; return the metadata."""
    replayed = replay_frame(frame, progress)
    vocabulary = build_vocabulary([raw_context(s) for s in replayed.finals])
    X, y = matrix(replayed.finals, vocabulary), replayed.labels
    cv = cross_validate(X, y)
    booster = lgb.train(PARAMS, _dataset(X, y), cv["rounds"])
    text = booster.model_to_string().encode()
    digest = hashlib.sha256(text).hexdigest()
    base_rate = float(y.mean())
    meta = {
        "version": f"intent-{digest[:10]}",
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "training_data": {"file": source, "rows": int(len(y)), "positive_rate": base_rate,
                          "citation": "Sakar et al., Neural Computing and Applications 31, 6893-6908 (2019); CC BY 4.0"},
        "features": list(FEATURES),
        "vocabulary": vocabulary,
        "params": PARAMS,
        "cv": cv,
        "bands": {"medium": base_rate, "high": 0.5},
        "page_prior": [float(frame["BounceRates"].mean()), float(frame["ExitRates"].mean()), 0.0],
        "sha256": digest,
    }
    Path(model_file).write_bytes(text)
    Path(metadata_file).write_bytes(orjson.dumps(meta, option=orjson.OPT_INDENT_2))
    return meta
