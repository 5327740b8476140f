"""One test per private Lightning/torch name the project relies on (common/lightning_private.py).

An upgrade that renames or changes one of them fails here, next to the one wrapper to fix, instead of
somewhere in a domain. Also: the YAML parser mode does not depend on what happens to be installed, and
every run is seeded without a `seed_everything` line in its recipe.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringDataModule, BoringModel
from lightning.pytorch.strategies import DDPStrategy

from common import lightning_private as private
from tests.conftest import REPO

QUIET = dict(enable_progress_bar=False, enable_model_summary=False, logger=False)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> tuple[Trainer, ModelCheckpoint, Path]:
    root = tmp_path_factory.mktemp("fit")
    checkpoint = ModelCheckpoint(dirpath=root / "ckpt", every_n_train_steps=2, save_last=True)
    trainer = Trainer(
        max_steps=3, callbacks=[checkpoint], default_root_dir=root, limit_val_batches=0, **QUIET
    )
    trainer.fit(BoringModel(), BoringDataModule())
    return trainer, checkpoint, root


def test_model_checkpoint_internals(fitted) -> None:
    trainer, checkpoint, root = fitted
    assert private.last_global_step_saved(checkpoint) == 2  # every 2 steps; none at the final step 3
    candidates = private.monitor_candidates(checkpoint, trainer)
    assert int(candidates["step"]) == 3 and "epoch" in candidates

    (root / "ckpt" / "last.ckpt").unlink()
    private.save_last_checkpoint(checkpoint, trainer)
    assert torch.load(root / "ckpt" / "last.ckpt", weights_only=True)["global_step"] == 3  # now

    extra = str(root / "ckpt" / "extra.ckpt")
    before = set(checkpoint.best_k_models)
    private.save_checkpoint_file(checkpoint, trainer, extra)
    assert torch.load(extra, weights_only=True)["global_step"] == 3
    assert set(checkpoint.best_k_models) == before  # outside the top-k bookkeeping


def test_restore_checkpoint_mid_fit(fitted, tmp_path: Path) -> None:
    _, _, root = fitted
    saved = torch.load(root / "ckpt" / "last.ckpt", weights_only=True)["state_dict"]

    class RestoreAtStart(Callback):
        def on_fit_start(self, trainer: Trainer, pl_module: Any) -> None:
            private.restore_checkpoint(trainer, str(root / "ckpt" / "last.ckpt"))
            self.weights = {k: v.clone() for k, v in pl_module.state_dict().items()}

    restore = RestoreAtStart()
    trainer = Trainer(max_steps=1, callbacks=[restore], default_root_dir=tmp_path, limit_val_batches=0,
                      enable_checkpointing=False, **QUIET)  # fmt: skip
    trainer.fit(BoringModel(), BoringDataModule())
    for name, tensor in saved.items():
        torch.testing.assert_close(restore.weights[name], tensor)


def test_forget_dataloaders_makes_the_loop_rebuild_them(fitted) -> None:
    trainer, _, _ = fitted
    loop = trainer.fit_loop
    assert hasattr(loop, "_combined_loader") and loop._combined_loader is not None
    private.forget_dataloaders(loop)
    assert loop._combined_loader is None
    loop.setup_data()
    assert loop._combined_loader is not None


def test_ddp_kwargs_are_the_strategys_own_and_mutable() -> None:
    strategy = DDPStrategy(static_graph=False)
    kwargs = private.ddp_kwargs(strategy)
    assert kwargs == {"static_graph": False}
    kwargs["find_unused_parameters"] = True
    assert private.ddp_kwargs(strategy)["find_unused_parameters"] is True
    assert private.ddp_kwargs(object()) is None


def test_new_shared_storage_is_in_shared_memory() -> None:
    storage = private.new_shared_storage(64)
    assert storage.nbytes() == 64 and storage.is_shared()


def test_tensor_version_counts_in_place_changes() -> None:
    tensor = torch.zeros(3)
    before = private.tensor_version(tensor)
    tensor.add_(1)
    assert private.tensor_version(tensor) == before + 1


def test_cli_hooks_see_the_checkpoint_path_and_the_subcommand_kwargs(tmp_path: Path, monkeypatch) -> None:
    from common.training_cli import MtlCLI

    calls: list[tuple[str, Any]] = []

    class Recording(MtlCLI):
        def before_checkpoint_hparams(self, subcommand, ckpt_path):
            calls.append(("before", subcommand, ckpt_path))
            super().before_checkpoint_hparams(subcommand, ckpt_path)

        def after_checkpoint_hparams(self, subcommand, ckpt_path):
            calls.append(("after", subcommand, ckpt_path))
            super().after_checkpoint_hparams(subcommand, ckpt_path)

        def subcommand_kwargs(self, subcommand, kwargs):
            calls.append(("kwargs", subcommand, sorted(kwargs)))
            section = private.cli_section(self, self.config_init, "trainer")
            calls.append(("section", subcommand, section.get("max_steps")))
            return super().subcommand_kwargs(subcommand, kwargs)

    monkeypatch.chdir(tmp_path)
    args = ["fit", "--model", "lightning.pytorch.demos.boring_classes.BoringModel",
            "--data", "lightning.pytorch.demos.boring_classes.BoringDataModule", "--name", "hooks",
            "--trainer.max_steps", "1", "--trainer.enable_progress_bar", "false",
            "--trainer.limit_val_batches", "0", "--export.enabled", "false"]  # fmt: skip
    Recording(args=args)
    assert calls == [
        ("before", "fit", None),
        ("after", "fit", None),
        ("kwargs", "fit", ["ckpt_path", "datamodule", "model", "weights_only"]),
        ("section", "fit", 1),
    ]


def test_yaml_means_the_same_whatever_is_installed(tmp_path: Path) -> None:
    # No OmegaConf mode, even where omegaconf is installed: "${...}" in a recipe is a plain string.
    from common.training_cli import MtlCLI

    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: runs-${oc.env:USER}\n")
    cli = MtlCLI(
        args=["--config", str(recipe), "--model", "lightning.pytorch.demos.boring_classes.BoringModel",
              "--data", "lightning.pytorch.demos.boring_classes.BoringDataModule"],
        run=False,
    )  # fmt: skip
    assert cli.parser.parser_mode == "yaml"
    assert cli.config["name"] == "runs-${oc.env:USER}"


def test_every_run_is_seeded_without_a_recipe_line() -> None:
    from common.training_cli import MtlCLI

    cli = MtlCLI(
        args=["--model", "lightning.pytorch.demos.boring_classes.BoringModel",
              "--data", "lightning.pytorch.demos.boring_classes.BoringDataModule"],
        run=False,
    )  # fmt: skip
    assert cli.config["seed_everything"] == 0
    recipes = sorted((REPO / "configs").glob("*/*.yaml"))
    assert recipes and not [r for r in recipes if "seed_everything:" in r.read_text()]


PRIVATE_NAMES = (
    "._parse_ckpt_path", "._prepare_subcommand_kwargs", "._get(", "._ddp_kwargs", "_ddp_kwargs\"",
    "._new_shared", "._checkpoint_connector", "._combined_loader", "._last_global_step_saved",
    "._save_last_checkpoint", "._monitor_candidates", "._save_checkpoint(", "._version",
)  # fmt: skip


def test_no_other_file_touches_these_private_names() -> None:
    sources = [
        path
        for package in ("common", "fwi", "roofnet", "housebrain", "landcover", "benchmarks")
        for path in (REPO / package).rglob("*.py")
        if path.name != "lightning_private.py"
    ]
    offenders = [
        f"{path.relative_to(REPO)}: {name}"
        for path in sources
        for name in PRIVATE_NAMES
        if name in path.read_text()
    ]
    assert offenders == []
