"""Kaggle GWI submission: stream `<oid>.npy` test files through a trained model into the CSV format.

oid_ypos,x_1,x_3,...,x_69
<oid>_y_0,<v(0,1)>,<v(0,3)>,...      70 rows per test file, velocities in m/s (float32)
"""

from __future__ import annotations

import contextlib
import csv
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from common.errors import UserInputError
from fwi.data.datasets import KaggleTestDataset, mirror_sample
from fwi.data.families import VELOCITY_MAX, VELOCITY_MIN, WIDTH
from fwi.data.formats import kaggle_test_files

COLUMNS = ["oid_ypos", *(f"x_{x}" for x in range(1, WIDTH, 2))]
RANGE_TOLERANCE = 1e-2  # m/s, float rounding at the ends of tanh's range


class SubmissionError(UserInputError):
    """A prediction that must not be submitted (NaN, out of range); names the test file."""


def load_task(checkpoint: str | Path, device: str = "cpu"):
    """A VelocityInversionTask (or ensemble) in eval mode from a `.ckpt` or an export bundle
    (`common.export.load_module`, the platform's one loader)."""
    from common.export import load_module

    return load_module(checkpoint, default_class_path="fwi.task.VelocityInversionTask").to(device).eval()


def predict_velocity(task, seismic: torch.Tensor, tta: bool = False) -> torch.Tensor:
    """(B, 5, 1000, 70) raw gathers -> (B, 70, 70) float32 m/s, optionally mirror-TTA averaged."""
    device = next(task.parameters()).device
    seismic = seismic.to(device)
    fp16 = device.type == "cuda" and bool(task.float16_inputs)
    autocast = torch.autocast("cuda", dtype=torch.float16) if fp16 else contextlib.nullcontext()
    with torch.no_grad(), autocast:
        velocity = task(seismic).float()
        if tta:
            mirrored, _ = mirror_sample(seismic)
            velocity = 0.5 * (velocity + torch.flip(task(mirrored).float(), dims=(-1,)))
    return velocity[:, 0].float()


def check_prediction(velocity: np.ndarray, oid: str) -> None:
    if not np.isfinite(velocity).all():
        raise SubmissionError(f"{oid}.npy: prediction has NaN/inf values; refusing to write the submission")
    low, high = float(velocity.min()), float(velocity.max())
    if low < VELOCITY_MIN - RANGE_TOLERANCE or high > VELOCITY_MAX + RANGE_TOLERANCE:
        raise SubmissionError(
            f"{oid}.npy: prediction spans {low:.1f}..{high:.1f} m/s, outside [{VELOCITY_MIN:.0f}, {VELOCITY_MAX:.0f}]"
        )


def write_rows(writer, oid: str, velocity: np.ndarray) -> None:
    for y in range(velocity.shape[0]):
        writer.writerow([f"{oid}_y_{y}", *(f"{v:.6g}" for v in velocity[y, 1::2])])


def write_submission(
    checkpoint: str | Path,
    test_dir: str | Path,
    out: str | Path,
    tta: bool = False,
    batch_size: int = 16,
    num_workers: int = 0,
    device: str = "cpu",
) -> Path:
    """Write the CSV to `out` (via `out.partial`, moved into place only when every row is valid)."""
    task = load_task(checkpoint, device)
    loader = DataLoader(
        KaggleTestDataset(kaggle_test_files(test_dir)), batch_size=batch_size, num_workers=num_workers
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    try:
        with partial.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(COLUMNS)
            for batch in loader:
                velocity = predict_velocity(task, batch["seismic"], tta=tta).cpu().numpy().astype(np.float32)
                for oid, field in zip(batch["oid"], velocity, strict=True):
                    check_prediction(field, oid)
                    write_rows(writer, oid, field)
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return out
