"""The task: normalisation buffers, loss going down, float16 inputs, submission checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer

from fwi.data import FwiDataModule, ShotGatherDataset, discover_pairs
from fwi.data.generator import GENERATOR_VERSION
from fwi.data.normalization import normalize_velocity, seismic_limits
from fwi.submission import SubmissionError, check_prediction
from fwi.task import VelocityInversionTask


def small_task(**kwargs) -> VelocityInversionTask:
    return VelocityInversionTask(model_args={"width": 0.125}, log_images=False, **kwargs)


def test_training_loss_goes_down(openfwi_root: Path) -> None:
    torch.manual_seed(0)
    pairs = discover_pairs(openfwi_root)
    task = small_task(lr=2e-3, l2_weight=1.0)
    low, high = seismic_limits(pairs)
    task.seismic_low.copy_(torch.as_tensor(low))
    task.seismic_high.copy_(torch.as_tensor(high))
    dataset = ShotGatherDataset([p for p in pairs if p.family == "FlatVel-A"])
    batch = torch.utils.data.default_collate([dataset[i] for i in range(4)])
    optimizer = task.configure_optimizers()
    target = normalize_velocity(batch["velocity"])
    losses = []
    for _ in range(15):
        loss, _ = task._loss(task.normalized_prediction(batch["seismic"], batch["family"]), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_limits_are_per_family_with_a_global_fallback() -> None:
    task = small_task()
    with pytest.raises(RuntimeError, match="no seismic normalisation limits"):
        task.limits(None, 1)
    task.seismic_low[0], task.seismic_high[0] = -10.0, 20.0  # FlatVel-A
    task.seismic_low[6], task.seismic_high[6] = -30.0, 40.0  # CurveFault-A
    low, high = task.limits(torch.tensor([0, 6, -1, 3]), 4)
    assert low.tolist() == [-10.0, -30.0, -30.0, -30.0] and high.tolist() == [20.0, 40.0, 40.0, 40.0]
    global_task = small_task(normalization="global")
    global_task.load_state_dict(task.state_dict())
    assert global_task.limits(torch.tensor([0]), 1)[0].tolist() == [-30.0]


def test_float16_cache_trains_and_marks_the_model(openfwi_root: Path, tmp_path: Path) -> None:
    from fwi.tools import cache

    written = cache(root=str(openfwi_root), out=str(tmp_path / "half"))  # the `mtl fwi cache` verb
    assert len(written) == 10 and cache(root=str(openfwi_root), out=str(tmp_path / "half")) == []  # kept
    pairs = discover_pairs(tmp_path / "half")
    assert {p.seismic_dtype for p in pairs} == {"float16"} and len(pairs) == 5
    original = np.load(openfwi_root / "FlatVel-A/data/data1.npy")
    cached = np.load(tmp_path / "half/FlatVel-A/data/data1.npy")
    np.testing.assert_allclose(cached.astype(np.float32), original, rtol=1e-3, atol=1e-3)
    assert np.load(tmp_path / "half/FlatVel-A/model/model1.npy").dtype == np.float32

    datamodule = FwiDataModule(root=str(tmp_path / "half"), batch_size=2, num_workers=0, max_samples=2)
    task = small_task()
    trainer = Trainer(
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        limit_val_batches=0,
        accelerator="cpu",
        enable_model_summary=False,
    )
    trainer.fit(task, datamodule=datamodule)
    assert bool(task.float16_inputs) and torch.isfinite(task.seismic_low[[0, 6]]).all()
    described = task.training_data_description()  # handed over by fit, as the limits are
    assert described["float16_inputs"] is True and described["samples_used"]["train"] == 2
    assert set(described["generator_version"].values()) == {GENERATOR_VERSION}  # the cache kept it


def test_cache_refuses_nan(openfwi_root: Path, tmp_path: Path) -> None:
    from fwi.data.cache import convert_to_float16
    from fwi.data.formats import FwiDataError
    from tests.fwi.conftest import copy_tree

    root = copy_tree(openfwi_root / "FlatVel-A", tmp_path / "raw" / "FlatVel-A")
    data = np.load(root / "data/data2.npy")
    data[3, 1, 2, 3] = np.inf
    np.save(root / "data/data2.npy", data)
    with pytest.raises(FwiDataError, match=r"data2\.npy: sample 3: NaN/inf"):
        convert_to_float16(tmp_path / "raw", tmp_path / "half")
    assert not list((tmp_path / "half").rglob("data2.npy*"))  # no half-written file left behind


def test_submission_refuses_bad_predictions() -> None:
    good = np.full((70, 70), 3000.0, dtype=np.float32)
    check_prediction(good, "ok")
    with pytest.raises(SubmissionError, match=r"123\.npy: prediction has NaN"):
        check_prediction(np.where(np.eye(70, dtype=bool), np.nan, good), "123")
    with pytest.raises(SubmissionError, match=r"7\.npy: prediction spans 3000\.0\.\.5000\.0 m/s"):
        check_prediction(np.where(np.eye(70, dtype=bool), 5000.0, good), "7")


def test_per_family_metrics_match_the_overall_ones_for_one_family() -> None:
    from fwi.metrics import OpenFwiSSIM
    from fwi.task import PerFamilyMetrics

    torch.manual_seed(0)
    target = torch.rand(6, 1, 70, 70) * 2 - 1
    pred = (target + 0.1 * torch.randn_like(target)).clamp(-1, 1)
    family = torch.tensor([0, 0, 0, 6, 6, -1])
    metric = PerFamilyMetrics()
    metric.update(pred, target, family)
    table = metric.compute()
    flat = pred[:3] - target[:3]
    assert table[0, 0].item() == pytest.approx(flat.abs().mean().item(), rel=1e-5)
    assert table[1, 0].item() == pytest.approx(flat.pow(2).mean().sqrt().item(), rel=1e-5)
    ssim = OpenFwiSSIM()
    ssim.update(pred[3:5], target[3:5])
    assert table[2, 6].item() == pytest.approx(ssim.compute().item(), rel=1e-4)
    assert torch.isnan(table[:, 1]).all()  # FlatVel-B: no samples; the unknown family (-1) is ignored
