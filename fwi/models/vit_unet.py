"""ViTUNet: the Kaggle GWI winners' recipe: the five gathers as one image, a timm ViT encoder, a light decoder.

The first-place solution of the Yale/UNC-CH Geophysical Waveform Inversion competition (team Harshit
Sheoran; Kaggle Winners Walkthrough, summarised at https://recapio.com/digest/kaggle-winners-
walkthroughs-yale-unc-ch-geophysical-waveform-inversion-with-team-harshit-sheoran-by-) put the five
shots side by side, (5, 1000, 70) -> (1000, 350), resized that to one square image, encoded it with a
vision transformer (EVA-02) and bounded the output to 1500-4500 m/s. This module does the same with
any timm ViT (`pretrained=False`: nothing is downloaded; `encoder_args` sets its size), reshapes the
patch tokens back to their grid and decodes them with upsampling convolutions (Dropout2d for MC
dropout) to 70 x 70 under a tanh.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fwi.data.families import DEPTH, WIDTH
from fwi.models.trace_parts import conv_stage, flip_symmetrised


def gathers_as_image(seismic: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, S, T, R) -> (B, 1, H, W): shots side by side along the receiver axis, resized to `size`."""
    b, s, t, r = seismic.shape
    side_by_side = seismic.permute(0, 2, 1, 3).reshape(b, 1, t, s * r)
    return F.interpolate(side_by_side, size=size, mode="bilinear", align_corners=False)


class ViTUNet(nn.Module):
    """(B, 5, 1000, 70) normalised gathers -> (B, 1, 70, 70) velocity in [-1, 1].

    Args:
        encoder: timm model name of a ViT-style encoder (vit_*, eva02_*, deit_*).
        image_size: (height, width) of the gather image; multiples of the patch size.
        encoder_args: extra keyword arguments of the timm model (e.g. embed_dim, depth, num_heads).
        decoder_channels: channels of the decoder.
        dropout: Dropout2d probability in the decoder (MC dropout).
        flip_symmetric: average with the mirrored survey (exact flip equivariance, 2x compute).
    """

    def __init__(
        self,
        encoder: str = "vit_small_patch16_224",
        image_size: tuple[int, int] = (352, 352),
        encoder_args: dict[str, Any] | None = None,
        decoder_channels: int = 64,
        dropout: float = 0.1,
        flip_symmetric: bool = False,
    ) -> None:
        super().__init__()
        import timm

        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.encoder = timm.create_model(
            encoder,
            pretrained=False,
            img_size=self.image_size,
            in_chans=1,
            num_classes=0,
            global_pool="",
            **(encoder_args or {}),
        )
        self.grid = tuple(self.encoder.patch_embed.grid_size)
        self.prefix_tokens = int(getattr(self.encoder, "num_prefix_tokens", 1))
        dim = self.encoder.num_features
        self.reduce = nn.Conv2d(dim, decoder_channels, 1)
        self.stage_half = conv_stage(decoder_channels, decoder_channels, dropout)
        self.stage_full = conv_stage(decoder_channels, decoder_channels // 2, dropout)
        self.head = nn.Conv2d(decoder_channels // 2, 1, 3, 1, 1)
        self.flip_symmetric = flip_symmetric

    def _predict(self, seismic: torch.Tensor) -> torch.Tensor:
        tokens = self.encoder.forward_features(gathers_as_image(seismic, self.image_size))
        patches = tokens[:, self.prefix_tokens :]
        b, _, d = patches.shape
        grid = patches.transpose(1, 2).reshape(b, d, *self.grid)
        x = self.reduce(grid)
        x = self.stage_half(
            F.interpolate(x, size=(DEPTH // 2, WIDTH // 2), mode="bilinear", align_corners=False)
        )
        x = self.stage_full(F.interpolate(x, size=(DEPTH, WIDTH), mode="bilinear", align_corners=False))
        return torch.tanh(self.head(x))

    def forward(self, seismic: torch.Tensor) -> torch.Tensor:
        if self.flip_symmetric:
            return flip_symmetrised(self._predict, seismic)
        return self._predict(seismic)
