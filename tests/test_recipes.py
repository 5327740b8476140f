"""Every recipe under configs/<domain>/ parses with `mtl fit`: known keys, valid types, importable classes.

`--print_config` runs LightningCLI's full parse and validation (trainer flags, the model's and data's
init args, the platform's own options) without building the model or touching data.
"""

from __future__ import annotations

import contextlib
import io

import pytest
import yaml

from common.training_cli import MtlCLI
from tests.conftest import REPO

RECIPES = sorted(p for p in (REPO / "configs").glob("*/*.yaml") if p.parent.name != "platforms")


def test_every_domain_has_recipes() -> None:
    assert {p.parent.name for p in RECIPES} == {"fwi", "roofnet", "housebrain", "landcover"}


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_recipe_parses(recipe, monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), pytest.raises(SystemExit) as exit_info:
        MtlCLI(args=["fit", "--config", str(recipe), "--print_config"])
    assert exit_info.value.code in (0, None)
    config = yaml.safe_load(printed.getvalue())
    recipe_config = yaml.safe_load(recipe.read_text())
    assert config["name"] == recipe_config["name"]
    assert config["model"]["class_path"] == recipe_config["model"]["class_path"]
