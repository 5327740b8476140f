"""`mtl`: LightningCLI in subclass mode, plus `mtl export` and the domains' own verbs.

    mtl fit --config configs/fwi/quickstart.yaml [--config configs/platforms/colab-t4.yaml] [--ckpt_path last]
    mtl export runs/fwi/quickstart/checkpoints/last.ckpt --out bundle/
    mtl fwi generate --family FlatVel-A --samples 100 --out data/flatvel

Every fit gets, unless the config names its own: a TensorBoard logger writing straight into
`<runs_dir>/<name>/` (one stable directory, so a resumed run continues the same curves), a
`ModelCheckpoint` in `<runs_dir>/<name>/checkpoints/` that saves `last.ckpt` every N steps and at the
end (so `--ckpt_path last` in a later invocation resumes), the resolved config in the run directory,
a rich progress bar, checkpoint IO that writes atomically and reads with `weights_only=True`, and the
`MemoryProbe` and `CheckpointExport` callbacks (configure them under `memory:` and `export:`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar, RichProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins.io import CheckpointIO

from common.callbacks import CheckpointExport, MemoryProbe, RunCheckpoint
from common.checkpoint import CheckpointError, SafeCheckpointIO, read_checkpoint
from common.export import ExportError
from common.platform import platform_defaults

COMMAND_GROUP = "mtl.commands"
LAST_CHECKPOINT = "last"


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
            parser_kwargs={"description": __doc__, "parser_mode": "omegaconf"}
            if _has_omegaconf()
            else {"description": __doc__},
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

    # LightningCLI reads a checkpoint file given as ckpt_path to recover hyperparameters; check it
    # first so a truncated or foreign file fails with its name instead of a pickle traceback.
    def _parse_ckpt_path(self) -> None:
        subcommand = self.config.get("subcommand")
        if subcommand:
            ckpt_path = self.config[subcommand].get("ckpt_path")
            if ckpt_path and Path(ckpt_path).is_file():
                read_checkpoint(ckpt_path)
        super()._parse_ckpt_path()

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


def domain_command_groups() -> dict[str, Any]:
    """Entry points of the `mtl.commands` group: domain name -> loader of its verbs."""
    return {ep.name: ep for ep in entry_points(group=COMMAND_GROUP)}


def load_domain_commands(entry_point: Any) -> dict[str, Callable[..., Any]]:
    """Verbs of one domain: its entry point is a dict of functions or a callable returning one."""
    commands = entry_point.load()
    return commands() if callable(commands) else dict(commands)


def run_commands(
    commands: dict[str, Callable[..., Any]], args: Sequence[str], prog: str, as_positional: bool = False
) -> Any:
    """Run one verb of a group with jsonargparse, which builds `--help` from signatures and docstrings.

    Domain verbs take every parameter as an option (`--out DIR`), which reads well in recipes and notes.
    """
    from jsonargparse import auto_cli

    args = [_underscore_option(arg) for arg in args]
    return auto_cli(commands, args=args, parser_class=_prog_parser(prog), as_positional=as_positional)


def _underscore_option(arg: str) -> str:
    """`--test-dir x` and `--test-dir=x` mean `--test_dir`: both spellings are common in shell habits."""
    if not arg.startswith("--") or arg == "--":
        return arg
    name, sep, value = arg[2:].partition("=")
    return f"--{name.replace('-', '_')}{sep}{value}"


def _prog_parser(prog: str) -> type:
    from jsonargparse import ArgumentParser

    class ProgParser(ArgumentParser):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("prog", prog)
            super().__init__(*args, **kwargs)

    return ProgParser


def main(args: Sequence[str] | None = None) -> None:
    try:
        _dispatch(args)
    except (CheckpointError, ExportError) as error:
        # Errors about a user's file: the message names it; a traceback would only hide that.
        print(f"mtl: error: {error}", file=sys.stderr)
        raise SystemExit(1) from None


def _dispatch(args: Sequence[str] | None) -> None:
    argv = list(sys.argv[1:] if args is None else args)
    groups = domain_command_groups()
    if argv and argv[0] == "export":
        from common.export import export_checkpoint

        run_commands({"export": export_checkpoint}, argv, prog="mtl", as_positional=True)
        return
    if argv and argv[0] in groups:
        run_commands(load_domain_commands(groups[argv[0]]), argv[1:], prog=f"mtl {argv[0]}")
        return
    if argv and argv[0] in ("-h", "--help"):
        print(
            "Extra verbs: mtl export CKPT --out DIR; " + ", ".join(f"mtl {g} --help" for g in sorted(groups))
        )
    MtlCLI(args=None if args is None else argv)


if __name__ == "__main__":
    main()
