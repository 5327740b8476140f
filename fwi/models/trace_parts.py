"""Parts shared by the trace-based models: trace geometry, a per-trace time encoder, a lateral decoder.

A gather batch (B, 5, T, 70) is 350 traces per sample, trace (s, r) recorded at receiver x_r from the
source at x_s (OpenFWI geometry: sources at x = 0, 17, 34, 52, 69, receivers at every cell, both at
depth index 1). The graph and attention models see each trace as a token with coordinates

    offset h = x_r - x_s,  midpoint m = (x_r + x_s) / 2,  source index s,

in grid cells scaled by 1 / 69 so they lie in [-1, 1]. The velocity map's column x sits under the
receivers, so the decoders start from one feature vector per receiver (pooled over shots) and grow
depth from it: (B, C, 70) -> (B, 1, 70, 70).

`flip_symmetrised(net, x)` averages a prediction with the prediction of the mirrored survey flipped
back, which makes a network exactly equivariant to the left-right flip with the shots reversed (the
one exact symmetry of this acquisition; see `fwi.data.datasets.mirror_sample` for the middle source).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from fwi.data.families import N_RECEIVERS, SOURCE_X, WIDTH

COORDINATE_SCALE = float(WIDTH - 1)


def trace_coordinates(
    n_sources: int = len(SOURCE_X), n_receivers: int = N_RECEIVERS
) -> dict[str, torch.Tensor]:
    """Per-trace geometry, each (n_sources * n_receivers,), source-major like `seismic.flatten`.

    Keys: source_x, receiver_x, offset, midpoint (all scaled to [-1, 1] by 1 / 69) and source (index).
    """
    source_x = torch.tensor(SOURCE_X[:n_sources], dtype=torch.float32) / COORDINATE_SCALE
    receiver_x = torch.arange(n_receivers, dtype=torch.float32) / COORDINATE_SCALE
    sx = source_x[:, None].expand(n_sources, n_receivers).reshape(-1)
    rx = receiver_x[None, :].expand(n_sources, n_receivers).reshape(-1)
    source = torch.arange(n_sources)[:, None].expand(n_sources, n_receivers).reshape(-1)
    return {
        "source_x": sx,
        "receiver_x": rx,
        "offset": rx - sx,
        "midpoint": 0.5 * (rx + sx),
        "source": source,
    }


class TraceEncoder(nn.Module):
    """One trace (T,) -> a feature vector (dim,): strided 1-D convolutions over time, then pooling.

    Input (B, S, T, R) -> output (B, S * R, dim), traces source-major. The time axis is squeezed by
    `n_stages` stride-2 stages (1000 -> 8 for 7 stages, as InversionNet's time encoder) and the rest
    is average-pooled, so the encoder takes any record length.
    """

    def __init__(self, dim: int = 64, channels: int = 16, n_stages: int = 6) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for stage in range(n_stages):
            cout = min(dim, channels * 2 ** (stage // 2))
            layers += [nn.Conv1d(cin, cout, 7 if stage == 0 else 5, 2, 3 if stage == 0 else 2), nn.GELU()]
            cin = cout
        self.convs = nn.Sequential(*layers)
        for layer in self.convs:
            if isinstance(layer, nn.Conv1d):
                # He (fan-in) initialisation, zero biases. With PyTorch's default (weights of std about
                # 1 / sqrt(3 fan_in)) and no normalisation layer, each stage shrank the trace signal about
                # 3x against the biases: at initialisation the tokens of different surveys differed by
                # 0.03 % of their size, the gradient reaching the encoder vanished, and trace_egnn and
                # trace_transformer learnt the training set's mean map whatever the lr.
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                nn.init.zeros_(layer.bias)
        self.project = nn.Linear(cin * 2, dim)

    def forward(self, seismic: torch.Tensor) -> torch.Tensor:
        b, s, t, r = seismic.shape
        traces = seismic.permute(0, 1, 3, 2).reshape(b * s * r, 1, t)
        features = self.convs(traces)
        pooled = torch.cat([features.mean(-1), features.amax(-1)], dim=1)  # mean + max over time
        return self.project(pooled).reshape(b, s * r, -1)


def conv_stage(cin: int, cout: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, 1, 1), nn.BatchNorm2d(cout), nn.GELU()]
    if dropout > 0:
        layers.append(nn.Dropout2d(dropout))  # MC dropout at inference: see fwi.uncertainty
    return nn.Sequential(*layers)


class LateralDecoder(nn.Module):
    """Per-receiver features (B, C, 70) -> velocity features (B, channels, 70, 70).

    Each column gets a coarse depth profile of `coarse_depth` cells from a 1x1 convolution (so a
    column's deep structure is decided by its own receiver's features plus what attention/message
    passing put there), then depth is doubled by upsampling + 3x3 convolutions up to 70 cells.
    `dropout` adds Dropout2d after every stage (kept off in eval, switched on for MC dropout).
    """

    def __init__(self, in_dim: int, channels: int = 32, coarse_depth: int = 9, dropout: float = 0.0) -> None:
        super().__init__()
        self.channels = channels
        self.coarse_depth = coarse_depth
        self.expand = nn.Conv1d(in_dim, channels * coarse_depth, 1)
        depths, depth = [], coarse_depth
        while depth < WIDTH:
            depth = min(WIDTH, depth * 2)
            depths.append(depth)
        self.depths = depths
        self.stages = nn.ModuleList(conv_stage(channels, channels, dropout) for _ in depths)
        self.refine = conv_stage(channels, channels, 0.0)

    def forward(self, lateral: torch.Tensor) -> torch.Tensor:
        b, _, width = lateral.shape
        x = self.expand(lateral).reshape(b, self.channels, self.coarse_depth, width)
        for depth, stage in zip(self.depths, self.stages, strict=True):
            x = stage(F.interpolate(x, size=(depth, width), mode="bilinear", align_corners=False))
        return self.refine(x)


def mirror_survey(seismic: torch.Tensor) -> torch.Tensor:
    """The exact mirrored survey: receivers flipped and the shot order reversed (source 34 -> 35)."""
    return torch.flip(seismic, dims=(-3, -1))


def flip_symmetrised(net: Callable[[torch.Tensor], torch.Tensor], seismic: torch.Tensor) -> torch.Tensor:
    """0.5 * (net(x) + flip(net(mirror(x)))): equivariant to the mirror by construction.

    Exact for the mirror that sends source 34 to 35 (`mirror_survey`); real surveys have no source at
    35, so on data the symmetry holds up to that one-cell offset of the middle shot.
    """
    both = net(torch.cat([seismic, mirror_survey(seismic)]))
    direct, mirrored = both.chunk(2)
    return 0.5 * (direct + torch.flip(mirrored, dims=(-1,)))
