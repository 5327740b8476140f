"""HeatKernelNet: InversionNet's encoder-decoder, then edge-preserving diffusion steps as the decoder's refinement.

The network predicts a first map u_0 = tanh(head(features)) and K diffusion steps refine it,

    u_{k+1} = u_k + dt * div(c_k grad u_k),      dt = 1/4,

discretised with fluxes on the faces between neighbouring cells. The conductivity is a learned,
spatially varying field times the Perona-Malik edge-stopping function (Perona & Malik 1990, "Scale-
space and edge detection using anisotropic diffusion", g(s) = 1 / (1 + (s / kappa)^2)):

    c_face = sigmoid(a_k)_face * g(|u_j - u_i| / h; kappa_k),   a_k = conv(features)

so smoothing happens inside layers and stops across velocity jumps (layer boundaries, faults). With
no flux through the outer boundary (Neumann) the step conserves the map's mean exactly, zero
conductivity is the identity, and because every c is in [0, 1] and dt = 1/4 each new value is a
convex combination of the old ones: the output stays inside [-1, 1] (a discrete maximum principle).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fwi.models.inversionnet import InversionNet

STABLE_TIME_STEP = 0.25  # dt * (4 faces) * max c <= 1: each update is a convex combination


def edge_stopping(jump: torch.Tensor, kappa: torch.Tensor | float) -> torch.Tensor:
    """Perona-Malik g(|jump|) = 1 / (1 + (jump / kappa)^2), in (0, 1]."""
    return 1.0 / (1.0 + (jump / kappa) ** 2)


def perona_malik_step(
    u: torch.Tensor,
    conductivity: torch.Tensor,
    kappa: torch.Tensor | float | None,
    dt: float = STABLE_TIME_STEP,
) -> torch.Tensor:
    """One explicit diffusion step with zero-flux (Neumann) boundaries.

    Args:
        u: maps (B, 1, H, W).
        conductivity: per-cell conductivity in [0, 1], (B, 1, H, W); a face takes the mean of its cells.
        kappa: edge-stopping scale (None: linear heat equation with this conductivity).
        dt: time step; <= 1/4 keeps the step a convex combination (bounded, no oscillation).
    Returns:
        (B, 1, H, W), with the same per-map sum as `u`.
    """
    du_down = u[:, :, 1:, :] - u[:, :, :-1, :]  # faces between rows (depth)
    du_right = u[:, :, :, 1:] - u[:, :, :, :-1]  # faces between columns
    c_down = 0.5 * (conductivity[:, :, 1:, :] + conductivity[:, :, :-1, :])
    c_right = 0.5 * (conductivity[:, :, :, 1:] + conductivity[:, :, :, :-1])
    if kappa is not None:
        c_down = c_down * edge_stopping(du_down, kappa)
        c_right = c_right * edge_stopping(du_right, kappa)
    flux_down, flux_right = c_down * du_down, c_right * du_right
    # divergence: what flows in from the next cell minus what flows out to the previous; boundary faces carry none
    divergence = F.pad(flux_down, (0, 0, 0, 1)) - F.pad(flux_down, (0, 0, 1, 0))
    divergence = divergence + F.pad(flux_right, (0, 1, 0, 0)) - F.pad(flux_right, (1, 0, 0, 0))
    return u + dt * divergence


class HeatKernelNet(nn.Module):
    """(B, 5, 1000, 70) normalised gathers -> (B, 1, 70, 70) velocity in [-1, 1].

    Args:
        width: InversionNet channel multiplier of the backbone.
        steps: diffusion refinement steps K.
        kappa: initial edge-stopping scale on [-1, 1] velocity differences (learned per step).
        dropout: Dropout2d on the decoder features (MC dropout).
        in_channels: number of sources.
    """

    def __init__(
        self,
        width: float = 1.0,
        steps: int = 4,
        kappa: float = 0.05,
        dropout: float = 0.1,
        in_channels: int = 5,
    ) -> None:
        super().__init__()
        backbone = InversionNet(width=width, in_channels=in_channels)
        self.encoder, self.decoder = backbone.encoder, backbone.decoder
        channels = backbone.head[0].in_channels
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Conv2d(channels, 1, 3, 1, 1)
        self.conductivity = nn.Conv2d(channels, steps, 3, 1, 1)
        self.log_kappa = nn.Parameter(torch.full((steps,), float(torch.log(torch.tensor(kappa)))))
        self.steps = steps

    def forward(self, seismic: torch.Tensor) -> torch.Tensor:
        features = self.decoder(self.encoder(seismic))[:, :, 5:-5, 5:-5]  # 80x80 -> 70x70
        features = self.dropout(features)
        u = torch.tanh(self.head(features))
        conductivities = torch.sigmoid(self.conductivity(features))
        for k in range(self.steps):
            u = perona_malik_step(u, conductivities[:, k : k + 1], self.log_kappa[k].exp())
        return u.clamp(-1.0, 1.0)  # already inside by the maximum principle; clamp rounding only
