"""Every use of Lightning's (and torch's) private API in the project, in one file.

Lightning keeps no promise about names that start with an underscore, which is why the project pins
`lightning<2.7`. Everything here is a thin wrapper with the Lightning 2.6 name it relies on in its
docstring, and `tests/common/test_lightning_private.py` checks each against the installed version,
so an upgrade past the pin is this file and its test: run the test, fix what fails, here.

Only torch is imported at module level: the pure model and dataset modules that use the torch helpers
stay free of Lightning; `LightningCLIHooks` is built on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from lightning.pytorch import Trainer
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.cli import LightningCLI


def __getattr__(name: str) -> Any:
    if name == "LightningCLIHooks":
        return _lightning_cli_hooks()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- LightningCLI ---------------------------------------------------------------------------------------


def _lightning_cli_hooks() -> type:
    global _HOOKS_CLASS
    if _HOOKS_CLASS is None:
        from lightning.pytorch.cli import LightningCLI

        class LightningCLIHooks(LightningCLI):
            """LightningCLI with public names for the two private steps `mtl` extends.

            `LightningCLI._parse_ckpt_path` reads the hyperparameters of a checkpoint file given as
            `ckpt_path` into the config; `LightningCLI._prepare_subcommand_kwargs` builds the keyword
            arguments of `trainer.fit/validate/test/predict`. Subclasses override
            `before_checkpoint_hparams`, `after_checkpoint_hparams` and `subcommand_kwargs` instead.
            """

            def before_checkpoint_hparams(self, subcommand: str | None, ckpt_path: Any) -> None:
                """Called before Lightning reads `ckpt_path`'s hyperparameters into the config."""

            def after_checkpoint_hparams(self, subcommand: str | None, ckpt_path: Any) -> None:
                """Called after Lightning has read `ckpt_path`'s hyperparameters into the config."""

            def subcommand_kwargs(self, subcommand: str, kwargs: dict[str, Any]) -> dict[str, Any]:
                """The keyword arguments of `trainer.<subcommand>(...)`, as Lightning built them."""
                return kwargs

            def _parse_ckpt_path(self) -> None:
                subcommand = self.config.get("subcommand")
                ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
                self.before_checkpoint_hparams(subcommand, ckpt_path)
                super()._parse_ckpt_path()
                self.after_checkpoint_hparams(subcommand, ckpt_path)

            def _prepare_subcommand_kwargs(self, subcommand: str) -> dict[str, Any]:
                return self.subcommand_kwargs(subcommand, super()._prepare_subcommand_kwargs(subcommand))

        _HOOKS_CLASS = LightningCLIHooks
    return _HOOKS_CLASS


_HOOKS_CLASS: type | None = None


def cli_section(cli: LightningCLI, config: Any, key: str, default: Any = None) -> Any:
    """`config[<subcommand>][key]` (or `config[key]` without subcommands): `LightningCLI._get`."""
    return cli._get(config, key, default=default)


# -- ModelCheckpoint ------------------------------------------------------------------------------------


def last_global_step_saved(callback: ModelCheckpoint) -> int:
    """The global step of the callback's newest save: `ModelCheckpoint._last_global_step_saved`."""
    return callback._last_global_step_saved


def monitor_candidates(callback: ModelCheckpoint, trainer: Trainer) -> dict[str, torch.Tensor]:
    """The metrics a checkpoint name may use (step, epoch, logged): `ModelCheckpoint._monitor_candidates`."""
    return callback._monitor_candidates(trainer)


def save_last_checkpoint(callback: ModelCheckpoint, trainer: Trainer) -> None:
    """Write `last.ckpt` now: `ModelCheckpoint._save_last_checkpoint`."""
    callback._save_last_checkpoint(trainer, callback._monitor_candidates(trainer))


def save_checkpoint_file(callback: ModelCheckpoint, trainer: Trainer, filepath: str) -> None:
    """Write one checkpoint file, outside the top-k bookkeeping: `ModelCheckpoint._save_checkpoint`."""
    callback._save_checkpoint(trainer, filepath)


# -- Trainer internals ----------------------------------------------------------------------------------


def restore_checkpoint(trainer: Trainer, path: str) -> None:
    """Restore model, optimizer and loop state mid-fit: `trainer._checkpoint_connector.restore`."""
    trainer._checkpoint_connector.restore(path)


def forget_dataloaders(loop: Any) -> None:
    """Make a fit/eval loop rebuild its dataloaders at its next start (`loop._combined_loader`)."""
    loop._combined_loader = None


def ddp_kwargs(strategy: Any) -> dict[str, Any] | None:
    """The keyword arguments a DDPStrategy will give `DistributedDataParallel` (`_ddp_kwargs`), or None.

    Mutating the dict before the strategy wraps the model changes them (e.g. find_unused_parameters).
    """
    kwargs = getattr(strategy, "_ddp_kwargs", None)
    return kwargs if isinstance(kwargs, dict) else None


# -- torch ----------------------------------------------------------------------------------------------


def new_shared_storage(nbytes: int) -> torch.UntypedStorage:
    """Uninitialised storage in shared memory, as `default_collate` allocates a worker's batch.

    `torch.UntypedStorage._new_shared` is what torch's own collate uses; there is no public spelling.
    """
    return torch.UntypedStorage._new_shared(nbytes)


def tensor_version(tensor: torch.Tensor) -> int:
    """The in-place modification counter of a tensor (`Tensor._version`, autograd's own check)."""
    return tensor._version
