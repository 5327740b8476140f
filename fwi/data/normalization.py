"""The reference normalisation (OpenFWI): signed log1p then min-max to [-1, 1]; velocity 1500-4500 m/s.

Per-family limits are raw amplitude (min, max) per family, either OpenFWI's fixed constants
(`OPENFWI_SEISMIC_LIMITS`, what OpenFWI's models and published numbers use) or estimated from the
training files (`seismic_limits`, for data OpenFWI never saw). The datamodule picks one and the task
copies them into its buffers, so every checkpoint and export carries them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from fwi.data.families import FAMILIES, VELOCITY_MAX, VELOCITY_MIN
from fwi.data.formats import FilePair

# Raw seismic (data_min, data_max) per family: lanl/OpenFWI `dataset_config.json` (commit 4875480),
# which OpenFWI's train.py/test.py feed to `log_transform` and `MinMaxNormalize`.
OPENFWI_SEISMIC_LIMITS: dict[str, tuple[float, float]] = {
    "FlatVel-A": (-26.95, 52.77),
    "FlatVel-B": (-27.17, 56.05),
    "CurveVel-A": (-27.11, 55.10),
    "CurveVel-B": (-29.04, 57.03),
    "FlatFault-A": (-26.10, 50.86),
    "FlatFault-B": (-24.86, 50.28),
    "CurveFault-A": (-26.48, 52.32),
    "CurveFault-B": (-24.93, 50.98),
    "Style-A": (-24.96, 48.93),
    "Style-B": (-23.76, 46.01),
}
# The union over the ten families (-29.04, 57.03): what a Kaggle test file, family unknown, gets.
OPENFWI_UNION_LIMITS = (
    min(low for low, _ in OPENFWI_SEISMIC_LIMITS.values()),
    max(high for _, high in OPENFWI_SEISMIC_LIMITS.values()),
)
SEISMIC_LIMIT_MODES = ("estimate", "openfwi")


def openfwi_seismic_limits() -> tuple[np.ndarray, np.ndarray]:
    """OpenFWI's constants as (low, high) arrays in `FAMILIES` order."""
    low = np.array([OPENFWI_SEISMIC_LIMITS[name][0] for name in FAMILIES], dtype=np.float64)
    high = np.array([OPENFWI_SEISMIC_LIMITS[name][1] for name in FAMILIES], dtype=np.float64)
    return low, high


def signed_log1p(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.log1p(torch.abs(x))


def normalize_seismic(seismic: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """(B, 5, T, R) raw amplitudes -> [-1, 1]; `low`/`high` are raw limits, shape (B,) or scalar."""
    x = signed_log1p(seismic.float())
    lo = signed_log1p(low.float()).reshape(-1, 1, 1, 1)
    hi = signed_log1p(high.float()).reshape(-1, 1, 1, 1)
    return 2.0 * (x - lo) / (hi - lo).clamp_min(1e-6) - 1.0


def normalize_velocity(velocity: torch.Tensor) -> torch.Tensor:
    """m/s in [1500, 4500] -> [-1, 1]."""
    return 2.0 * (velocity - VELOCITY_MIN) / (VELOCITY_MAX - VELOCITY_MIN) - 1.0


def denormalize_velocity(velocity: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> m/s."""
    return (velocity + 1.0) * 0.5 * (VELOCITY_MAX - VELOCITY_MIN) + VELOCITY_MIN


def seismic_limits(
    pairs: Sequence[FilePair], samples_per_file: int | None = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Raw amplitude (min, max) per family in `FAMILIES` order, NaN for families not in `pairs`.

    Reads `samples_per_file` evenly spaced samples of each file through a memory map (None: all),
    so the statistics of a full OpenFWI family cost seconds, not a pass over 100 GB.
    """
    low = np.full(len(FAMILIES), np.nan, dtype=np.float64)
    high = np.full(len(FAMILIES), np.nan, dtype=np.float64)
    for pair in pairs:
        array = np.load(pair.seismic, mmap_mode="r", allow_pickle=False)
        n = array.shape[0]
        if samples_per_file is None or samples_per_file >= n:
            rows = range(n)
        else:
            rows = np.unique(np.linspace(0, n - 1, samples_per_file).round().astype(int))
        f = FAMILIES.index(pair.family)
        for row in rows:
            sample = np.asarray(array[row], dtype=np.float32)
            finite = sample[np.isfinite(sample)]
            if finite.size:
                low[f] = np.nanmin([low[f], finite.min()])
                high[f] = np.nanmax([high[f], finite.max()])
    return low, high
