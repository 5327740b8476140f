"""The GPU recipes build: their model and data sections are valid init args (no training here)."""

from __future__ import annotations

import pytest
import yaml

from common.export import build_module
from fwi.data import FwiDataModule
from tests.conftest import REPO

OPENFWI_RECIPES = sorted(p.stem for p in (REPO / "configs/fwi/openfwi").glob("*.yaml"))


@pytest.mark.parametrize("recipe", ["quickstart", "inversionnet", "specproj_unet", "kaggle"])
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
    with pytest.raises(ValueError, match=r"data.mirror_middle: expected one of shift, keep, got 'middle'"):
        FwiDataModule(mirror_middle="middle")
    with pytest.raises(ValueError, match=r"data.split: expected one of files, kfold, leave_family_out"):
        FwiDataModule(split="random")
    with pytest.raises(ValueError, match=r"data.holdout_family"):
        FwiDataModule(split="leave_family_out")


def test_openfwi_recipes_follow_openfwis_protocol() -> None:
    """One recipe per family: L1 only, no mirror, official split and limits, batch 256, AdamW 1e-4/1e-4."""
    from fwi.data.families import FAMILIES

    assert sorted(name.lower() for name in FAMILIES) == OPENFWI_RECIPES
    for recipe in OPENFWI_RECIPES:
        config = yaml.safe_load((REPO / f"configs/fwi/openfwi/{recipe}.yaml").read_text())
        assert config["name"] == f"fwi/openfwi/{recipe}" and config["trainer"]["max_epochs"] == 120
        model, data = config["model"]["init_args"], config["data"]["init_args"]
        assert (model["l1_weight"], model["l2_weight"], model["lr"], model["weight_decay"]) == (
            1,
            0,
            1e-4,
            1e-4,
        )
        assert data["family"].lower() == recipe and data["mirror_probability"] == 0
        assert (data["split"], data["seismic_limits"], data["batch_size"]) == ("openfwi", "openfwi", 256)
        build_module(config["model"])
        FwiDataModule(**data)
