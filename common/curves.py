"""`mtl curves`: training curves of any run, drawn from its TensorBoard event files.

    mtl curves --run_dir runs/landcover/quickstart --out curves.png
    mtl curves --run_dir runs/fwi/quickstart --tags '["*/loss*", "val/mae"]'

One panel per metric, with its stages side by side: `train/loss`, `train/loss_epoch` and `val/loss`
share the "loss" panel, `train/acc` and `val/acc` the "acc" panel, so every recipe of every domain
gets its loss and quality curves without naming them. The x axis is the optimizer step (a resumed
run continues the same curve).
"""

from __future__ import annotations

import fnmatch
import math
import os
from pathlib import Path

from common.errors import UserInputError
from common.run_files import ScalarPoint, read_scalars

STAGES = ("train", "val", "test")
STEP_SUFFIXES = ("_epoch", "_step")


def metric_name(tag: str) -> str | None:
    """The metric a stage tag measures: "train/loss_epoch" -> "loss", "val/macro_f1" -> "macro_f1".

    None for tags outside the train/val/test stages (learning rates, memory, data summaries).
    """
    stage, sep, name = tag.partition("/")
    if not sep or stage not in STAGES:
        return None
    for suffix in STEP_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def panels_for(tags: list[str], patterns: list[str] | None = None) -> dict[str, list[str]]:
    """Metric -> the tags drawn in its panel; losses first, then the other metrics by name.

    With `patterns` (shell-style, e.g. "*/loss*"), only matching tags; a matching tag outside the
    stages gets a panel of its own.
    """
    chosen = (
        [t for t in tags if any(fnmatch.fnmatchcase(t, p) for p in patterns)]
        if patterns
        else [t for t in tags if metric_name(t) is not None]
    )
    panels: dict[str, list[str]] = {}
    for tag in sorted(chosen, key=lambda t: (STAGES.index(t.split("/")[0]) if metric_name(t) else 9, t)):
        panels.setdefault(metric_name(tag) or tag, []).append(tag)
    return dict(sorted(panels.items(), key=lambda item: (not item[0].startswith("loss"), item[0])))


def curves(
    run_dir: str, out: Path = Path("curves.png"), tags: list[str] | None = None, columns: int = 3
) -> Path:
    """Plot a run's logged metrics against the optimizer step, one panel per metric, into a PNG.

    Args:
        run_dir: the run directory (holds events.out.tfevents.*), local or an fsspec URL.
        out: PNG file to write.
        tags: shell-style patterns of the tags to draw (default: every train/, val/ and test/ scalar).
        columns: panels per row.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scalars = read_scalars(run_dir)
    panels = panels_for(sorted(scalars), tags)
    if not panels:
        wanted = tags or [f"{stage}/*" for stage in STAGES]
        raise UserInputError(f"{run_dir}: no logged scalar matches {wanted}; found {sorted(scalars)}")
    columns = max(1, min(columns, len(panels)))
    rows = math.ceil(len(panels) / columns)
    figure, axes_grid = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows), squeeze=False)
    flat_axes = [axes for row in axes_grid for axes in row]
    for axes, (metric, panel_tags) in zip(flat_axes, panels.items(), strict=False):
        for tag in panel_tags:
            draw_series(axes, tag, scalars[tag])
        axes.set_title(metric)
        axes.set_xlabel("optimizer step")
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
    for axes in flat_axes[len(panels) :]:
        axes.set_visible(False)
    figure.suptitle(str(run_dir))
    figure.tight_layout()
    out = Path(out)
    if out.parent != Path():
        out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(os.fspath(out), dpi=100)
    plt.close(figure)
    print(f"wrote {out}: {', '.join(panels)}")
    return out


def draw_series(axes, tag: str, points: list[ScalarPoint]) -> None:
    """Per-step series as a thin line, per-epoch and validation series as markers joined by lines."""
    steps = [p.step for p in points]
    values = [p.value for p in points]
    dense = len(points) > 50 and tag.startswith("train/") and not tag.endswith("_epoch")
    axes.plot(steps, values, "-" if dense else "o-", label=tag, alpha=0.6 if dense else 1.0, markersize=3)
