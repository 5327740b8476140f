"""The landcover quickstart end to end through the real `mtl` command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from common.curves import curves
from common.errors import UserInputError
from common.export import load_bundle
from landcover.data.formats import DEFAULT_BANDS, DEFAULT_CLASSES, dn_to_reflectance, reflectance_to_dn
from landcover.tools import map_scene, predict
from tests.conftest import REPO
from tests.landcover.test_rasters import write_tif

QUICKSTART = REPO / "configs/landcover/quickstart.yaml"


def test_quickstart_trains_exports_and_plots_curves(
    mtl, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)  # the in-process verbs below cache statistics in ./.cache
    mtl(["fit", "--config", QUICKSTART, "--trainer.max_epochs", "3", "--data.synthetic_samples", "480"])
    run = tmp_path / "runs/landcover/quickstart"
    data = tmp_path / ".cache/mtl/landcover/quickstart"
    assert (run / "checkpoints/last.ckpt").is_file()
    assert len(list((data / "train").glob("*.npz"))) > 250  # generated into the cwd-relative root

    metrics = json.loads((run / "export/metrics.json").read_text())
    assert metrics["val/macro_f1"] > 0.5, metrics  # 8 classes: chance is about 0.125

    task = load_bundle(run / "export")
    assert task.class_names == list(DEFAULT_CLASSES)
    # The normalisation statistics of the training split travel in the bundle.
    assert torch.all(task.band_std < 1) and task.band_mean[3] > task.band_mean[0]  # NIR brighter than blue
    with np.load(next((data / "val").glob("water_*.npz")), allow_pickle=False) as npz:
        image = torch.from_numpy(npz["image"])[None]
    logits = task(image)
    assert logits.shape == (1, len(DEFAULT_CLASSES))

    # The bundle alone reproduces the validation accuracy of the run (same statistics, same weights).
    summary = predict(bundle=run / "export", root=data, split="val", out=tmp_path / "val.csv")
    assert summary["accuracy"] == pytest.approx(metrics["val/acc"], abs=1e-6)
    rows = (tmp_path / "val.csv").read_text().splitlines()
    assert len(rows) == 1 + summary["samples"] and rows[0].startswith("source,label,prediction,p_water")
    # The run's checkpoint works as well as the bundle (one loader, common.export.load_module).
    from_checkpoint = predict(
        bundle=run / "checkpoints/last.ckpt", root=data, split="val", out=tmp_path / "c.csv"
    )
    assert from_checkpoint["accuracy"] == summary["accuracy"]

    # A scene tiled from six val patches (as DN, baseline 04.00 offset) and one empty window.
    files = sorted((data / "val").glob("*.npz"))[:6]
    tiles = [np.load(f, allow_pickle=False)["image"] for f in files]
    dn = [reflectance_to_dn(tile, offset=1000) for tile in tiles] + [np.zeros_like(tiles[0], np.uint16)]
    dn += [dn[0]]  # 2 x 4 windows
    scene = np.concatenate([np.concatenate(dn[:4], axis=2), np.concatenate(dn[4:], axis=2)], axis=1)
    scene_path = write_tif(tmp_path / "scene.tif", scene, list(DEFAULT_BANDS))
    map_scene(bundle=run / "export", scene=scene_path, out=tmp_path / "map.tif", size=32)
    with torch.no_grad():
        expected = task(torch.from_numpy(np.stack([dn_to_reflectance(d, 1000) for d in dn]))).argmax(1)
    with rasterio.open(tmp_path / "map.tif") as result:
        assert result.crs.to_epsg() == 32627 and result.res == (320.0, 320.0)  # one map pixel per window
        classes = result.read(1).reshape(-1)
        assert result.tags()["class_0"] == "water"
    assert classes[6] == 255  # the empty window
    assert classes[[0, 1, 2, 3, 4, 5, 7]].tolist() == expected[[0, 1, 2, 3, 4, 5, 7]].tolist()

    # The platform's `mtl curves` on a landcover run: the lab's loss and accuracy panels among them
    # (the CLI verb runs in tests/landcover/test_slurm.py).
    capsys.readouterr()
    curves(run_dir=str(run), out=tmp_path / "curves.png")
    panels = capsys.readouterr().out.split(": ", 1)[1].strip().split(", ")
    assert panels[0] == "loss" and {"acc", "macro_f1"} <= set(panels), panels
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    with pytest.raises(UserInputError, match="no TensorBoard event files"):
        curves(run_dir=str(tmp_path), out=tmp_path / "none.png")
