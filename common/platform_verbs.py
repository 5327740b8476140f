"""`mtl curves|lr-find|sweep|runs`: verbs for the runs of any recipe of any domain.

`curves` takes only options of its own; `lr-find` and `sweep` parse theirs and hand every other
argument (`--config FILE`, `--model.init_args.lr 0.01`, ...) to the same parser as `mtl fit`;
`runs` has the sub-verbs `status` and `compare`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def run_platform_verb(verb: str, args: Sequence[str]) -> Any:
    """Run `mtl <verb> ARGS...`; each verb lives in its own module, imported only when used."""
    if verb == "curves":
        from common.cli import run_commands
        from common.curves import curves

        return run_commands({"curves": curves}, [verb, *args], prog="mtl")
    if verb == "lr-find":
        from common.lr_find import lr_find_command

        return lr_find_command(args)
    if verb == "sweep":
        from common.sweep import sweep_command

        return sweep_command(args)
    if verb == "runs":
        from common.runs import runs_command

        return runs_command(args)
    raise ValueError(f"not a platform verb: {verb}")
