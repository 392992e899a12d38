"""The pre-trained LightGBM intent model: loading with validation, batch scoring and bands."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import lightgbm as lgb
import numpy as np
import orjson

from models.features import SessionState, Vocabulary
from models.featuresets import UCI, FeatureSet, feature_set

ARTIFACTS = Path(__file__).parent / "artifacts"
MODEL_FILE = ARTIFACTS / "intent.lgb.txt"
METADATA_FILE = ARTIFACTS / "intent.json"


class ModelFileError(RuntimeError):
    """A model file that is missing, corrupt or built for another feature list."""


CALIBRATIONS = ("identity", "platt", "isotonic")


def calibrate(raw: np.ndarray, calibration: Mapping) -> np.ndarray:
    """Map raw model probabilities through the monotone calibration stored in the metadata.

    ``identity``: unchanged; ``platt``: ``sigmoid(a * logit(raw) + b)`` with ``a > 0``;
    ``isotonic``: piecewise-linear interpolation between breakpoints ``x -> y``, constant beyond
    them. Each is an elementwise function, so a row scores the same alone or in a batch.
    """
    raw = np.asarray(raw, dtype=np.float64)
    method = calibration["method"]
    if method == "identity":
        return raw
    if method == "platt":
        p = np.clip(raw, 1e-12, 1 - 1e-12)
        z = calibration["a"] * (np.log(p) - np.log1p(-p)) + calibration["b"]
        return 1.0 / (1.0 + np.exp(-z))
    if method == "isotonic":
        return np.interp(raw, calibration["x"], calibration["y"])
    raise ValueError(f"unknown calibration method {method!r}")


def _check_calibration(calibration, metadata_file: Path) -> dict:
    """The metadata's calibration, validated as a non-decreasing map into [0, 1]."""
    try:
        method = calibration["method"]
        if method == "identity":
            return {"method": "identity"}
        if method == "platt":
            a, b = float(calibration["a"]), float(calibration["b"])
            if a > 0 and np.isfinite(a) and np.isfinite(b):
                return {"method": "platt", "a": a, "b": b}
        elif method == "isotonic":
            x = np.asarray(calibration["x"], dtype=np.float64)
            y = np.asarray(calibration["y"], dtype=np.float64)
            if (x.ndim == 1 and x.shape == y.shape and len(x) >= 2 and np.all(np.isfinite(x))
                    and np.all(np.isfinite(y)) and np.all(np.diff(x) > 0) and np.all(np.diff(y) >= 0)
                    and y[0] >= 0 and y[-1] <= 1):
                return {"method": "isotonic", "x": x.tolist(), "y": y.tolist()}
    except (KeyError, TypeError, ValueError):
        pass
    raise ModelFileError(f"intent model metadata {metadata_file} has no valid calibration: expected "
                         f"method in {CALIBRATIONS} with its parameters (platt: a > 0, b; isotonic: "
                         "increasing x, non-decreasing y in [0, 1])")


@dataclass(frozen=True)
class IntentModel:
    booster: lgb.Booster
    version: str
    vocabulary: Vocabulary
    bands: dict[str, float]
    page_prior: tuple[float, float, float]
    calibration: dict = field(default_factory=lambda: {"method": "identity"})
    sha256: str = ""
    model_file: Path = MODEL_FILE
    feature_set: FeatureSet = UCI
    """The features the model reads (named in its metadata; ``uci-v1`` when it names none)."""
    native: Any = None
    """The same trees compiled to native code by lleaves (see :meth:`compiled`), or None."""

    @classmethod
    def load(cls, model_file: Path = MODEL_FILE, metadata_file: Path = METADATA_FILE) -> "IntentModel":
        """Load and validate; raise :class:`ModelFileError` naming the file and the problem."""
        for path in (model_file, metadata_file):
            if not Path(path).is_file():
                raise ModelFileError(f"intent model file {path} is missing (run `personastream train`)")
        try:
            meta = orjson.loads(Path(metadata_file).read_bytes())
        except orjson.JSONDecodeError as exc:
            raise ModelFileError(f"intent model metadata {metadata_file} is not valid JSON: {exc}") from None
        text = Path(model_file).read_bytes()
        digest = hashlib.sha256(text).hexdigest()
        if meta.get("sha256") != digest:
            raise ModelFileError(f"intent model {model_file} does not match its metadata {metadata_file} "
                                 f"(sha256 {digest[:12]} != {str(meta.get('sha256'))[:12]}): corrupt or replaced")
        try:
            features = feature_set(meta.get("feature_set", UCI.name))
        except KeyError as exc:
            raise ModelFileError(f"intent model metadata {metadata_file}: {exc.args[0]}") from None
        if list(meta.get("features", [])) != list(features.features):
            raise ModelFileError(f"intent model metadata {metadata_file} was built for features "
                                 f"{meta.get('features')}, but this code computes {list(features.features)} "
                                 f"for feature set {features.name}")
        try:
            booster = lgb.Booster(model_str=text.decode())
        except (lgb.basic.LightGBMError, UnicodeDecodeError) as exc:
            raise ModelFileError(f"intent model {model_file} is corrupt: {exc}") from None
        if booster.feature_name() != list(features.features):
            raise ModelFileError(f"intent model {model_file} expects features {booster.feature_name()}, "
                                 f"but this code computes {list(features.features)}")
        calibration = _check_calibration(meta.get("calibration"), metadata_file)
        try:
            bands = {"medium": float(meta["bands"]["medium"]), "high": float(meta["bands"]["high"])}
            model = cls(booster=booster, version=meta["version"], vocabulary=meta["vocabulary"],
                        bands=bands, page_prior=tuple(meta["page_prior"]), calibration=calibration,
                        sha256=digest, model_file=Path(model_file), feature_set=features)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"intent model metadata {metadata_file} is incomplete: {exc!r}") from None
        if not 0 <= bands["medium"] <= bands["high"] <= 1:
            raise ModelFileError(f"intent model metadata {metadata_file} has unordered bands {bands}")
        return model

    def compiled(self, cache_dir: Path) -> "IntentModel":
        """This model with scoring compiled to native code by lleaves: the same predictions (to
        ~1e-15), several times cheaper per row. The binary is cached per model and CPU in ``cache_dir``."""
        import lleaves
        from llvmlite import binding

        cpu = hashlib.sha256(f"{binding.get_host_cpu_name()}:{binding.get_host_cpu_features().flatten()}"
                             .encode()).hexdigest()[:12]
        cache = Path(cache_dir) / f"intent-{self.sha256[:16]}-{cpu}.so"
        native = lleaves.Model(model_file=str(self.model_file))
        if cache.exists():
            native.compile(cache=str(cache))
        else:  # compile to a private file, then publish it atomically
            cache.parent.mkdir(parents=True, exist_ok=True)
            scratch = cache.with_suffix(f".{os.getpid()}.tmp")
            native.compile(cache=str(scratch))
            os.replace(scratch, cache)
        return dataclasses.replace(self, native=native)

    def row(self, state: SessionState) -> list[float]:
        """The feature vector of a visit as this model reads it."""
        return self.feature_set.row(state, self.vocabulary)

    def raw_score(self, rows: Sequence[Sequence[float]]) -> np.ndarray:
        """Uncalibrated LightGBM probabilities (what the model was trained to output)."""
        X = np.asarray(rows, dtype=np.float64)
        if self.native is not None:
            return self.native.predict(X, n_jobs=1)
        return self.booster.predict(X, num_threads=1)

    def score(self, rows: Sequence[Sequence[float]]) -> np.ndarray:
        """Calibrated purchase probabilities for a batch of feature vectors."""
        raw = self.raw_score(rows)
        return calibrate(raw, self.calibration)

    def contributions(self, rows: Sequence[Sequence[float]], top: int = 3) -> list[list[tuple[str, float]]]:
        """The ``top`` features by absolute log-odds contribution, per row (TreeSHAP on two threads: the
        worker's session task waits for them meanwhile, its core is free)."""
        contrib = self.booster.predict(np.asarray(rows, dtype=np.float64), pred_contrib=True, num_threads=2)[:, :-1]
        order = np.argsort(-np.abs(contrib), axis=1)[:, :top]
        names = self.feature_set.features
        return [[(names[j], float(c[j])) for j in idx] for c, idx in zip(contrib, order)]

    def band(self, score: float) -> str:
        if score >= self.bands["high"]:
            return "high"
        return "medium" if score >= self.bands["medium"] else "low"
