"""Time decimation of shot gathers with an anti-aliasing low-pass, and how much energy it removes.

`decimate_time(seismic, k)` is scipy.signal.decimate(x, k, ftype="fir") along time, in torch (so it
runs on the model's device inside the task): a Hamming-windowed FIR low-pass of 20k + 1 taps with
cutoff at the new Nyquist frequency (`firwin(20k + 1, 1/k)`), applied centred (zero phase) with zero
padding, then every k-th sample from the first. 1000 steps -> ceil(1000 / k). Keeping every k-th
sample without the low-pass folds the energy above 500/k Hz back into the band;
`energy_above_nyquist` measures that share for a given k so the choice is measured, not guessed.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.signal import firwin

from common.errors import UserInputError
from fwi.data.families import TIME_STEP_S


def lowpass_taps(k: int) -> np.ndarray:
    """scipy.signal.decimate's FIR: 20k + 1 Hamming-windowed taps, cutoff 1/k of Nyquist."""
    return firwin(20 * k + 1, 1.0 / k, window="hamming")


def decimated_length(n_time: int, k: int) -> int:
    return -(-n_time // k)


def decimate_time(seismic: torch.Tensor, k: int) -> torch.Tensor:
    """(..., T, R) gathers -> (..., ceil(T / k), R): anti-aliasing low-pass, then every k-th step."""
    if k == 1:
        return seismic
    if k < 1:
        raise UserInputError(f"time_decimation must be >= 1, got {k}")
    shape = seismic.shape
    n_time, n_receivers = shape[-2], shape[-1]
    taps = torch.as_tensor(lowpass_taps(k), dtype=torch.float32, device=seismic.device)
    traces = seismic.float().reshape(-1, n_time, n_receivers).transpose(1, 2).reshape(-1, 1, n_time)
    half = (taps.numel() - 1) // 2
    filtered = F.conv1d(traces, taps.flip(0).reshape(1, 1, -1), padding=half)[..., ::k]
    out = filtered.reshape(-1, n_receivers, filtered.shape[-1]).transpose(1, 2)
    return out.reshape(*shape[:-2], filtered.shape[-1], n_receivers).to(seismic.dtype)


def energy_above_nyquist(seismic: np.ndarray, k: int, dt: float = TIME_STEP_S) -> float:
    """Share of the spectral energy (|FFT|^2 along time) above 1 / (2 k dt): what plain slicing aliases."""
    spectrum = np.abs(np.fft.rfft(np.asarray(seismic, dtype=np.float64), axis=-2)) ** 2
    frequencies = np.fft.rfftfreq(seismic.shape[-2], d=dt)
    total = spectrum.sum()
    above = spectrum[..., frequencies > 0.5 / (k * dt), :].sum()
    return float(above / total) if total > 0 else 0.0
