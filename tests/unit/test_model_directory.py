"""A model directory loads as one, and a missing, corrupt or mismatched file stops loading naming it."""

from __future__ import annotations

import shutil

import orjson
import pytest

from models.directory import SHIPPED, ModelDirectory
from models.featuresets import SITE, UCI
from models.intent import ModelFileError


@pytest.fixture
def copy(tmp_path):
    target = tmp_path / "models"
    shutil.copytree(SHIPPED, target)
    return target


def test_the_shipped_models_are_a_model_directory() -> None:
    loaded = ModelDirectory.load()
    assert loaded.intent.feature_set is UCI and loaded.pages is None and loaded.personas.ready


def test_a_missing_directory_is_named(tmp_path) -> None:
    with pytest.raises(ModelFileError, match=f"model directory {tmp_path / 'nope'} does not exist"):
        ModelDirectory.load(tmp_path / "nope")


@pytest.mark.parametrize("name", ["intent.lgb.txt", "intent.json", "persona.json"])
def test_a_missing_file_is_named(copy, name) -> None:
    (copy / name).unlink()
    with pytest.raises(ModelFileError, match=str(copy / name)):
        ModelDirectory.load(copy)


@pytest.mark.parametrize("name", ["persona.json", "pages.json", "intent.json"])
def test_a_truncated_file_is_named(copy, name) -> None:
    (copy / name).write_bytes(b'{"prior": [0.1, 0.2')
    with pytest.raises(ModelFileError, match=str(copy / name)):
        ModelDirectory.load(copy)


def test_an_unknown_or_mismatched_feature_set_is_named(copy) -> None:
    meta = orjson.loads((copy / "intent.json").read_bytes())
    (copy / "intent.json").write_bytes(orjson.dumps({**meta, "feature_set": "site-v9"}))
    with pytest.raises(ModelFileError, match="unknown feature set 'site-v9'"):
        ModelDirectory.load(copy)
    (copy / "intent.json").write_bytes(orjson.dumps({**meta, "feature_set": SITE.name}))
    with pytest.raises(ModelFileError, match="for feature set site-v1"):
        ModelDirectory.load(copy)


def test_learned_page_statistics_load(copy) -> None:
    (copy / "pages.json").write_bytes(b'{"prior": [0.4, 0.3, 2.0], "pages": {"p1": [0.1, 0.2, 30.0]}}')
    pages = ModelDirectory.load(copy).pages
    assert pages("p1") == (0.1, 0.2, 30.0) and pages("other") == (0.4, 0.3, 2.0)
