"""time_decimation: scipy.signal.decimate's FIR low-pass, applied by the task in training and inference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.signal import decimate

from fwi.data.decimation import decimate_time, energy_above_nyquist


@pytest.mark.parametrize("k", [2, 3, 4])
def test_decimate_time_equals_scipy_decimate(k: int) -> None:
    x = np.random.default_rng(k).standard_normal((2, 5, 1000, 7)).astype(np.float32)
    ours = decimate_time(torch.from_numpy(x), k).numpy()
    np.testing.assert_allclose(ours, decimate(x, k, ftype="fir", axis=-2), atol=1e-5)
    assert ours.shape == (2, 5, -(-1000 // k), 7)


def test_energy_above_nyquist_measures_the_aliased_share() -> None:
    t = np.arange(1000)[None, :, None] * 0.001
    low, high = np.sin(2 * np.pi * 20 * t), 0.5 * np.sin(2 * np.pi * 200 * t)
    assert energy_above_nyquist(low + high, 2) == pytest.approx(0.0, abs=1e-6)  # 200 Hz < 250 Hz
    assert energy_above_nyquist(low + high, 4) == pytest.approx(0.2, abs=1e-3)  # 200 Hz > 125 Hz


def test_task_decimates_training_and_inference_alike(openfwi_root: Path, tmp_path: Path) -> None:
    import lightning.pytorch as pl

    from common.export import export_bundle, load_bundle
    from fwi.data import FwiDataModule
    from fwi.task import VelocityInversionTask
    from fwi.tools import check

    report = check(root=str(openfwi_root / "FlatVel-A"), family="FlatVel-A", decimation=20)
    share = report["families"]["FlatVel-A"]["energy_above_nyquist_k20"]
    assert 0.005 < share < 0.2  # a 15 Hz Ricker has a few % of its energy above 25 Hz
    data = FwiDataModule(
        root=str(openfwi_root / "FlatVel-A"),
        family="FlatVel-A",
        time_decimation=4,
        batch_size=4,
        num_workers=0,
    )
    task = VelocityInversionTask(model_args={"width": 0.125, "n_time": 250}, log_images=False)
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(task, datamodule=data)
    assert int(task.time_decimation) == 4
    bundle = load_bundle(export_bundle(task, tmp_path / "bundle"))
    raw = torch.from_numpy(np.load(openfwi_root / "FlatVel-A/data/data1.npy")[:2])
    with torch.no_grad():
        assert torch.allclose(bundle(raw), task.eval()(raw))  # the bundle decimates raw gathers too
        direct = task.net(_normalised(task, decimate_time(raw, 4)))
        assert torch.allclose(task.normalized_prediction(raw), direct, atol=1e-6)
    wrong = VelocityInversionTask(model_args={"width": 0.125}, log_images=False)
    with pytest.raises(
        ValueError, match=r"model_args.n_time: expected 250 for data time_decimation 4, got 1000"
    ):
        pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False).fit(wrong, datamodule=data)


def _normalised(task, seismic: torch.Tensor) -> torch.Tensor:
    from fwi.data.normalization import normalize_seismic

    low, high = task.limits(None, seismic.shape[0])
    return normalize_seismic(seismic, low, high)
