"""Kaggle GWI submission: stream `<oid>.npy` test files through a trained model into the CSV format.

oid_ypos,x_1,x_3,...,x_69
<oid>_y_0,<v(0,1)>,<v(0,3)>,...      70 rows per test file, velocities in m/s (float32)

With `uncertainty`, a per-pixel standard deviation map (m/s, float16, (70, 70)) per test file goes
into `<out>.std.npz`, one entry per oid (`np.load(path)[oid]`): the members' spread for an ensemble
bundle, the spread of N MC-dropout passes otherwise (`fwi.uncertainty`). The CSV is the same with or
without it (the model's ordinary prediction, not the MC mean). When the bundle holds a fitted sigma
factor (`sigma_calibration.json`, `mtl fwi calibrate --write_bundle true`) the maps are multiplied
by it (`calibrated_sigma=False` writes the raw spread). Both files are written as `.partial` and
moved into place only when every test file has been written.
"""

from __future__ import annotations

import contextlib
import csv
import os
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from common.errors import UserInputError
from fwi.data.datasets import KaggleTestDataset, mirror_sample
from fwi.data.families import VELOCITY_MAX, VELOCITY_MIN, WIDTH
from fwi.data.formats import kaggle_test_files

COLUMNS = ["oid_ypos", *(f"x_{x}" for x in range(1, WIDTH, 2))]
STD_SUFFIX = ".std.npz"
STD_DTYPE = np.float16  # sigma in m/s: 3 significant digits (0.5 m/s at 1000 m/s) is plenty
RANGE_TOLERANCE = 1e-2  # m/s, float rounding at the ends of tanh's range


class SubmissionError(UserInputError):
    """A prediction that must not be submitted (NaN, out of range); names the test file."""


def load_task(checkpoint: str | Path, device: str = "cpu"):
    """A VelocityInversionTask (or ensemble) in eval mode from a `.ckpt` or an export bundle
    (`common.export.load_module`, the platform's one loader)."""
    from common.export import load_module

    return load_module(checkpoint, default_class_path="fwi.task.VelocityInversionTask").to(device).eval()


def _inference_context(task) -> contextlib.AbstractContextManager:
    """fp16 autocast on CUDA for a model trained on float16 gathers, nothing otherwise."""
    device = next(task.parameters()).device
    fp16 = device.type == "cuda" and bool(task.float16_inputs)
    return torch.autocast("cuda", dtype=torch.float16) if fp16 else contextlib.nullcontext()


def predict_velocity(task, seismic: torch.Tensor, tta: bool = False) -> torch.Tensor:
    """(B, 5, 1000, 70) raw gathers -> (B, 70, 70) float32 m/s, optionally mirror-TTA averaged."""
    seismic = seismic.to(next(task.parameters()).device)
    with torch.no_grad(), _inference_context(task):
        velocity = task(seismic).float()
        if tta:
            mirrored, _ = mirror_sample(seismic)
            velocity = 0.5 * (velocity + torch.flip(task(mirrored).float(), dims=(-1,)))
    return velocity[:, 0].float()


def uncertainty_method(task, checkpoint: str | Path, passes: int) -> str:
    """ "ensemble" for an ensemble bundle, "mc_dropout" for a model with dropout; refuses anything else."""
    from fwi.ensemble import VelocityEnsemble
    from fwi.uncertainty import has_dropout

    if isinstance(task, VelocityEnsemble):
        return "ensemble"
    if not has_dropout(task):
        raise SubmissionError(
            f"--checkpoint {checkpoint}: --uncertainty true needs an ensemble bundle (mtl fwi ensemble) or a "
            f"model with dropout layers for MC dropout; this {task.hparams.get('model', type(task).__name__)} "
            "has none (train with model_args dropout > 0, or pass --uncertainty false)"
        )
    if passes < 2:
        raise SubmissionError(f"--mc_passes: expected at least 2 MC-dropout passes, got {passes}")
    return "mc_dropout"


def predict_std(task, seismic: torch.Tensor, method: str, passes: int, tta: bool = False) -> torch.Tensor:
    """(B, 5, 1000, 70) raw gathers -> (B, 70, 70) float32 sigma in m/s.

    `ensemble`: the population std over the members' maps; `mc_dropout`: over `passes` passes with
    only the dropout layers active. With `tta` each member map / pass is first averaged with its
    mirrored survey's map flipped back, as the prediction is.
    """
    from fwi.uncertainty import mc_dropout_samples

    seismic = seismic.to(next(task.parameters()).device)

    def samples(gathers: torch.Tensor) -> torch.Tensor:
        if method == "ensemble":
            return task.member_predictions(gathers).float()
        return mc_dropout_samples(task, gathers, passes)

    with torch.no_grad(), _inference_context(task):
        maps = samples(seismic)
        if tta:
            mirrored, _ = mirror_sample(seismic)
            maps = 0.5 * (maps + torch.flip(samples(mirrored), dims=(-1,)))
    return maps.float().std(0, correction=0)[:, 0]


@contextlib.contextmanager
def std_archive(path: Path) -> Iterator[zipfile.ZipFile]:
    """A `.npz` archive written entry by entry (constant memory), as `np.savez_compressed` lays it out."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        yield archive


def write_std(archive: zipfile.ZipFile, oid: str, sigma: np.ndarray) -> None:
    with archive.open(f"{oid}.npy", "w", force_zip64=True) as handle:
        np.lib.format.write_array(handle, np.ascontiguousarray(sigma, dtype=STD_DTYPE), allow_pickle=False)


def std_path(out: str | Path) -> Path:
    """`<out>.std.npz` beside the CSV (`submission.csv` -> `submission.csv.std.npz`)."""
    out = Path(out)
    return out.with_name(out.name + STD_SUFFIX)


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
    uncertainty: bool = False,
    mc_passes: int = 16,
    refine: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    calibrated_sigma: bool = True,
) -> Path:
    """Write the CSV to `out` (via `out.partial`, moved into place only when every row is valid), and
    with `uncertainty` the sigma maps to `<out>.std.npz` the same way, times the bundle's fitted sigma
    factor unless `calibrated_sigma` is False. `refine(seismic, velocity)`, given, turns each batch's
    predictions (B, 70, 70) m/s into the ones written (`fwi.physics_refinement`)."""
    from fwi.uncertainty import bundle_sigma_scale

    task = load_task(checkpoint, device)
    method = uncertainty_method(task, checkpoint, mc_passes) if uncertainty else None
    sigma_scale = bundle_sigma_scale(checkpoint, method) if method and calibrated_sigma else 1.0
    loader = DataLoader(
        KaggleTestDataset(kaggle_test_files(test_dir)), batch_size=batch_size, num_workers=num_workers
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    std_partial = std_path(out).with_name(std_path(out).name + ".partial")
    try:
        with partial.open("w", newline="") as handle, contextlib.ExitStack() as stack:
            archive = stack.enter_context(std_archive(std_partial)) if method else None
            writer = csv.writer(handle)
            writer.writerow(COLUMNS)
            for batch in loader:
                velocity = predict_velocity(task, batch["seismic"], tta=tta)
                if refine is not None:
                    velocity = refine(batch["seismic"].to(velocity.device).float(), velocity)
                velocity = velocity.cpu().numpy().astype(np.float32)
                sigma = None
                if archive is not None:
                    sigma = predict_std(task, batch["seismic"], method, mc_passes, tta) * sigma_scale
                    sigma = sigma.cpu().numpy()
                for i, (oid, field) in enumerate(zip(batch["oid"], velocity, strict=True)):
                    check_prediction(field, oid)
                    write_rows(writer, oid, field)
                    if archive is not None:
                        write_std(archive, oid, sigma[i])
        if method:
            os.replace(std_partial, std_path(out))
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
        std_partial.unlink(missing_ok=True)
    return out
