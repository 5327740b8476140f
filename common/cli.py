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

import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from common.errors import MissingInputError, UserInputError

COMMAND_GROUP = "mtl.commands"
DEBUG_VARIABLE = "MTL_DEBUG"  # set to 1 to see the traceback behind an `mtl: error:` line
PLATFORM_VERBS = ("curves", "lr-find", "sweep", "runs")


def __getattr__(name: str) -> Any:
    """`common.cli.MtlCLI` without importing Lightning for the commands that do not need it."""
    if name == "MtlCLI":
        from common.training_cli import MtlCLI

        return MtlCLI
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    if args and not as_positional:
        args[0] = verb_spelling(args[0], commands)
    return auto_cli(commands, args=args, parser_class=_prog_parser(prog), as_positional=as_positional)


def verb_spelling(verb: str, commands: dict[str, Any]) -> str:
    """The registered spelling of `verb`: verbs are spelled with hyphens (`import-openfwi`), and the
    underscore spelling (`import_openfwi`, as in Python) means the same verb."""
    if verb in commands:
        return verb
    for candidate in (verb.replace("_", "-"), verb.replace("-", "_")):
        if candidate in commands:
            return candidate
    return verb


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
    """`mtl`: a user's bad input ends in one line, `mtl: error: <file or field>: ...`, and exit status 1.

    Every domain's data and format errors derive from `UserInputError`; the traceback, which for a bad
    input only hides that line, is shown with MTL_DEBUG=1.
    """
    try:
        _dispatch(args)
    except UserInputError as error:
        if os.environ.get(DEBUG_VARIABLE, "") not in ("", "0"):
            raise
        print(f"mtl: error: {error}", file=sys.stderr)
        raise SystemExit(1) from None


def check_config_files(argv: Sequence[str]) -> None:
    """Parse every `--config FILE` as YAML first, so a syntax error names the file and the line.

    (jsonargparse reports it against "<unicode string>", naming no file.)
    """
    import yaml

    for path in config_files(argv):
        file = Path(path)
        if not file.is_file():
            raise MissingInputError(f"{path}: config file not found")
        try:
            yaml.safe_load(file.read_text())
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(error, "problem", None) or str(error)
            raise UserInputError(f"{path}: not valid YAML{where}: {problem}") from None


def config_files(argv: Sequence[str]) -> list[str]:
    """The values of `--config FILE` and `--config=FILE` in a command line (a value may be inline YAML)."""
    found: list[str] = []
    tokens = iter(argv)
    for token in tokens:
        if token == "--config":
            value = next(tokens, None)
        elif token.startswith("--config="):
            value = token.split("=", 1)[1]
        else:
            continue
        if value and not value.lstrip().startswith(("{", "[")) and "\n" not in value:
            found.append(value)
    return found


def _dispatch(args: Sequence[str] | None) -> None:
    argv = list(sys.argv[1:] if args is None else args)
    check_config_files(argv)
    groups = domain_command_groups()
    if argv and argv[0] == "export":
        from common.export import export_checkpoint

        run_commands({"export": export_checkpoint}, argv, prog="mtl", as_positional=True)
        return
    platform_verb = verb_spelling(argv[0], dict.fromkeys(PLATFORM_VERBS)) if argv else None
    if platform_verb in PLATFORM_VERBS:
        from common.platform_verbs import run_platform_verb

        run_platform_verb(platform_verb, argv[1:])
        return
    if argv and argv[0] == "serve":
        from common.serving.server import serve

        run_commands({"serve": serve}, argv, prog="mtl", as_positional=True)
        return
    if argv and argv[0] in groups:
        run_commands(load_domain_commands(groups[argv[0]]), argv[1:], prog=f"mtl {argv[0]}")
        return
    if argv and argv[0] in ("-h", "--help"):
        print(
            "Extra verbs: mtl export CKPT --out DIR; mtl serve BUNDLE [--port 8000]; mtl curves|lr-find|sweep|runs --help; "
            + ", ".join(f"mtl {g} --help" for g in sorted(groups))
        )
    from common.training_cli import MtlCLI

    MtlCLI(args=None if args is None else argv)


if __name__ == "__main__":
    main()
