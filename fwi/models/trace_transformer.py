"""TraceTransformer: self-attention over the 5 x 70 traces with relative geometric attention biases.

Each trace is a token (a 1-D convolution over time, `TraceEncoder`) plus an embedding of its source
index and receiver position. Every attention head adds a learned bias b(i, j) = MLP(offset_j -
offset_i, midpoint_j - midpoint_i, receiver_j - receiver_i, same shot) to its logits, the relative
position bias of Shaw et al. (2018) and Swin/T5 with the survey's geometry in place of the token
distance. This is the practical counterpart of an SE(3)-Transformer for 2-D surface data: geometry
enters as relative coordinates, but depth and the fixed source positions are kept, because the map is
not invariant to rotating or translating the survey (docs/fwi-models.md). Tokens are averaged over
the shots of each receiver and decoded column by column (`LateralDecoder`), bounded by tanh.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fwi.data.families import N_RECEIVERS, SOURCE_X
from fwi.models.trace_parts import LateralDecoder, TraceEncoder, flip_symmetrised, trace_coordinates


def relative_geometry(n_sources: int, n_receivers: int) -> torch.Tensor:
    """(N, N, 4) features of every token pair: d offset, d midpoint, d receiver x, same shot."""
    g = trace_coordinates(n_sources, n_receivers)

    def pairwise(values: torch.Tensor) -> torch.Tensor:
        return values[None, :] - values[:, None]

    same_shot = (g["source"][None, :] == g["source"][:, None]).float()
    return torch.stack(
        [pairwise(g["offset"]), pairwise(g["midpoint"]), pairwise(g["receiver_x"]), same_shot], dim=-1
    )


class GeometricAttentionBlock(nn.Module):
    """Pre-norm transformer block whose attention logits get a per-head bias (H, N, N)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, tokens: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, n, d = tokens.shape
        q, k, v = (
            self.qkv(self.norm1(tokens)).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        )
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=bias[None].to(q.dtype))
        tokens = tokens + self.proj(attended.transpose(1, 2).reshape(b, n, d))
        return tokens + self.mlp(self.norm2(tokens))


class TraceTransformer(nn.Module):
    """(B, 5, 1000, 70) normalised gathers -> (B, 1, 70, 70) velocity in [-1, 1].

    Args:
        dim: token width.
        depth: transformer blocks.
        heads: attention heads.
        encoder_channels: channels of the first time-convolution stage.
        decoder_channels: channels of the lateral decoder.
        dropout: Dropout2d probability in the decoder (MC dropout).
        flip_symmetric: average with the mirrored survey (exact flip equivariance, 2x compute).
    """

    def __init__(
        self,
        dim: int = 64,
        depth: int = 4,
        heads: int = 4,
        encoder_channels: int = 16,
        decoder_channels: int = 32,
        dropout: float = 0.1,
        flip_symmetric: bool = False,
        n_sources: int = len(SOURCE_X),
        n_receivers: int = N_RECEIVERS,
    ) -> None:
        super().__init__()
        self.n_sources, self.n_receivers = n_sources, n_receivers
        self.flip_symmetric = flip_symmetric
        self.register_buffer("pair_geometry", relative_geometry(n_sources, n_receivers), persistent=False)
        self.bias_mlp = nn.Sequential(nn.Linear(4, 32), nn.GELU(), nn.Linear(32, heads * depth))
        self.encoder = TraceEncoder(dim, encoder_channels)
        self.source_embedding = nn.Embedding(n_sources, dim)
        self.receiver_embedding = nn.Parameter(torch.zeros(1, 1, n_receivers, dim))
        nn.init.normal_(self.receiver_embedding, std=0.02)
        self.blocks = nn.ModuleList(GeometricAttentionBlock(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.decoder = LateralDecoder(dim, decoder_channels, dropout=dropout)
        self.head = nn.Conv2d(decoder_channels, 1, 3, 1, 1)
        self.heads, self.depth = heads, depth

    def attention_biases(self) -> torch.Tensor:
        """(depth, heads, N, N) additive attention biases from the pair geometry."""
        n = self.pair_geometry.shape[0]
        return self.bias_mlp(self.pair_geometry).reshape(n, n, self.depth, self.heads).permute(2, 3, 0, 1)

    def _predict(self, seismic: torch.Tensor) -> torch.Tensor:
        b = seismic.shape[0]
        tokens = self.encoder(seismic).reshape(b, self.n_sources, self.n_receivers, -1)
        sources = self.source_embedding.weight[None, :, None, :]
        tokens = (tokens + sources + self.receiver_embedding).reshape(
            b, self.n_sources * self.n_receivers, -1
        )
        for block, bias in zip(self.blocks, self.attention_biases(), strict=True):
            tokens = block(tokens, bias)
        per_receiver = self.norm(tokens).reshape(b, self.n_sources, self.n_receivers, -1).mean(1)
        return torch.tanh(self.head(self.decoder(per_receiver.transpose(1, 2))))

    def forward(self, seismic: torch.Tensor) -> torch.Tensor:
        if self.flip_symmetric:
            return flip_symmetrised(self._predict, seismic)
        return self._predict(seismic)
