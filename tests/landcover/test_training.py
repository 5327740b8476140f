"""Training options through the real command line (in this process): losses, optimisers, schedules,
early stopping, gradient accumulation, mixed precision, the weighted sampler, TensorBoard reports and
`mtl test`."""

from __future__ import annotations

import re

import json
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from common.cli import main
from landcover.data.formats import DEFAULT_CLASSES
from tests.conftest import REPO

QUICKSTART = REPO / "configs/landcover/quickstart.yaml"
TINY = [
    "--config", str(QUICKSTART),
    "--data.synthetic_samples", "160", "--data.synthetic_size", "16", "--data.batch_size", "16",
    "--model.init_args.width", "4", "--model.init_args.depth", "2", "--model.init_args.example_size", "16",
    "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
]  # fmt: skip


def test_focal_sgd_plateau_accumulation_and_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    early_stopping = {
        "class_path": "lightning.pytorch.callbacks.EarlyStopping",
        "init_args": {"monitor": "val/macro_f1", "mode": "max", "patience": 1, "min_delta": 1.0},
    }
    main(
        [
            "fit", *TINY, "--name", "landcover/options", "--trainer.max_epochs", "6",
            "--model.init_args.loss", "focal", "--model.init_args.class_weighting", "balanced",
            "--model.init_args.label_smoothing", "0.1", "--model.init_args.optimizer", "sgd",
            "--model.init_args.scheduler", "plateau", "--model.init_args.lr", "0.05",
            "--trainer.accumulate_grad_batches", "2", "--data.sampler", "weighted",
            "--trainer.precision", "bf16-mixed",  # CPU autocast: the path a GPU run takes with bf16
            "--trainer.callbacks", json.dumps([early_stopping]),
        ]
    )  # fmt: skip
    run = tmp_path / "runs/landcover/options"
    state = torch.load(run / "checkpoints/last.ckpt", weights_only=True, map_location="cpu")
    # min_delta 1.0 cannot be met: early stopping ends the run after epoch 0 plus `patience` epochs.
    assert state["epoch"] == 2
    assert (
        state["global_step"] == 2 * 4
    )  # 108 patches: 7 batches per epoch, accumulated by 2 -> 4 optimizer steps
    weights = state["state_dict"]["class_weight"]
    counts = state["state_dict"]["train_class_counts"]
    assert counts.sum() == 108 and torch.argmin(weights) == torch.argmax(
        counts
    )  # commonest class: lowest weight
    assert state["lr_schedulers"][0]["mode"] == "max"

    events = EventAccumulator(str(run), size_guidance={"images": 0, "tensors": 0})
    events.Reload()
    assert "val/confusion_matrix" in events.Tags()["images"]
    assert any("per_class_report" in tag for tag in events.Tags()["tensors"])
    assert {"val/macro_f1", "val/acc", "val/precision", "val/recall", "val/f1_urban"} <= set(
        events.Tags()["scalars"]
    )

    main(["test", *TINY, "--name", "landcover/options", "--ckpt_path", str(run / "checkpoints/last.ckpt")])
    report = json.loads((run / "test_report.json").read_text())
    assert [row["class"] for row in report["classes"]] == list(DEFAULT_CLASSES)
    assert sum(row["support"] for row in report["classes"]) == 26 == sum(map(sum, report["confusion_matrix"]))
    assert (run / "test_confusion_matrix.png").stat().st_size > 5_000


@pytest.mark.parametrize("recipe", ["baseline_cnn", "resnet18", "efficientnet_b0"])
def test_recipes_build_their_model_and_data(recipe: str) -> None:
    from common.cli import MtlCLI

    cli = MtlCLI(args=["--config", str(REPO / f"configs/landcover/{recipe}.yaml")], run=False)
    expected = "BaselineCNN" if recipe == "baseline_cnn" else "TimmClassifier"
    assert type(cli.model.model).__name__ == expected
    assert cli.model.eval()(torch.zeros(1, 6, 32, 32)).shape == (1, 8)
    assert cli.datamodule.synthetic_samples > 0


def test_staged_scaling_climbs_the_datamodule_knobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    scaling = {
        "class_path": "common.callbacks.StagedScaling",
        "init_args": {
            "ladder": {"max_samples": [16, 48], "batch_size": [4, 8]},
            "steps_per_stage": 2,
            "memory_budget_gib": 64,
        },
    }
    main(["fit", *TINY, "--name", "landcover/scaling", "--trainer.max_steps", "2",
          "--trainer.callbacks", json.dumps([scaling])])  # fmt: skip
    summary = json.loads((tmp_path / "runs/landcover/scaling/scaling.json").read_text())
    assert [stage["status"] for stage in summary["stages"]] == ["passed"] * 3
    assert summary["chosen"]["max_samples"] == 48 and summary["chosen"]["batch_size"] in (4, 8)


def test_model_and_data_must_agree_on_bands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *TINY, "--trainer.max_steps", "1", "--model.init_args.bands", '["B04", "B08"]'])
    assert exit_info.value.code == 1
    error = capsys.readouterr().err
    assert re.search(
        r"^mtl: error: model.init_args.bands: \['B04', 'B08'\], but the data has \['B02'", error, re.M
    )
    assert "Traceback" not in error


def test_lr_find_plots_and_suggests_where_the_loss_falls_fastest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    from landcover.tools import lr_find, steepest_descent_lr, unbiased_lr_finder_losses

    lrs = np.logspace(-6, 0, 61)
    losses = 2.0 - np.tanh(np.log10(lrs) + 3) + np.where(np.arange(61) < 12, 0.01 * (-1) ** np.arange(61), 0)
    assert steepest_descent_lr(lrs.tolist(), losses.tolist()) == pytest.approx(1e-3)
    # Lightning's first smoothed point is (1 - 0.98) * loss / (1 - 0.98**2): the fix gives back the loss.
    assert unbiased_lr_finder_losses([0.02 * 2.0 / (1 - 0.98**2)])[0] == pytest.approx(2.0)

    monkeypatch.chdir(tmp_path)
    suggestion = lr_find(recipe=QUICKSTART, out=tmp_path / "lr.png", num_training=30, overrides=TINY[2:])
    assert suggestion is not None and 1e-6 < suggestion < 1
    assert (tmp_path / "lr.png").stat().st_size > 10_000


def test_resume_continues_the_same_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from landcover.tools import read_scalars

    monkeypatch.chdir(tmp_path)
    args = ["fit", *TINY, "--name", "landcover/resume", "--trainer.log_every_n_steps", "1"]
    main([*args, "--trainer.max_steps", "4"])
    main([*args, "--trainer.max_steps", "9", "--ckpt_path", "last"])
    run = tmp_path / "runs/landcover/resume"
    state = torch.load(run / "checkpoints/last.ckpt", weights_only=True, map_location="cpu")
    assert state["global_step"] == 9 and state["state_dict"]["band_std"].lt(1).all()
    steps = [step for step, _ in read_scalars(run)["train/loss"]]
    assert steps[0] < 4 < steps[-1] == 8  # one curve across both invocations
