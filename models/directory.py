"""A model directory: everything a worker scores with, trained together and loaded together.

- ``intent.lgb.txt`` and ``intent.json``: the LightGBM intent model and its metadata (feature set,
  vocabulary, calibration, bands, training window and metrics);
- ``persona.json``: the persona model the workers start from;
- ``pages.json`` (optional): page statistics learned from the site's visits.

The shipped UCI-trained models (:data:`SHIPPED`) are one such directory; ``personastream train
--events`` writes others.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from models.intent import ARTIFACTS, IntentModel, ModelFileError
from models.pagestats import PageValues
from models.persona import PersonaModel

SHIPPED = ARTIFACTS


@dataclass(frozen=True)
class ModelDirectory:
    path: Path
    intent: IntentModel
    personas: PersonaModel
    pages: PageValues | None
    """Learned page statistics, or None if the directory has none."""

    @classmethod
    def load(cls, path: Path = SHIPPED) -> "ModelDirectory":
        """Load and validate every file; :class:`ModelFileError` names the file at fault and why."""
        path = Path(path)
        if not path.is_dir():
            raise ModelFileError(f"model directory {path} does not exist (train one with "
                                 "`personastream train --events FILE --out DIR`)")
        intent = IntentModel.load(path / "intent.lgb.txt", path / "intent.json")
        persona_file = path / "persona.json"
        if not persona_file.is_file():
            raise ModelFileError(f"persona model file {persona_file} is missing")
        try:
            personas = PersonaModel.load(persona_file)
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelFileError(f"persona model file {persona_file} is corrupt: {type(exc).__name__}: {exc}") from None
        pages_file = path / "pages.json"
        pages = None
        if pages_file.exists():
            try:
                pages = PageValues.load(pages_file)
            except (ValueError, KeyError, TypeError) as exc:
                raise ModelFileError(f"page statistics file {pages_file} is corrupt: "
                                     f"{type(exc).__name__}: {exc}") from None
        return cls(path, intent, personas, pages)
