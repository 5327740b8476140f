"""`mtl curves` on any run: panels per metric from the TensorBoard event files, local or by URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.cli import main
from common.curves import metric_name, panels_for
from common.run_files import read_scalars
from tests.common.logging_models import LOGGING_FIT


def test_tags_are_grouped_into_one_panel_per_metric() -> None:
    tags = ["train/loss", "val/loss", "train/loss_epoch", "val/acc", "train/acc", "lr-AdamW", "memory/rss"]
    assert metric_name("train/loss_epoch") == "loss" and metric_name("lr-AdamW") is None
    assert panels_for(tags) == {
        "loss": ["train/loss", "train/loss_epoch", "val/loss"],
        "acc": ["train/acc", "val/acc"],
    }
    assert panels_for(tags, ["val/*", "lr-*"]) == {
        "loss": ["val/loss"],
        "acc": ["val/acc"],
        "lr-AdamW": ["lr-AdamW"],
    }


def test_curves_of_a_resumed_run_by_path_and_by_file_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    main(["fit", *LOGGING_FIT, "--name", "c", "--trainer.max_steps", "20"])
    main(["fit", *LOGGING_FIT, "--name", "c", "--trainer.max_steps", "40", "--ckpt_path", "last"])
    run = tmp_path / "runs/c"
    assert len(list(run.glob("events.out.tfevents.*"))) == 2
    scalars = read_scalars(f"file://{run}")
    steps = [point.step for point in scalars["train/loss"]]
    assert steps == sorted(steps) and steps[0] < 20 < steps[-1]  # one curve across both invocations
    assert [p.step for p in scalars["val/loss"]] == [15, 31]

    capsys.readouterr()
    main(["curves", "--run_dir", str(run), "--out", "plots/curves.png"])
    assert "wrote plots/curves.png: loss" in capsys.readouterr().out
    assert (tmp_path / "plots/curves.png").stat().st_size > 10_000
    main(["curves", "--run-dir", f"file://{run}", "--out", "url.png", "--tags", '["val/*"]'])
    assert (tmp_path / "url.png").stat().st_size > 5_000


@pytest.mark.parametrize(
    ("run_dir", "message"),
    [("missing", "missing: no such run directory"), (".", ": no TensorBoard event files")],
)
def test_curves_without_a_run_is_one_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, run_dir: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        main(["curves", "--run_dir", run_dir])
    error = capsys.readouterr().err
    assert stopped.value.code == 1 and error.startswith("mtl: error: ") and message in error
    assert error.count("\n") == 1 and not (tmp_path / "curves.png").exists()
