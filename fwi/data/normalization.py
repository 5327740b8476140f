"""The reference normalisation (OpenFWI): signed log1p then min-max to [-1, 1]; velocity 1500-4500 m/s.

Per-family limits are the minimum and maximum raw amplitude of that family's training files; they
are computed once by the datamodule (`seismic_limits`) and copied into the task's buffers, so every
checkpoint and export carries them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from fwi.data.families import FAMILIES, VELOCITY_MAX, VELOCITY_MIN
from fwi.data.formats import FilePair


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
