"""Images for TensorBoard: velocity maps side by side and shot gathers (CHW float in [0, 1])."""

from __future__ import annotations

import numpy as np
import torch


def _colour(values: np.ndarray, cmap: str = "viridis") -> np.ndarray:
    from matplotlib import colormaps

    return colormaps[cmap](np.clip(values, 0.0, 1.0))[..., :3]


def velocity_panel(true: torch.Tensor, pred: torch.Tensor) -> np.ndarray:
    """Rows of [true | predicted | |error|] for (N, 1, 70, 70) maps on [-1, 1] -> (3, N*70, 3*70+4)."""
    rows = []
    for t, p in zip(true[:, 0].detach().cpu().numpy(), pred[:, 0].detach().cpu().numpy(), strict=True):
        gap = np.ones((t.shape[0], 2, 3))
        error = np.abs(p - t) / 2.0
        rows.append(
            np.concatenate([_colour((t + 1) / 2), gap, _colour((p + 1) / 2), gap, _colour(error, "magma")], 1)
        )
    return np.concatenate(rows, axis=0).transpose(2, 0, 1).astype(np.float32)


def gather_image(seismic: torch.Tensor) -> np.ndarray:
    """The five gathers (5, T, 70) of one sample side by side, clipped at the 98th percentile -> (1, T, 5*70)."""
    gathers = seismic.detach().float().cpu().numpy()
    clip = float(np.percentile(np.abs(gathers), 98)) or 1.0
    image = np.concatenate(list(np.clip(gathers / clip, -1, 1)), axis=1)
    return ((image + 1) / 2)[None].astype(np.float32)
