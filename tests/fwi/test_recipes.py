"""The GPU recipes build: their model and data sections are valid init args (no training here)."""

from __future__ import annotations

import pytest
import yaml

from common.export import build_module
from fwi.data import FwiDataModule
from tests.conftest import REPO


@pytest.mark.parametrize("recipe", ["quickstart", "inversionnet", "specproj_unet"])
def test_recipe_sections_instantiate(recipe: str) -> None:
    config = yaml.safe_load((REPO / f"configs/fwi/{recipe}.yaml").read_text())
    assert config["name"] == f"fwi/{recipe}"
    task = build_module(config["model"])
    assert (
        type(task).__name__ == "VelocityInversionTask"
        and task.hparams.model == config["model"]["init_args"]["model"]
    )
    assert config["data"]["class_path"] == "fwi.data.FwiDataModule"
    datamodule = FwiDataModule(**config["data"]["init_args"])
    assert datamodule.batch_size == config["data"]["init_args"]["batch_size"]


def test_datamodule_names_a_wrong_field() -> None:
    with pytest.raises(
        ValueError, match=r"FwiDataModule.mirror_middle: expected one of shift, keep, got 'middle'"
    ):
        FwiDataModule(mirror_middle="middle")
    with pytest.raises(
        ValueError, match=r"FwiDataModule.split: expected one of files, kfold, leave_family_out"
    ):
        FwiDataModule(split="random")
    with pytest.raises(ValueError, match=r"FwiDataModule.holdout_family"):
        FwiDataModule(split="leave_family_out")
