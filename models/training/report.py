"""The plots of a training report: ROC, precision-recall, calibration, ROC-AUC by visit progress and
feature importance, from validation scores."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.calibration import calibration_curve  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

PLOTS = ("roc.png", "pr.png", "calibration.png", "progress.png", "importance.png")


def plot_report(out: Path, metrics: dict, labels: np.ndarray, scores: np.ndarray, progress: np.ndarray,
                points: Sequence[float]) -> None:
    """Write :data:`PLOTS` into ``out``; ``scores`` are calibrated validation scores of rows at ``progress``."""
    final = np.isclose(progress, 1.0)
    figure, axes = plt.subplots(figsize=(5, 4))
    for q in points:
        at = np.isclose(progress, q)
        fpr, tpr, _ = roc_curve(labels[at], scores[at])
        axes.plot(fpr, tpr, label=f"{int(q * 100)}% of the visit")
    axes.plot([0, 1], [0, 1], ":", color="grey")
    _save(figure, axes, out / "roc.png", "ROC (validation visits)", "false positive rate", "true positive rate")

    figure, axes = plt.subplots(figsize=(5, 4))
    precision, recall, _ = precision_recall_curve(labels[final], scores[final])
    axes.plot(recall, precision, label=f"PR-AUC {metrics['validation']['pr_auc']:.3f}")
    axes.axhline(labels[final].mean(), linestyle=":", color="grey", label="base rate")
    _save(figure, axes, out / "pr.png", "Precision-recall (before the purchase)", "recall", "precision")

    figure, axes = plt.subplots(figsize=(5, 4))
    observed, predicted = calibration_curve(labels[final], scores[final], n_bins=10, strategy="quantile")
    axes.plot(predicted, observed, "o-", label="validation")
    axes.plot([0, 1], [0, 1], ":", color="grey", label="perfect")
    _save(figure, axes, out / "calibration.png", "Calibration", "mean intent score", "observed purchase rate")

    figure, axes = plt.subplots(figsize=(5, 4))
    aucs = [metrics["validation"][f"roc_auc_at_{int(q * 100)}pct"] or np.nan for q in points]
    axes.plot([100 * q for q in points], aucs, "o-")
    _save(figure, axes, out / "progress.png", "ROC-AUC by visit progress",
          "% of the visit's events (cut before a purchase)", "ROC-AUC", legend=False)

    figure, axes = plt.subplots(figsize=(6, 6))
    gain = list(metrics["gain"].items())[:20][::-1]
    axes.barh([name for name, _ in gain], [value for _, value in gain])
    _save(figure, axes, out / "importance.png", "Feature importance (split gain)", "gain", "", legend=False)


def _save(figure, axes, path: Path, title: str, xlabel: str, ylabel: str, legend: bool = True) -> None:
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    if legend:
        axes.legend(loc="best", fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
