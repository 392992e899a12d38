"""Out-of-fold evaluation of the intent model: metrics.json and plots.

``evaluate(frame, out_dir)`` runs the same session-grouped cross-validation as training
(:func:`models.training.train.evaluate_cv`) and writes to ``out_dir``:

* ``metrics.json``: ROC-AUC, PR-AUC, Brier (mean and std over folds) of the published score after a
  session's last event, ROC-AUC at 25/50/75% of each session's page views, the calibration choice
  and the bands;
* ``roc.png``, ``pr.png``, ``calibration.png`` (reliability curve), ``progress.png`` (ROC-AUC by
  session progress) and ``importance.png`` (mean split gain of the fold models).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import orjson  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.calibration import calibration_curve  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

from models.features import FEATURES  # noqa: E402
from models.training.train import EVAL_POINTS, Evaluation, evaluate_cv  # noqa: E402

PLOTS = ("roc.png", "pr.png", "calibration.png", "progress.png", "importance.png")
RELIABILITY_BINS = 10


def reliability(labels: np.ndarray, scores: np.ndarray, bins: int = RELIABILITY_BINS) -> dict:
    """Observed purchase rate against mean score in equal-count score bins."""
    observed, predicted = calibration_curve(labels, scores, n_bins=bins, strategy="quantile")
    return {"mean_score": [float(v) for v in predicted], "observed_rate": [float(v) for v in observed]}


def evaluate(frame: pd.DataFrame, out_dir: str | Path, progress: Callable[[int], None] | None = None,
             log: Callable[[str], None] | None = None, evaluation: Evaluation | None = None) -> dict:
    """Cross-validate on ``frame`` (UCI rows with Revenue) and write metrics.json and plots to ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ev = evaluation or evaluate_cv(frame, progress, log)
    y = ev.data.labels
    final, raw_final = ev.calibrated[1.0], ev.oof.scores[1.0]
    metrics = {
        **ev.metrics,
        "calibration_method": ev.calibration["method"],
        "reliability": {"final": reliability(y, final), "at_50pct": reliability(y, ev.calibrated[0.5])},
        "bands": ev.bands, "bands_rule": ev.bands_rule,
        "band_shares": _band_shares(final, y, ev.bands),
        "feature_gain": dict(sorted(zip(FEATURES, map(float, ev.oof.gain)), key=lambda kv: -kv[1])),
        "plots": list(PLOTS),
    }
    _plot_roc(ev, out / "roc.png")
    _plot_pr(ev, out / "pr.png")
    _plot_calibration(y, final, raw_final, ev.calibrated[0.5], metrics, out / "calibration.png")
    _plot_progress(metrics, out / "progress.png")
    _plot_importance(metrics["feature_gain"], out / "importance.png")
    (out / "metrics.json").write_bytes(orjson.dumps(metrics, option=orjson.OPT_INDENT_2))
    return metrics


def _band_shares(scores: np.ndarray, labels: np.ndarray, bands: dict[str, float]) -> dict:
    """Share of sessions and their purchase rate in each band (final-state out-of-fold scores)."""
    band = np.where(scores >= bands["high"], "high", np.where(scores >= bands["medium"], "medium", "low"))
    return {b: {"sessions": float(np.mean(band == b)),
                "purchase_rate": float(labels[band == b].mean()) if np.any(band == b) else None}
            for b in ("low", "medium", "high")}


def _pct(q: float) -> str:
    return f"{int(q * 100)}%"


def _plot_roc(ev: Evaluation, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 5))
    for q in EVAL_POINTS:
        fpr, tpr, _ = roc_curve(ev.data.labels, ev.calibrated[q])
        key = "roc_auc" if q == 1.0 else f"roc_auc_at_{int(q * 100)}pct"
        ax.plot(fpr, tpr, label=f"{_pct(q)} of page views: AUC {ev.metrics[key]['mean']:.3f}")
    ax.plot([0, 1], [0, 1], ls=":", c="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, out-of-fold (5-fold CV)")
    ax.legend(loc="lower right", fontsize=8)
    _save(fig, path)


def _plot_pr(ev: Evaluation, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 5))
    y = ev.data.labels
    precision, recall, _ = precision_recall_curve(y, ev.calibrated[1.0])
    ax.plot(recall, precision, label=f"final state: PR-AUC {ev.metrics['pr_auc']['mean']:.3f}")
    ax.axhline(y.mean(), ls=":", c="grey", label=f"base rate {y.mean():.3f}")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall, out-of-fold", ylim=(0, 1.02))
    ax.legend(loc="lower left", fontsize=8)
    _save(fig, path)


def _plot_calibration(y, final, raw_final, half, metrics, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], ls=":", c="grey", label="perfect")
    brier = metrics["brier"]["mean"]
    for scores, label in ((final, f"final state (Brier {brier:.4f})"), (half, "50% of page views")):
        r = reliability(y, scores)
        ax.plot(r["mean_score"], r["observed_rate"], marker="o", label=label)
    if metrics["calibration_method"] != "identity":
        r = reliability(y, raw_final)
        ax.plot(r["mean_score"], r["observed_rate"], marker=".", ls="--", label="final state, uncalibrated")
    ax.set(xlabel=f"mean score ({RELIABILITY_BINS} equal-count bins)", ylabel="observed purchase rate",
           title=f"Reliability, out-of-fold (calibration: {metrics['calibration_method']})")
    ax.legend(loc="upper left", fontsize=8)
    _save(fig, path)


def _plot_progress(metrics: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    keys = [f"roc_auc_at_{int(q * 100)}pct" if q < 1 else "roc_auc" for q in EVAL_POINTS]
    means = [metrics[k]["mean"] for k in keys]
    stds = [metrics[k]["std"] for k in keys]
    ax.errorbar([int(q * 100) for q in EVAL_POINTS], means, yerr=stds, marker="o", capsize=4)
    for q, m in zip(EVAL_POINTS, means):
        ax.annotate(f"{m:.3f}", (int(q * 100), m), textcoords="offset points", xytext=(0, 8), ha="center", fontsize=8)
    ax.set(xlabel="% of the session's page views seen", ylabel="ROC-AUC (mean ± std over folds)",
           title="Intent AUC by session progress", xticks=[25, 50, 75, 100])
    _save(fig, path)


def _plot_importance(gain: dict[str, float], path: Path) -> None:
    names, values = list(gain)[::-1], list(gain.values())[::-1]
    fig, ax = plt.subplots(figsize=(6, 0.25 * len(names) + 1))
    ax.barh(names, values)
    ax.set(xlabel="mean split gain over the fold models", title="Feature importance")
    ax.tick_params(axis="y", labelsize=8)
    _save(fig, path)


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(metrics: dict, image_dir: str = "docs/img/intent") -> str:
    """A README snippet with the headline numbers and the plots (paths relative to the repo root)."""
    m = metrics
    pm = lambda s: f"{s['mean']:.4f} ± {s['std']:.4f}"  # noqa: E731
    shares = m["band_shares"]
    lines = [
        "### Intent model evaluation",
        "",
        f"Stratified {m['folds']}-fold cross-validation on `train.csv` ({m['sessions']} UCI Online Shoppers "
        f"sessions, {m['positive_rate']:.1%} purchases), split by session: every prefix of a session is in "
        "the same fold. Scores are out-of-fold and calibrated as published "
        f"(calibration: `{m['calibration_method']}`, chosen by cross-fitted Brier score). The model has "
        f"{m['rounds']} trees (the mean early-stopped rounds of the folds).",
        "",
        "| score after | ROC-AUC | PR-AUC | Brier |",
        "|---|---|---|---|",
        f"| the session's last event | {pm(m['roc_auc'])} | {pm(m['pr_auc'])} | {pm(m['brier'])} |",
    ]
    for q in (0.75, 0.5, 0.25):
        lines.append(f"| {int(q * 100)}% of its page views | {pm(m[f'roc_auc_at_{int(q * 100)}pct'])} | | |")
    lines += [
        "",
        f"Bands: medium ≥ {m['bands']['medium']:.3f}, high ≥ {m['bands']['high']:.3f} ({m['bands_rule']}). "
        f"Out of fold, {shares['high']['sessions']:.0%} of sessions end in the high band "
        f"({shares['high']['purchase_rate']:.0%} of them buy), {shares['medium']['sessions']:.0%} in medium "
        f"({shares['medium']['purchase_rate']:.0%}), {shares['low']['sessions']:.0%} in low "
        f"({shares['low']['purchase_rate']:.1%}).",
        "",
        "Caveat: the UCI rows are replayed with every page carrying the session's average bounce rate, exit "
        "rate and page value, so an early prefix already sees the final `PageValues`, the strongest feature. "
        "The 25/50/75% numbers are therefore optimistic for live traffic, where page values arrive page "
        "by page.",
        "",
        f"![ROC]({image_dir}/roc.png) ![Precision-recall]({image_dir}/pr.png)",
        f"![Reliability]({image_dir}/calibration.png) ![AUC by session progress]({image_dir}/progress.png)",
        f"![Feature importance]({image_dir}/importance.png)",
        "",
    ]
    return "\n".join(lines)
