"""`mtl lr_find`: Lightning's learning-rate finder on any recipe's model and data.

    mtl lr_find --config configs/landcover/quickstart.yaml --out lr_find.png
    mtl lr_find --config configs/fwi/quickstart.yaml --num_training 60 --data.init_args.batch_size 8

Every argument that is not one of the finder's own (`--out`, `--min_lr`, `--max_lr`,
`--num_training`) goes to the same parser as `mtl fit`, so recipes, platform profiles and overrides
work as they do for training. The finder trains `num_training` steps with the learning rate growing
exponentially from `min_lr` to `max_lr` (Lightning's `Tuner.lr_find`), in a temporary run directory:
nothing under the recipe's runs directory is written or changed. It prints the suggested rate and
plots the smoothed loss against the rate.
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

from common.errors import UserInputError

PROG = "mtl lr_find"


def unbiased_lr_finder_losses(losses: list[float], beta: float = 0.98) -> list[float]:
    """Undo an off-by-one in Lightning 2.6's LR finder smoothing.

    Its callback divides the running average by 1 - beta**(global_step + 1) after the step counter has
    already moved on, so point k is divided by 1 - beta**(k + 2) instead of 1 - beta**(k + 1): the first
    points come out about half the true loss and rise for tens of steps, and the steepest-descent
    suggestion lands on that artefact. Rescaling each point by the ratio of the two factors fixes it.
    """
    return [loss * (1 - beta ** (k + 2)) / (1 - beta ** (k + 1)) for k, loss in enumerate(losses)]


def steepest_descent_lr(
    lrs: list[float], losses: list[float], skip_begin: int = 10, skip_end: int = 1
) -> float | None:
    """The learning rate where the loss falls fastest per decade of learning rate.

    Lightning's own suggestion differentiates with respect to the learning rate itself, so on its
    logarithmic grid the noise between the closely spaced small rates wins; per log10(lr) it does not.
    """
    import numpy as np

    x = np.log10(np.asarray(lrs, dtype=float))[skip_begin : len(lrs) - skip_end]
    y = np.asarray(losses, dtype=float)[skip_begin : len(losses) - skip_end]
    keep = np.isfinite(y)
    if keep.sum() < 3:
        return None
    x, y = x[keep], y[keep]
    return float(10 ** x[int(np.argmin(np.gradient(y, x)))])


def finder_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Lightning's learning-rate finder on a recipe. Other arguments go to `mtl fit`'s parser "
        "(--config FILE, --model.init_args.x ...).",
    )
    parser.add_argument("--out", type=Path, default=Path("lr_find.png"), help="PNG of loss against lr.")
    parser.add_argument("--min_lr", type=float, default=1e-6, help="Smallest learning rate tried.")
    parser.add_argument("--max_lr", type=float, default=1.0, help="Largest learning rate tried.")
    parser.add_argument(
        "--num_training", type=int, default=100, help="Steps, one learning rate each, growing exponentially."
    )
    return parser


def lr_find_command(argv: Sequence[str]) -> float | None:
    """`mtl lr_find [finder options] FIT_ARGUMENTS...`."""
    options, fit_arguments = finder_parser().parse_known_args(list(argv))
    return lr_find(
        fit_arguments,
        out=options.out,
        min_lr=options.min_lr,
        max_lr=options.max_lr,
        num_training=options.num_training,
    )


def lr_find(
    fit_arguments: Sequence[str],
    out: Path = Path("lr_find.png"),
    min_lr: float = 1e-6,
    max_lr: float = 1.0,
    num_training: int = 100,
) -> float | None:
    """Run the finder on the model and data of `fit_arguments` (as for `mtl fit`); return the suggestion.

    The suggestion is the steepest descent of the smoothed loss per decade of learning rate; put it in
    the recipe's learning rate (`model.init_args.lr`).
    """
    if not 0 < min_lr < max_lr:
        raise UserInputError(f"--min_lr {min_lr} and --max_lr {max_lr}: expected 0 < min_lr < max_lr")
    if num_training < 5:
        raise UserInputError(f"--num_training {num_training}: expected at least 5 steps")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from lightning.pytorch.tuner import Tuner

    from common.training_cli import MtlCLI

    with tempfile.TemporaryDirectory(prefix="mtl-lr-find-") as scratch:
        # As many steps as the finder takes, whatever the recipe's epochs (schedules need a finite total);
        # no logger, no export, and checkpoints only in the scratch directory.
        arguments = [*fit_arguments, "--runs_dir", scratch, "--name", "lr_find"]
        arguments += ["--trainer.logger", "false", "--export.enabled", "false"]
        arguments += ["--trainer.max_epochs", "-1", "--trainer.max_steps", str(num_training)]
        with warnings.catch_warnings():  # the arguments are the user's command line, not a mistake
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
            cli = MtlCLI(args=arguments, run=False)
        finder = Tuner(cli.trainer).lr_find(
            cli.model,
            datamodule=cli.datamodule,
            min_lr=min_lr,
            max_lr=max_lr,
            num_training=num_training,
            update_attr=False,
        )
    if finder is None or not finder.results.get("lr"):
        raise UserInputError(
            "lr_find: the finder recorded no steps (does the training loader yield batches?)"
        )
    lrs, losses = finder.results["lr"], unbiased_lr_finder_losses(finder.results["loss"])
    suggestion = steepest_descent_lr(lrs, losses)
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.semilogx(lrs, losses)
    if suggestion is not None:
        axes.axvline(suggestion, color="red", linestyle="--", label=f"suggested lr {suggestion:.2g}")
        axes.legend()
    axes.set_xlabel("learning rate")
    axes.set_ylabel("training loss (smoothed)")
    axes.set_title(" ".join(fit_arguments)[:80])
    out = Path(out)
    if out.parent != Path():
        out.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)
    print(
        f"suggested lr: {suggestion} (plot: {out}); set it as the model's learning rate (model.init_args.lr)"
    )
    return suggestion
