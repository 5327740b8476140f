"""The LightningCLI behind `mtl fit|validate|test|predict`, with the platform's run defaults.

Kept apart from `common.cli` so that `mtl <domain> <verb>` and `mtl --help` for domain verbs do not
pay for importing Lightning.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar, RichProgressBar
from lightning.pytorch.cli import LightningArgumentParser
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins.io import CheckpointIO
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from common.callbacks import CheckpointExport, MemoryProbe, RunCheckpoint
from common.callbacks.remote_run_sync import RemoteRunSync
from common.checkpoint import SafeCheckpointIO, read_checkpoint
from common.errors import user_error_behind
from common.lightning_private import LightningCLIHooks, cli_section
from common.platform import platform_defaults
from common.run_directory import (
    check_fresh_run,
    filesystem,
    is_url,
    join,
    remove_stale_temporaries,
    run_url,
    spelled_like,
)
from common.storage import abort_incomplete_uploads, check_writable, local_cache

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


class MtlCLI(LightningCLIHooks):
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
            # jsonargparse's plain YAML mode, always: OmegaConf's mode (interpolation) only where
            # omegaconf happened to be installed would make one recipe mean two things.
            parser_kwargs={"description": CLI_DESCRIPTION, "parser_mode": "yaml"},
            # Every run is seeded (0 unless the recipe or --seed_everything says otherwise).
            seed_everything_default=0,
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
        parser.add_argument(
            "--overwrite",
            type=bool,
            default=False,
            help="fit: a run of the same name is moved aside to <name>.archived-<time>, not resumed.",
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
    def before_checkpoint_hparams(self, subcommand: str | None, ckpt_path: Any) -> None:
        if _is_local_file(ckpt_path):
            read_checkpoint(ckpt_path)

    def after_checkpoint_hparams(self, subcommand: str | None, ckpt_path: Any) -> None:
        if subcommand and _is_local_file(ckpt_path):
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
        run_dir = self.run_dir = run_url(config["runs_dir"], name)
        remote = is_url(run_dir)
        # Where files that need a local path (TensorBoard's event files, config, reports) are written;
        # for a remote run, a local cache that RemoteRunSync uploads.
        log_dir = local_cache(run_dir) if remote else None
        if rank_zero_only.rank == 0:
            if self.platform.warning and config["runs_dir"] == self.platform.runs_dir:
                print(f"\nmtl: WARNING: {self.platform.warning}\n", file=sys.stderr, flush=True)
            if remote:
                check_writable(run_dir)  # before anything else: one clear message, no training first
            if self.subcommand == "fit":
                self._prepare_run_directory(run_dir, name, config, log_dir)
        trainer_config = cli_section(self, self.config_init, "trainer", default={})
        if trainer_config.get("default_root_dir") is None:
            # SLURM's pre-emption checkpoints (hpc_ckpt_N.ckpt) land here, beside the run's other files.
            kwargs["default_root_dir"] = run_dir

        if trainer_config.get("logger") in (None, True):
            kwargs["logger"] = (
                TensorBoardLogger(save_dir=str(log_dir), name="", version="", default_hp_metric=False)
                if remote
                else TensorBoardLogger(
                    save_dir=config["runs_dir"], name=name, version="", default_hp_metric=False
                )
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
                    dirpath=join(run_dir, "checkpoints"),
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
        if remote:
            callbacks.append(RemoteRunSync(log_dir, run_dir))
        kwargs["callbacks"] = callbacks
        return super().instantiate_trainer(**kwargs)

    def _prepare_run_directory(self, run_dir: str, name: str, config: Any, cache: Path | None) -> None:
        """Before anything is written: never train a fresh run over another one; drop stale temporaries.

        Runs on rank zero only (the other ranks of a multi-process job start later or at the same
        time, and only rank zero writes the run's files).
        """
        if config.get("ckpt_path") is None:
            fresh = check_fresh_run(run_dir, name, overwrite=bool(config.get("overwrite")))
            if fresh.archived_to:
                rank_zero_info(
                    f"mtl: --overwrite: the previous run {name!r} was moved to {fresh.archived_to}"
                )
            if cache is not None and cache.is_dir():  # an earlier run's cached files are not this run's
                shutil.rmtree(cache)
        for stale in [*remove_stale_temporaries(run_dir), *abort_incomplete_uploads(run_dir)]:
            rank_zero_info(f"mtl: removed {stale}, left by a checkpoint write that was interrupted")

    def subcommand_kwargs(self, subcommand: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        if kwargs.get("ckpt_path") == LAST_CHECKPOINT:
            resumed = last_checkpoint(self.run_dir)
            if resumed is not None:  # else Lightning's own lookup (a recipe's ModelCheckpoint elsewhere)
                kwargs["ckpt_path"] = resumed
        return kwargs


def last_checkpoint(run_dir: str) -> str | None:
    """The checkpoint `--ckpt_path last` resumes: `checkpoints/last.ckpt`, or a newer SLURM pre-emption one.

    On SIGUSR1 Lightning saves `hpc_ckpt_N.ckpt` in the run directory and requeues; that file is then
    newer than `checkpoints/last.ckpt` and is the one to resume. An exception's checkpoint
    (`exception-step*.ckpt`) is never a candidate. `run_dir` is a local path or an fsspec URL, and
    the answer is spelled the same way. (Lightning 2.6's own "last" lookup lists the checkpoint
    directory through fsspec but then looks the listed names up on the local disk, so in a bucket it
    finds nothing: see ModelCheckpoint's `_find_last_checkpoints` in Lightning's source.)
    Object stores keep modification times to the second; on a tie the pre-emption checkpoint wins
    (SIGUSR1 comes after the regular save it ties with, or within steps of it).
    """
    fs, root = filesystem(run_dir)
    fs.invalidate_cache()
    last = join(root, "checkpoints", f"{LAST_CHECKPOINT}.ckpt")
    has_last = fs.isfile(last)
    preemption = sorted(fs.glob(join(root, "hpc_ckpt_*.ckpt")), key=lambda p: (_modified(fs, p), _number(p)))
    if preemption and (not has_last or _modified(fs, preemption[-1]) >= _modified(fs, last)):
        return spelled_like(run_dir, preemption[-1])
    return spelled_like(run_dir, last) if has_last else None


def _number(path: str) -> int:
    digits = "".join(c for c in path.rsplit("/", 1)[-1] if c.isdigit())
    return int(digits) if digits else 0


def _modified(fs: Any, path: str) -> float:
    return fs.modified(path).timestamp()


def _is_local_file(path: Any) -> bool:
    return bool(path) and "://" not in str(path) and Path(path).is_file()


def _as_list(value: Any) -> list:
    if value is None or value is True or value is False:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]
