"""`mtl lr_find` over any recipe: Lightning's finder, the suggestion and its plot, nothing left in runs/."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from common.cli import main
from common.lr_find import steepest_descent_lr, unbiased_lr_finder_losses
from tests.common.logging_models import LOGGING_FIT


def test_suggestion_is_the_steepest_descent_per_decade_of_unbiased_losses() -> None:
    lrs = np.logspace(-6, 0, 61)
    losses = 2.0 - np.tanh(np.log10(lrs) + 3) + np.where(np.arange(61) < 12, 0.01 * (-1) ** np.arange(61), 0)
    assert steepest_descent_lr(lrs.tolist(), losses.tolist()) == pytest.approx(1e-3)
    # Lightning's first smoothed point is (1 - 0.98) * loss / (1 - 0.98**2): the fix gives back the loss.
    assert unbiased_lr_finder_losses([0.02 * 2.0 / (1 - 0.98**2)])[0] == pytest.approx(2.0)


def test_lr_find_on_a_recipe_plots_and_writes_no_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model:\n  class_path: tests.common.logging_models.LoggingBoringModel\n")
    main(["lr_find", "--config", str(recipe), *LOGGING_FIT[2:], "--num_training", "20", "--out", "lr.png"])
    printed = capsys.readouterr().out
    suggestion = float(printed.split("suggested lr: ")[1].split()[0])
    assert 1e-6 < suggestion < 1
    assert (tmp_path / "lr.png").stat().st_size > 10_000
    assert not (tmp_path / "runs").exists()  # the finder's own checkpoints went to a scratch directory


def test_bad_finder_range_is_one_error_line(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["lr_find", *LOGGING_FIT, "--min_lr", "0.1", "--max_lr", "0.01"])
    assert stopped.value.code == 1
    assert (
        capsys.readouterr().err
        == "mtl: error: --min_lr 0.1 and --max_lr 0.01: expected 0 < min_lr < max_lr\n"
    )
