"""The LightningCLI behind `mtl fit|validate|test|predict`, with the platform's run defaults.

Kept apart from `common.cli` so that `mtl <domain> <verb>` and `mtl --help` for domain verbs do not
pay for importing Lightning.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar, RichProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins.io import CheckpointIO
from lightning.pytorch.utilities import rank_zero_info

from common.callbacks import CheckpointExport, MemoryProbe, RunCheckpoint
from common.checkpoint import SafeCheckpointIO, read_checkpoint
from common.errors import user_error_behind
from common.platform import platform_defaults

LAST_CHECKPOINT = "last"
CLI_DESCRIPTION = """mtl: LightningCLI in subclass mode over any LightningModule / LightningDataModule.
Also: mtl export CKPT --out DIR; mtl <domain> <verb> --help."""


def split_model_arguments(arguments: Sequence[str]) -> tuple[list[str], list[str]]:
    """(the other arguments, the `--model...` ones with their values), each in command-line order."""
    others: list[str] = []
    model: list[str] = []
    tokens = iter(arguments)
    for token in tokens:
        if token.startswith(("--model=", "--model.")) and "=" in token:
            model.append(token)
        elif token == "--model" or token.startswith("--model."):
            model.append(token)
            value = next(tokens, None)
            if value is not None:
                model.append(value)
        else:
            others.append(token)
    return others, model


def run_directory(runs_dir: str | Path, name: str) -> Path:
    """Where one named run keeps its logs, checkpoints, config and export."""
    return Path(runs_dir) / name


class MtlCLI(LightningCLI):
    """LightningCLI over any importable LightningModule / LightningDataModule, with run defaults."""

    def __init__(self, args: Sequence[str] | None = None, run: bool = True) -> None:
        self.platform = platform_defaults()
        super().__init__(
            model_class=LightningModule,
            datamodule_class=LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_kwargs={"overwrite": True},
            trainer_defaults={"precision": self.platform.precision, "accelerator": "auto"},
            parser_kwargs={"description": CLI_DESCRIPTION, "parser_mode": "omegaconf"}
            if _has_omegaconf()
            else {"description": CLI_DESCRIPTION},
            args=list(args) if args is not None else None,
            run=run,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--name", type=str | None, default=None, help="Run name: logs in <runs_dir>/<name>."
        )
        parser.add_argument(
            "--runs_dir",
            type=str,
            default=self.platform.runs_dir,
            help="Root of all runs (platform default).",
        )
        parser.add_argument(
            "--checkpoint_every_n_steps",
            type=int,
            default=100,
            help="Save last.ckpt (and a numbered checkpoint) every N optimizer steps.",
        )
        parser.add_argument(
            "--keep_last_checkpoints",
            type=int,
            default=3,
            help="How many numbered step checkpoints to keep besides last.ckpt (-1: all).",
        )
        parser.add_lightning_class_args(MemoryProbe, "memory")
        parser.add_lightning_class_args(CheckpointExport, "export")
        if self.platform.export_dir:
            parser.set_defaults({"export.out_dir": self.platform.export_dir})

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        # The tokens the user typed; a dict or Namespace of arguments (the API's other form) has none.
        if args is None:
            self._command_line = sys.argv[1:]
        else:
            self._command_line = list(args) if isinstance(args, list | tuple) else []
        super().parse_arguments(parser, args)

    # LightningCLI reads a checkpoint file given as ckpt_path to recover hyperparameters; check it
    # first so a truncated or foreign file fails with its name instead of a pickle traceback.
    def _parse_ckpt_path(self) -> None:
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        from_file = bool(ckpt_path) and Path(ckpt_path).is_file()
        if from_file:
            read_checkpoint(ckpt_path)
        super()._parse_ckpt_path()
        if from_file:
            self._reapply_model_arguments(subcommand)

    def _reapply_model_arguments(self, subcommand: str) -> None:
        """Let `--model.*` on the command line win over the checkpoint's hyperparameters.

        Lightning replaces the whole model section with the hyperparameters stored in a checkpoint
        file given as ckpt_path, so `mtl validate --ckpt_path run.ckpt --model.eval_constrained true`
        would silently run without the flag (Lightning-AI/pytorch-lightning#20801, #21455). Here the
        checkpoint still overrides the recipe and the defaults (the weights must fit the model they
        were trained with), and what the user typed for the model overrides the checkpoint.
        """
        others, model_arguments = split_model_arguments(self._command_line)
        values = [a for a in model_arguments if a.startswith(("--model.", "--model="))]
        if not values:  # `--model CLASS` alone: the checkpoint's init args stand
            return
        from_checkpoint = json.dumps(self.config[subcommand]["model"].as_dict())
        self.config = self.parser.parse_args([*others, f"--model={from_checkpoint}", *model_arguments])
        rank_zero_info(
            "mtl: the command line's model arguments override the checkpoint's hyperparameters: "
            + " ".join(model_arguments)
        )

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except ValueError as error:
            # A model or datamodule refusing its arguments: the user's one-line error, not jsonargparse's
            # "Does not validate against any of the Union subtypes" around it.
            cause = user_error_behind(error)
            if cause is None:
                raise
            raise cause from None

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        config = self.config.get(str(self.subcommand), self.config)
        name = config.get("name") or type(self.model).__name__.lower()
        config["name"] = name
        run_dir = self.run_dir = run_directory(config["runs_dir"], name)
        trainer_config = self._get(self.config_init, "trainer", default={})
        if trainer_config.get("default_root_dir") is None:
            # SLURM's pre-emption checkpoints (hpc_ckpt_N.ckpt) land here, beside the run's other files.
            kwargs["default_root_dir"] = str(run_dir)

        if trainer_config.get("logger") in (None, True):
            kwargs["logger"] = TensorBoardLogger(
                save_dir=config["runs_dir"], name=name, version="", default_hp_metric=False
            )
        plugins = _as_list(trainer_config.get("plugins"))
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            kwargs["plugins"] = [*plugins, SafeCheckpointIO()]

        callbacks = _as_list(trainer_config.get("callbacks"))
        # The run's own periodic/last checkpoint is always there unless the recipe brings one that saves
        # `last`; a recipe's extra ModelCheckpoint (e.g. best by val/macro_f1) sits beside it.
        if not any(isinstance(c, ModelCheckpoint) and c.save_last for c in callbacks):
            callbacks.append(
                RunCheckpoint(
                    dirpath=run_dir / "checkpoints",
                    filename="step{step:08d}",
                    auto_insert_metric_name=False,
                    every_n_train_steps=config["checkpoint_every_n_steps"],
                    save_last=True,
                    # "step" is always a monitor candidate: ranking by it keeps the newest K.
                    monitor="step",
                    mode="max",
                    save_top_k=config["keep_last_checkpoints"],
                    save_on_exception=True,
                    # One fixed directory per run: a rerun under the same name overwrites, never last-v1.
                    enable_version_counter=False,
                )
            )
        if not any(isinstance(c, ProgressBar) for c in callbacks) and trainer_config.get(
            "enable_progress_bar", True
        ):
            callbacks.append(RichProgressBar(leave=True))
        kwargs["callbacks"] = callbacks
        return super().instantiate_trainer(**kwargs)

    def _prepare_subcommand_kwargs(self, subcommand: str) -> dict[str, Any]:
        kwargs = super()._prepare_subcommand_kwargs(subcommand)
        if kwargs.get("ckpt_path") == LAST_CHECKPOINT:
            newer = newer_preemption_checkpoint(self.run_dir)
            if newer is not None:
                kwargs["ckpt_path"] = str(newer)
        return kwargs


def newer_preemption_checkpoint(run_dir: Path) -> Path | None:
    """A SLURM pre-emption checkpoint newer than `last.ckpt`, if the job was requeued after one.

    On SIGUSR1 Lightning saves `hpc_ckpt_N.ckpt` in the run directory and requeues; that file is then
    newer than `checkpoints/last.ckpt`, and `--ckpt_path last` must resume from it.
    """
    preemption = sorted(run_dir.glob("hpc_ckpt_*.ckpt"), key=lambda p: p.stat().st_mtime)
    if not preemption:
        return None
    last = run_dir / "checkpoints" / f"{LAST_CHECKPOINT}.ckpt"
    newest = preemption[-1]
    if not last.is_file() or newest.stat().st_mtime > last.stat().st_mtime:
        return newest
    return None


def _has_omegaconf() -> bool:
    try:
        import omegaconf  # noqa: F401
    except ImportError:
        return False
    return True


def _as_list(value: Any) -> list:
    if value is None or value is True or value is False:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]
