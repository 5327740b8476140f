"""SpecProj-UNet: a spectral-projection front end over each shot, then a UNet with a timm encoder.

Per shot gather (T, R) the 2-D FFT over (time, receiver) is split by K smooth masks of the dip
coordinate u = atan2(sign(f) k, |f|) / (pi / 2) in [-1, 1] (u's sign is the dip direction, |u| grows
as apparent velocity falls). Mask j is sigmoid(s (u - e_{j-1})) - sigmoid(s (u - e_j)) with learnable
sorted edges e and e_0 = -inf, e_K = +inf, so the masks telescope to exactly one at every (f, k):
the K inverse-FFT branches sum back to the input gather. The 5 x K branches are stacked as channels,
resized to `image_size`^2, passed through a segmentation-models-pytorch UNet with a timm encoder
(`encoder_weights=None`: nothing is downloaded) and resized to 70x70 under a tanh.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class SpectralProjection(nn.Module):
    """(B, S, T, R) gathers -> (B, S * K, T, R) branches that sum (over K) to the input.

    Args:
        n_masks: K, the number of dip/apparent-velocity bands.
        sharpness: slope s of the mask edges (larger: sharper bands).
    """

    def __init__(self, n_masks: int = 4, sharpness: float = 8.0) -> None:
        super().__init__()
        if n_masks < 1:
            raise ValueError(f"n_masks must be >= 1, got {n_masks}")
        self.n_masks = n_masks
        self.sharpness = sharpness
        self.edges = nn.Parameter(torch.linspace(-1, 1, n_masks + 1)[1:-1].clone())

    def dip_coordinate(self, n_time: int, n_receivers: int, device: torch.device) -> torch.Tensor:
        f = torch.fft.fftfreq(n_time, device=device)[:, None] * n_time
        k = torch.fft.fftfreq(n_receivers, device=device)[None, :] * n_receivers
        return torch.atan2(torch.sign(f) * k, f.abs()) / (math.pi / 2)

    def masks(self, n_time: int, n_receivers: int) -> torch.Tensor:
        """(K, T, R) masks, non-negative (edges are kept sorted) and summing to one."""
        u = self.dip_coordinate(n_time, n_receivers, self.edges.device)
        edges = torch.sort(self.edges).values
        cdf = [torch.ones_like(u)]
        cdf += [torch.sigmoid(self.sharpness * (u - e)) for e in edges]
        cdf.append(torch.zeros_like(u))
        return torch.stack([cdf[j] - cdf[j + 1] for j in range(self.n_masks)])

    def forward(self, seismic: torch.Tensor) -> torch.Tensor:
        b, s, t, r = seismic.shape
        spectrum = torch.fft.fft2(seismic.float())  # over (time, receiver)
        masks = self.masks(t, r)
        branches = torch.fft.ifft2(spectrum[:, :, None] * masks[None, None]).real  # (B, S, K, T, R)
        return branches.reshape(b, s * self.n_masks, t, r).to(seismic.dtype)


class SpecProjUNet(nn.Module):
    """(B, 5, 1000, 70) normalised gathers -> (B, 1, 70, 70) velocity in [-1, 1].

    Args:
        n_masks: spectral bands per shot.
        sharpness: slope of the band edges.
        encoder: timm encoder name (used as smp's `tu-<name>`), e.g. resnet18, efficientnet_b0.
        image_size: side of the square image the branches are resized to (a multiple of 32).
        decoder_channels: UNet decoder widths, one per encoder stage.
        in_channels: number of sources.
    """

    def __init__(
        self,
        n_masks: int = 4,
        sharpness: float = 8.0,
        encoder: str = "resnet18",
        image_size: int = 128,
        decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16),
        in_channels: int = 5,
    ) -> None:
        super().__init__()
        import segmentation_models_pytorch as smp

        if image_size % 32:
            raise ValueError(f"image_size must be a multiple of 32, got {image_size}")
        self.image_size = image_size
        self.projection = SpectralProjection(n_masks, sharpness)
        self.unet = smp.Unet(
            encoder_name=f"tu-{encoder}",
            encoder_weights=None,
            encoder_depth=len(decoder_channels),
            decoder_channels=list(decoder_channels),
            in_channels=in_channels * n_masks,
            classes=1,
        )

    def forward(self, seismic: torch.Tensor) -> torch.Tensor:
        branches = self.projection(seismic)
        image = F.interpolate(
            branches, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
        )
        velocity = self.unet(image)
        return torch.tanh(F.interpolate(velocity, size=(70, 70), mode="bilinear", align_corners=False))
