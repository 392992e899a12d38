"""Persona evaluation on UCI sessions: River clusterers vs batch k-means, per-persona report, artifact.

``python -m models.training.persona_eval [--data CSV] [--out docs/img] [--artifact] [--markdown FILE]``

``python -m models.training.persona_eval --events FILE --models DIR`` instead describes the personas of a
model directory (``personastream train --events FILE --out DIR``) on the recorded visits it was trained on.

Sessions are replayed through the stream's feature code (:mod:`models.training.uci`); their final states give
:func:`models.persona.persona_features`. The intent input is an out-of-fold LightGBM score (5 folds,
same features as the intent model), so no session is scored by a model that saw its label; the
shipped intent model was trained on all of ``train.csv`` and would leak.

Data: UCI Online Shoppers Purchasing Intention (CC BY 4.0), Sakar et al., Neural Computing and
Applications 31, 6893-6908 (2019).
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from models.features import FEATURES as INTENT_FEATURES
from models.features import SessionState, build_vocabulary, raw_context, session_features
from models.persona import ARTIFACT, FEATURES, PersonaModel, persona_features, rule_names
from models.training.uci import fold_session, read_uci, sessions

DATA = Path("/work/shared/data/online_shoppers/train.csv")
IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
SEED = 7
K = 6
SILHOUETTE_SAMPLE = 2000


# --- data ---------------------------------------------------------------------------------------

def final_states(frame: pd.DataFrame) -> list[SessionState]:
    out = []
    for session in sessions(frame):
        *_, (_, state) = fold_session(session)
        out.append(replace(state, recent_ids=b""))
    return out


def oof_intent(states: list[SessionState], labels: np.ndarray, folds: int = 5, rounds: int = 250) -> np.ndarray:
    """Out-of-fold LightGBM purchase probabilities from the intent model's features."""
    import lightgbm as lgb
    from sklearn.model_selection import StratifiedKFold

    from models.featuresets import UCI

    vocabulary = build_vocabulary([raw_context(s) for s in states])
    X = np.asarray([session_features(s, vocabulary) for s in states], dtype=np.float64)
    params = {"objective": "binary", "learning_rate": 0.05, "num_leaves": 15, "min_data_in_leaf": 40,
              "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0,
              "cat_smooth": 20, "seed": SEED, "deterministic": True, "num_threads": 2, "verbose": -1}
    out = np.zeros(len(labels))
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=SEED).split(X, labels):
        data = lgb.Dataset(X[train], labels[train], feature_name=list(INTENT_FEATURES),
                           categorical_feature=UCI.categorical_indices())
        out[test] = lgb.train(params, data, rounds).predict(X[test], num_threads=2)
    return out


def page_value_intent(states: list[SessionState]) -> np.ndarray:
    """A label-free intent proxy: share of sessions with a lower mean page value (UCI ``PageValues``)."""
    v = np.array([s.page_value_sum / s.page_views if s.page_views else 0.0 for s in states])
    return pd.Series(v).rank(pct=True).to_numpy() * (v > 0)


def load(frame: pd.DataFrame,
         intent: str | np.ndarray = "oof") -> tuple[list[dict[str, float]], np.ndarray, np.ndarray]:
    """Persona feature dicts, labels and intent scores of a UCI frame."""
    states = final_states(frame)
    labels = frame["Revenue"].to_numpy(dtype=int)
    if isinstance(intent, np.ndarray):
        score = intent
    elif intent == "oof":
        score = oof_intent(states, labels)
    else:
        score = page_value_intent(states)
    return [persona_features(s, p) for s, p in zip(states, score)], labels, score


# --- clusterers ---------------------------------------------------------------------------------

class _Online:
    """River clusterer behind the same online scaler and ±5σ clip as :class:`PersonaModel`."""

    def __init__(self, name: str, make: Callable[[], object], clip: float = 5.0):
        from river import preprocessing
        self.name, self.clusterer, self.clip = name, make(), clip
        self.scaler = preprocessing.StandardScaler()

    def _z(self, x):
        return {f: min(max(v, -self.clip), self.clip) for f, v in self.scaler.transform_one(x).items()}

    def learn_one(self, x):
        self.scaler.learn_one(x)
        self.clusterer.learn_one(self._z(x))

    def predict_one(self, x) -> int:
        return int(self.clusterer.predict_one(self._z(x)))


class _Ours:
    name = "PersonaModel (River KMeans, k-means++ warm-up, 1/n step)"

    def __init__(self, k: int = K, seed: int = SEED):
        self.model = PersonaModel(k, seed=seed)

    def learn_one(self, x):
        self.model.learn_one(x)

    def predict_one(self, x) -> int:
        return self.model.predict_one(x).persona_id


def river_candidates(k: int = K, seed: int = SEED) -> list[Callable[[], object]]:
    from river import cluster
    return [
        lambda: _Ours(k, seed),
        lambda: _Online("River KMeans (halflife 0.05)", lambda: cluster.KMeans(k, halflife=0.05, sigma=1.0, seed=seed)),
        lambda: _Online("River STREAMKMeans (chunk 100)",
                        lambda: cluster.STREAMKMeans(chunk_size=100, n_clusters=k, halflife=0.5, sigma=1.0, seed=seed)),
        lambda: _Online(f"River CluStream (k={k}, 60 micro)",
                        lambda: cluster.CluStream(n_macro_clusters=k, max_micro_clusters=60, time_gap=500,
                                                  seed=seed, halflife=0.5, sigma=1.0)),
        lambda: _Online("River DBSTREAM (r=2.5)",
                        lambda: cluster.DBSTREAM(clustering_threshold=2.5, fading_factor=0.001,
                                                 cleanup_interval=500, intersection_factor=0.3, minimum_weight=5)),
    ]


def matched_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of sessions with the same cluster in ``a`` and ``b`` after the best one-to-one relabelling."""
    from scipy.optimize import linear_sum_assignment
    ua, ia = np.unique(a, return_inverse=True)
    ub, ib = np.unique(b, return_inverse=True)
    table = np.zeros((len(ua), len(ub)))
    np.add.at(table, (ia, ib), 1)
    r, c = linear_sum_assignment(-table)
    return float(table[r, c].sum() / len(a))


def quality(Z: np.ndarray, labels: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> dict:
    from sklearn.metrics import silhouette_score
    ids, sizes = np.unique(labels, return_counts=True)
    big = ids[sizes >= 0.01 * len(labels)]
    rates = np.array([y[labels == i].mean() for i in big]) if len(big) else np.array([0.0])
    sample = rng.choice(len(Z), min(SILHOUETTE_SAMPLE, len(Z)), replace=False)
    sil = silhouette_score(Z[sample], labels[sample]) if len(np.unique(labels[sample])) > 1 else float("nan")
    return {"clusters": int(len(ids)), "clusters_1pct": int(len(big)), "silhouette": float(sil),
            "conv_min": float(rates.min()), "conv_max": float(rates.max()),
            "top_lift": float(rates.max() / y.mean()), "conv_std": float(rates.std())}


def compare(frame: pd.DataFrame, out_dir: str | Path = IMG, k: int = K,
            data: tuple[list[dict[str, float]], np.ndarray, np.ndarray] | None = None,
            seeds: tuple[int, ...] = (7, 8, 9)) -> dict:
    """Compare River clusterers with batch sklearn KMeans on the same features, over several seeds.

    Per seed the sessions arrive in a random order. Each online model learns the first half,
    assigns every session (A1), learns the second half and assigns again (A2). Stability = share
    of sessions whose persona is unchanged between A1 and A2 (``stable_raw``: same cluster id;
    ``stable_matched``: after the best one-to-one relabelling). Quality is measured on A2 in
    batch-standardized (±5σ clipped) space: silhouette on a 2,000-session sample, conversion rate
    of each cluster with ≥1% of sessions (min, max, std) and the top cluster's lift. Batch KMeans
    (n_init=10) is fitted on the first half, then on everything. The table holds the mean over
    seeds and, for stability and top lift, the worst seed.
    """
    X, y, _ = data if data is not None else load(frame)
    M = np.array([[x[f] for f in FEATURES] for x in X])
    Z = np.clip((M - M.mean(0)) / np.where(M.std(0) > 0, M.std(0), 1.0), -5, 5)
    runs = pd.DataFrame([row for seed in seeds for row in _compare_seed(X, y, Z, k, seed)])
    g = runs.groupby("model", sort=False)
    table = g.mean(numeric_only=True).drop(columns="seed")
    for col in ("stable_raw", "stable_matched", "top_lift", "clusters_1pct"):
        table[col + "_min"] = g[col].min()
    table = table.reset_index()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs.to_csv(out / "persona_comparison_runs.csv", index=False)
    table.to_csv(out / "persona_comparison.csv", index=False)
    return {"k": k, "sessions": len(X), "base_rate": float(y.mean()), "seeds": list(seeds), "table": table,
            "runs": runs, "markdown": comparison_markdown(table)}


def _compare_seed(X, y, Z, k: int, seed: int) -> list[dict]:
    from sklearn.cluster import KMeans

    order = np.random.default_rng(seed).permutation(len(X))
    half = len(order) // 2
    rows = []
    for make in river_candidates(k, seed):
        model = make()
        t0 = time.perf_counter()
        for i in order[:half]:
            model.learn_one(X[i])
        t1 = time.perf_counter()
        a1 = np.array([model.predict_one(x) for x in X])
        t2 = time.perf_counter()
        for i in order[half:]:
            model.learn_one(X[i])
        t3 = time.perf_counter()
        a2 = np.array([model.predict_one(x) for x in X])
        learn_us = 1e6 * ((t1 - t0) + (t3 - t2)) / len(X)
        predict_us = 1e6 * (time.perf_counter() - t3) / len(X)
        rows.append({"model": model.name, "seed": seed, "learn_us": learn_us, "predict_us": predict_us,
                     "stable_raw": float((a1 == a2).mean()), "stable_matched": matched_agreement(a1, a2),
                     **quality(Z, a2, y, np.random.default_rng(seed))})
    t0 = time.perf_counter()
    first = KMeans(k, n_init=10, random_state=seed).fit(Z[order[:half]])
    full = KMeans(k, n_init=10, random_state=seed).fit(Z)
    fit_s = time.perf_counter() - t0
    a1, a2 = first.predict(Z), full.labels_
    rows.append({"model": "sklearn KMeans (batch, n_init=10)", "seed": seed, "learn_us": 1e6 * fit_s / (1.5 * len(X)),
                 "predict_us": float("nan"), "stable_raw": float((a1 == a2).mean()),
                 "stable_matched": matched_agreement(a1, a2), **quality(Z, a2, y, np.random.default_rng(seed))})
    return rows


def comparison_markdown(table: pd.DataFrame) -> str:
    lines = ["| clusterer | clusters ≥1% (min) | silhouette | conversion min–max | top lift (min) "
             "| stable, same id (min) | stable, matched (min) | learn µs/session | predict µs/session |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in table.itertuples():
        predict = "—" if math.isnan(r.predict_us) else f"{r.predict_us:.0f}"
        lines.append(f"| {r.model} | {r.clusters_1pct:.1f} ({r.clusters_1pct_min:.0f}) | {r.silhouette:.3f} | "
                     f"{100 * r.conv_min:.1f}%–{100 * r.conv_max:.1f}% | {r.top_lift:.2f}× ({r.top_lift_min:.2f}×) | "
                     f"{100 * r.stable_raw:.1f}% ({100 * r.stable_raw_min:.1f}%) | "
                     f"{100 * r.stable_matched:.1f}% ({100 * r.stable_matched_min:.1f}%) | "
                     f"{r.learn_us:.0f} | {predict} |")
    return "\n".join(lines)


# --- report -------------------------------------------------------------------------------------

def train_model(X: list[dict[str, float]], k: int = K, order: np.ndarray | None = None) -> PersonaModel:
    model = PersonaModel(k, seed=SEED)
    for i in (np.random.default_rng(SEED).permutation(len(X)) if order is None else order):
        model.learn_one(X[i])
    return model.rebase()


def profile_table(X: list[dict[str, float]], y: np.ndarray, names: list[str]) -> pd.DataFrame:
    """Per persona: sessions, share, conversion, lift and mean profile in readable units."""
    F = pd.DataFrame(X)
    readable = pd.DataFrame({
        "pages": np.expm1(F["pages"]),
        "sec/page": np.expm1(F["dwell"]),
        "product %": 100 * F["product_share"],
        "admin %": 100 * F["admin_share"],
        "info %": 100 * F["info_share"],
        "bounce": F["bounce"],
        "exit": F["exit"],
        "page value": np.expm1(F["value"]),
        "intent": F["intent"],
        "cart adds": np.expm1(F["cart_adds"]),
        "churn": F["cart_churn"],
        "search/page": F["search"],
        "scroll %": 100 * F["scroll"],
        "mobile": F["mobile"],
    })
    readable["persona"] = names
    readable["converted"] = y
    g = readable.groupby("persona")
    table = g.mean().drop(columns="converted")
    table.insert(0, "sessions", g.size())
    table.insert(1, "share %", 100 * g.size() / len(y))
    table.insert(2, "conversion %", 100 * g["converted"].mean())
    table.insert(3, "lift", g["converted"].mean() / y.mean())
    return table.sort_values("lift", ascending=False)


def table_markdown(table: pd.DataFrame) -> str:
    """The table as markdown; feature columns that are 0 for every persona (UCI has no cart, search,
    scroll or device events) are left out."""
    fmt = {"sessions": "{:.0f}", "share %": "{:.1f}", "conversion %": "{:.1f}", "lift": "{:.2f}×",
           "pages": "{:.1f}", "sec/page": "{:.0f}", "product %": "{:.0f}", "admin %": "{:.0f}",
           "info %": "{:.0f}", "bounce": "{:.3f}", "exit": "{:.3f}", "page value": "{:.1f}", "intent": "{:.2f}",
           "cart adds": "{:.2f}", "churn": "{:.2f}", "search/page": "{:.2f}", "scroll %": "{:.0f}", "mobile": "{:.2f}"}
    cols = [c for c in fmt if c in ("sessions", "share %", "conversion %", "lift") or table[c].abs().sum() > 0]
    lines = ["| persona | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, r in table.iterrows():
        lines.append(f"| {name} | " + " | ".join(fmt[c].format(r[c]) for c in cols) + " |")
    return "\n".join(lines)


def report(frame: pd.DataFrame, out_dir: str | Path = IMG, k: int = K,
           data: tuple[list[dict[str, float]], np.ndarray, np.ndarray] | None = None,
           model: PersonaModel | None = None) -> dict:
    """Train (or use) a :class:`PersonaModel`, assign every session and describe the personas.

    Writes ``persona_projection.png`` (PCA of standardized features, coloured by persona),
    ``persona_profile.png`` and ``persona_profile.md``/``.csv`` to ``out_dir``.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    X, y, _ = data if data is not None else load(frame)
    model = model or train_model(X, k)
    assigned = [model.predict_one(x) for x in X]
    names = [a.name for a in assigned]
    table = profile_table(X, y, names)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table.round(4).to_csv(out / "persona_profile.csv")
    md = table_markdown(table)
    (out / "persona_profile.md").write_text(md + "\n")

    Z = np.array([[z.get(f, 0.0) for f in FEATURES] for z in map(model.standardize, X)])
    pca = PCA(2, random_state=SEED).fit(Z)
    P = pca.transform(Z)
    C = pca.transform(model.centers())
    order = list(table.index)
    colors = dict(zip(order, plt.cm.tab10.colors))
    fig, ax = plt.subplots(figsize=(8, 6), dpi=110)
    for name in reversed(order):
        idx = [i for i, n in enumerate(names) if n == name]
        r = table.loc[name]
        ax.scatter(P[idx, 0], P[idx, 1], s=4, alpha=0.35, color=colors[name],
                   label=f"{name}: {r['sessions']:.0f} sessions, {r['conversion %']:.1f}% convert")
    for i, name in enumerate(model.names):
        ax.scatter(*C[i], marker="X", s=160, color=colors[name], edgecolor="black", linewidth=1.2)
    ax.set_xlabel(f"PC1 ({100 * pca.explained_variance_ratio_[0]:.0f}% of variance)")
    ax.set_ylabel(f"PC2 ({100 * pca.explained_variance_ratio_[1]:.0f}% of variance)")
    ax.set_title(f"UCI sessions by persona (n={len(X)}, base conversion {100 * y.mean():.1f}%); X = centroid")
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles[::-1], labels[::-1], markerscale=4, fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(out / "persona_projection.png")
    plt.close(fig)

    centers = pd.DataFrame(model.centers(), columns=FEATURES, index=model.names).loc[order]
    fig, ax = plt.subplots(figsize=(10, 0.55 * len(order) + 1.6), dpi=110)
    im = ax.imshow(centers.to_numpy(), cmap="RdBu_r", vmin=-3, vmax=3, aspect="auto")
    ax.set_xticks(range(len(FEATURES)), FEATURES, rotation=30, ha="right")
    ax.set_yticks(range(len(order)), [f"{n}  ({table.loc[n, 'conversion %']:.1f}%, {table.loc[n, 'lift']:.2f}×)"
                                      for n in order])
    for i in range(len(order)):
        for j in range(len(FEATURES)):
            ax.text(j, i, f"{centers.iat[i, j]:+.1f}", ha="center", va="center", fontsize=8)
    fig.colorbar(im, ax=ax, label="centroid, σ from the mean")
    ax.set_title("Persona centroids (standardized features); label: conversion rate, lift vs base")
    fig.tight_layout()
    fig.savefig(out / "persona_profile.png")
    plt.close(fig)
    top = table["lift"].idxmax()
    return {"table": table, "markdown": md, "base_rate": float(y.mean()), "top_persona": top,
            "top_lift": float(table.loc[top, "lift"]), "version": model.version, "model": model,
            "rule_names_now": rule_names(model.centers()), "names": list(model.names)}


def merge_check(X: list[dict[str, float]], base: PersonaModel, workers: int = 2) -> dict:
    """Workers start from ``base``, each learns a disjoint shard in a new order; merged vs single model."""
    order = np.random.default_rng(SEED + 1).permutation(len(X))
    shards = np.array_split(order, workers)
    copies = [base.learner() for _ in range(workers)]
    single = PersonaModel.from_bytes(base.to_bytes())
    for model, shard in zip(copies, shards):
        for i in shard:
            model.learn_one(X[i])
    for i in order:
        single.learn_one(X[i])
    merged = base.absorb([m.to_bytes() for m in copies])
    a = np.array([merged.predict_one(x).name for x in X])
    b = np.array([single.predict_one(x).name for x in X])
    c = np.array([base.predict_one(x).name for x in X])
    return {"merged_vs_single": float((a == b).mean()), "merged_vs_base": float((a == c).mean()),
            "merged_version": merged.version, "names_kept": merged.names == base.names}


def site_data(events: str, models: Path) -> tuple[list[dict[str, float]], np.ndarray, PersonaModel]:
    """Persona features and labels (bought) of recorded visits, as :func:`models.training.site.fit_personas`
    sees them: final states of the learnable human visits, read through the model directory's page
    statistics and scored by its intent model; and the directory's persona model."""
    from models.directory import ModelDirectory
    from models.training.visits import final_state, read_visits
    from stream.config import Settings
    from stream.recorded import recorded_lines

    directory = ModelDirectory.load(models)
    visits = [v for v in read_visits(recorded_lines(events), Settings().session_gap_s) if not v.bot and v.learnable]
    finals = [final_state(v, directory.pages) for v in visits]
    intent = directory.intent.score([directory.intent.row(s) for s in finals])
    X = [persona_features(s, float(p)) for s, p in zip(finals, intent)]
    return X, np.array([int(v.bought) for v in visits]), directory.personas


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=IMG)
    parser.add_argument("--k", type=int, default=K)
    parser.add_argument("--intent", choices=("oof", "pagevalue"), default="oof")
    parser.add_argument("--artifact", action="store_true", help=f"write the trained model to {ARTIFACT}")
    parser.add_argument("--events", help="recorded events (JSONL, folder or kafka://) a model directory was trained on")
    parser.add_argument("--models", type=Path, help="with --events: the model directory")
    args = parser.parse_args(argv)
    if args.events:
        X, y, model = site_data(args.events, args.models)
        table = profile_table(X, y, [a.name for a in model.predict_many(X)])
        print(f"{len(X)} visits, base conversion {100 * y.mean():.1f}%\n{table_markdown(table)}")
        return
    frame = read_uci(args.data)
    data = load(frame, args.intent)
    cmp = compare(frame, args.out, args.k, data=data)
    print(cmp["markdown"], "\n")
    rep = report(frame, args.out, args.k, data=data)
    print(rep["markdown"], "\n")
    print(f"top persona {rep['top_persona']}: lift {rep['top_lift']:.2f}; version {rep['version']}")
    print(f"names kept {rep['names']}; rule on final centroids {rep['rule_names_now']}")
    print(merge_check(data[0], rep["model"]))
    if args.artifact:
        rep["model"].save(ARTIFACT)
        print(f"wrote {ARTIFACT}")


if __name__ == "__main__":
    main()
