"""The quickstart recipe through the real `mtl` CLI: generate, fit, export, reload, submit."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from common.export import load_bundle
from fwi.data.formats import FwiDataError
from fwi.data.generator import GENERATOR_VERSION
from fwi.submission import write_submission
from tests.conftest import REPO

SMALL = """
trainer:
  max_epochs: 1
  log_every_n_steps: 1
model:
  init_args:
    model_args:
      width: 0.125
data:
  init_args:
    synthetic_samples: 8
    synthetic_samples_per_file: 4
    batch_size: 4
"""


def test_quickstart_fit_export_and_submit(mtl, tmp_path: Path) -> None:
    (tmp_path / "small.yaml").write_text(SMALL)
    mtl(["fit", "--config", REPO / "configs/fwi/quickstart.yaml", "--config", "small.yaml"])

    root = tmp_path / ".cache/mtl/fwi/quickstart/FlatVel-A"
    assert sorted(p.name for p in (root / "data").iterdir()) == ["data1.npy", "data2.npy"]
    run = tmp_path / "runs/fwi/quickstart"
    assert (run / "checkpoints/last.ckpt").is_file()
    tags = tensorboard_tags(run)
    assert {"val/velocity_true_pred_error", "val/shot_gather"} <= set(tags["images"])
    assert {
        "train/loss",
        "val/mae",
        "val/rmse",
        "val/ssim",
        "val/ssim_reflect",
        "val/mae_ms",
        "val/mae_ms/FlatVel-A",
        "val/rmse/FlatVel-A",
        "val/ssim/FlatVel-A",
    } <= set(tags["scalars"])
    module = load_bundle(run / "export")
    assert torch.isfinite(module.seismic_low[0]) and not torch.isfinite(module.seismic_low[1])
    gathers = np.load(root / "data/data2.npy")
    with torch.no_grad():
        velocity = module(torch.from_numpy(gathers[:2]))
    assert velocity.shape == (2, 1, 70, 70) and velocity.min() >= 1500 and velocity.max() <= 4500
    assert (run / "export/model.fp16.safetensors").is_file()

    trained_on = json.loads((run / "export/training_data.json").read_text())
    assert trained_on["families"] == ["FlatVel-A"] and trained_on["split"]["mode"] == "files"
    assert trained_on["samples"]["train"] == {"FlatVel-A": 4} and trained_on["samples"]["val"] == {
        "FlatVel-A": 4
    }
    assert trained_on["generator_version"] == {"FlatVel-A": GENERATOR_VERSION}
    assert trained_on["normalization"] == "family" and trained_on["seismic_limits"] == "estimate"
    shown = mtl(["fwi", "models", "--bundle", run / "export"]).stdout
    assert (
        f"FlatVel-A; samples train 4, val 4, test 0; split files; generator FlatVel-A v{GENERATOR_VERSION}"
        in shown
    )

    test_dir = tmp_path / "test"
    test_dir.mkdir()
    for i in range(3):
        np.save(test_dir / f"{100 + i}.npy", gathers[i])
    mtl(
        [
            "fwi",
            "submit",
            "--checkpoint",
            run / "export",
            "--test_dir",
            test_dir,
            "--out",
            "sub.csv",
            "--tta",
            "true",
        ]
    )
    rows = list(csv.reader((tmp_path / "sub.csv").open()))
    assert rows[0] == ["oid_ypos", *(f"x_{x}" for x in range(1, 70, 2))]
    assert len(rows) == 1 + 3 * 70 and rows[1][0] == "100_y_0" and rows[-1][0] == "102_y_69"
    values = np.array([row[1:] for row in rows[1:]], dtype=np.float32)
    assert values.min() >= 1500 and values.max() <= 4500

    bad = gathers[0].copy()
    bad[0, 0, 0] = np.nan
    np.save(test_dir / "999.npy", bad)
    with pytest.raises(FwiDataError, match=r"999\.npy: sample 0: 1 NaN/inf value\(s\) in the shot gathers"):
        write_submission(run / "checkpoints/last.ckpt", test_dir, tmp_path / "bad.csv")
    assert not (tmp_path / "bad.csv").exists() and not (tmp_path / "bad.csv.partial").exists()


def tensorboard_tags(run: Path) -> dict[str, list[str]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    return events.Tags()


@pytest.mark.slow
def test_full_quickstart_learns_and_resumes(mtl, tmp_path: Path) -> None:
    """The unchanged recipe (about 4 minutes on a loaded 2-core machine): it trains and resumes."""
    import json

    mtl(["fit", "--config", REPO / "configs/fwi/quickstart.yaml"])
    metrics = json.loads((tmp_path / "runs/fwi/quickstart/export/metrics.json").read_text())
    assert metrics["global_step"] == 60
    assert metrics["val/mae"] < 0.42  # learns something; the mean map scores about 0.25 on these priors
    mtl(
        [
            "fit",
            "--config",
            REPO / "configs/fwi/quickstart.yaml",
            "--ckpt_path",
            "last",
            "--trainer.max_epochs",
            "11",
        ]
    )
    metrics = json.loads((tmp_path / "runs/fwi/quickstart/export/metrics.json").read_text())
    assert metrics["global_step"] == 66 and metrics["epoch"] == 11
