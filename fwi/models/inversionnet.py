"""InversionNet (Wu & Lin 2019; the OpenFWI baseline): a CNN encoder-decoder from gathers to velocity.

Layer for layer the OpenFWI implementation: seven stride-2 convolutions squeeze time 1000 -> 8 and
three squeeze receivers 70 -> 9, an (8, 9) convolution makes a 1x1 code, five deconvolution stages
grow it to 80x80, which is cropped to 70x70 and mapped to [-1, 1] by tanh. `width` multiplies every
channel count (1.0 = the paper's 32-64-128-256-512) so the CPU quickstart can be small.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def conv_block(cin: int, cout: int, kernel=3, stride=1, padding=1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, padding), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2, inplace=True)
    )


def deconv_block(cin: int, cout: int, kernel=2, stride=2, padding=0) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(cin, cout, kernel, stride, padding),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(0.2, inplace=True),
    )


class InversionNet(nn.Module):
    """(B, 5, 1000, 70) normalised gathers -> (B, 1, 70, 70) velocity in [-1, 1].

    Args:
        width: channel multiplier (1.0 = paper).
        in_channels: number of sources.
        n_receivers: receivers per gather (sets the last encoder kernel).
        n_time: time steps per gather (1000; fewer after `time_decimation`): the encoder halves time
            seven times, so the last encoder kernel is ceil(n_time / 128) high (8 for 1000).
    """

    def __init__(
        self, width: float = 1.0, in_channels: int = 5, n_receivers: int = 70, n_time: int = 1000
    ) -> None:
        super().__init__()
        self.n_time = n_time
        d1, d2, d3, d4, d5 = (max(4, round(c * width)) for c in (32, 64, 128, 256, 512))
        t = (3, 1)
        tp = (1, 0)
        self.encoder = nn.Sequential(
            conv_block(in_channels, d1, (7, 1), (2, 1), (3, 0)),
            conv_block(d1, d2, t, (2, 1), tp),
            conv_block(d2, d2, t, 1, tp),
            conv_block(d2, d2, t, (2, 1), tp),
            conv_block(d2, d2, t, 1, tp),
            conv_block(d2, d3, t, (2, 1), tp),
            conv_block(d3, d3, t, 1, tp),
            conv_block(d3, d3, stride=2),
            conv_block(d3, d3),
            conv_block(d3, d4, stride=2),
            conv_block(d4, d4),
            conv_block(d4, d4, stride=2),
            conv_block(d4, d4),
            conv_block(d4, d5, kernel=(math.ceil(n_time / 128), math.ceil(n_receivers / 8)), padding=0),
        )
        self.decoder = nn.Sequential(
            deconv_block(d5, d5, kernel=5),
            conv_block(d5, d5),
            deconv_block(d5, d4, kernel=4, stride=2, padding=1),
            conv_block(d4, d4),
            deconv_block(d4, d3, kernel=4, stride=2, padding=1),
            conv_block(d3, d3),
            deconv_block(d3, d2, kernel=4, stride=2, padding=1),
            conv_block(d2, d2),
            deconv_block(d2, d1, kernel=4, stride=2, padding=1),
            conv_block(d1, d1),
        )
        self.head = nn.Sequential(nn.Conv2d(d1, 1, 3, 1, 1), nn.BatchNorm2d(1), nn.Tanh())

    def forward(self, seismic: torch.Tensor) -> torch.Tensor:
        code = self.encoder(seismic)
        x = self.decoder(code)
        x = x[:, :, 5:-5, 5:-5]  # 80x80 -> 70x70, as OpenFWI's F.pad(x, [-5, -5, -5, -5])
        return self.head(x)
