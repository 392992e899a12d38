"""The pre-trained LightGBM intent model: loading with validation, batch scoring and bands."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import lightgbm as lgb
import numpy as np
import orjson

from models.features import CATEGORICAL, FEATURES, Vocabulary

ARTIFACTS = Path(__file__).parent / "artifacts"
MODEL_FILE = ARTIFACTS / "intent.lgb.txt"
METADATA_FILE = ARTIFACTS / "intent.json"


class ModelFileError(RuntimeError):
    """A model file that is missing, corrupt or built for another feature list."""


@dataclass(frozen=True)
class IntentModel:
    booster: lgb.Booster
    version: str
    vocabulary: Vocabulary
    bands: dict[str, float]
    page_prior: tuple[float, float, float]

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
        if list(meta.get("features", [])) != list(FEATURES):
            raise ModelFileError(f"intent model metadata {metadata_file} was built for features "
                                 f"{meta.get('features')}, but this code computes {list(FEATURES)}")
        try:
            booster = lgb.Booster(model_str=text.decode())
        except (lgb.basic.LightGBMError, UnicodeDecodeError) as exc:
            raise ModelFileError(f"intent model {model_file} is corrupt: {exc}") from None
        if booster.feature_name() != list(FEATURES):
            raise ModelFileError(f"intent model {model_file} expects features {booster.feature_name()}, "
                                 f"but this code computes {list(FEATURES)}")
        return cls(booster=booster, version=meta["version"], vocabulary=meta["vocabulary"],
                   bands=meta["bands"], page_prior=tuple(meta["page_prior"]))

    def score(self, rows: Sequence[Sequence[float]]) -> np.ndarray:
        """Purchase probabilities for a batch of feature vectors."""
        return self.booster.predict(np.asarray(rows, dtype=np.float64), num_threads=1)

    def contributions(self, rows: Sequence[Sequence[float]], top: int = 3) -> list[list[tuple[str, float]]]:
        """The ``top`` features by absolute log-odds contribution, per row."""
        contrib = self.booster.predict(np.asarray(rows, dtype=np.float64), pred_contrib=True, num_threads=1)[:, :-1]
        order = np.argsort(-np.abs(contrib), axis=1)[:, :top]
        return [[(FEATURES[j], float(c[j])) for j in idx] for c, idx in zip(contrib, order)]

    def band(self, score: float) -> str:
        if score >= self.bands["high"]:
            return "high"
        return "medium" if score >= self.bands["medium"] else "low"


def categorical_indices() -> list[int]:
    return [FEATURES.index(name) for name in CATEGORICAL]
