"""OpenFWI's SSIM, so that our SSIM figures are on the scale of OpenFWI's published table.

OpenFWI's `test.py` scores velocity maps with `pytorch_ssim.SSIM(window_size=11)` (lanl/OpenFWI
`pytorch_ssim.py`, after Po-Hsun Su's pytorch-ssim) on maps moved from [-1, 1] to [0, 1]: an 11x11
Gaussian window with sigma 1.5, convolved with zero padding (so border pixels see zeros), constants
C1 = 0.01^2 and C2 = 0.03^2 (a data range of 1), the SSIM map averaged over every pixel.
torchmetrics' SSIM pads by reflection and crops the border, which scores the same maps 0.02-0.11 lower;
the task keeps it as `ssim_reflect`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import Metric

WINDOW_SIZE, WINDOW_SIGMA = 11, 1.5
C1, C2 = 0.01**2, 0.03**2


def gaussian_window(size: int = WINDOW_SIZE, sigma: float = WINDOW_SIGMA) -> torch.Tensor:
    """(1, 1, size, size) normalised 2-D Gaussian, float64."""
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def openfwi_ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample SSIM (B,) of velocity maps (B, 1, H, W) on [-1, 1], computed as OpenFWI does."""
    x = (pred.double() + 1) / 2
    y = (target.double() + 1) / 2
    window = gaussian_window().to(x.device)

    def blur(image: torch.Tensor) -> torch.Tensor:
        return F.conv2d(image, window, padding=WINDOW_SIZE // 2)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + C1) * (2 * cov + C2)) / ((mu_x**2 + mu_y**2 + C1) * (var_x + var_y + C2))
    return ssim_map.flatten(1).mean(1)


class OpenFwiSSIM(Metric):
    """Mean of `openfwi_ssim` over all samples seen (equal-size maps: OpenFWI's pixel mean)."""

    full_state_update = False
    higher_is_better = True

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        values = openfwi_ssim(pred, target)
        self.total += values.sum()
        self.count += values.numel()

    def compute(self) -> torch.Tensor:
        return (self.total / self.count).float()
