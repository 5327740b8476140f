"""TraceEGNN: a graph over the 5 x 70 traces with E(n)-equivariant-form message passing (EGNN).

Each trace is a node with features h from a 1-D convolution over time (`TraceEncoder`) and 2-D
coordinates x = (midpoint, offset). Edges join a trace to its neighbours in the same shot (receivers
r +- 1 .. r +- k) and to the traces of the same receiver in the other shots (a common-receiver
gather), and carry the signed offset and midpoint differences. A layer is the EGNN update of
Satorras, Hoogeboom & Welling (2021, "E(n) Equivariant Graph Neural Networks", eq. 3-6):

    m_ij = phi_e(h_i, h_j, |x_i - x_j|^2, a_ij)
    x_i' = x_i + C sum_j (x_i - x_j) phi_x(m_ij)
    h_i' = h_i + phi_h(h_i, sum_j m_ij)

Without edge attributes the layer is exactly E(n)-equivariant in x (tested); the signed geometric
attributes deliberately break it, because surface acquisition is not rotation or translation
invariant (docs/fwi-models.md). Node features and coordinate displacements are averaged over the
shots of each receiver, joined with the survey's pooled code, and decoded column by column to the 70 x 70 map (`LateralDecoder`), bounded by tanh.
"""

from __future__ import annotations

import torch
from torch import nn

from fwi.data.families import N_RECEIVERS, SOURCE_X
from fwi.models.trace_parts import LateralDecoder, TraceEncoder, flip_symmetrised, trace_coordinates


def trace_graph_edges(n_sources: int, n_receivers: int, neighbours: int) -> torch.Tensor:
    """(2, E) directed edges (sender, receiver) between traces numbered source-major.

    Same shot: receivers within `neighbours` cells; same receiver: every other shot.
    """
    index = torch.arange(n_sources * n_receivers).reshape(n_sources, n_receivers)
    senders, receivers = [], []
    for step in range(1, neighbours + 1):
        a, b = index[:, :-step].reshape(-1), index[:, step:].reshape(-1)
        senders += [a, b]
        receivers += [b, a]
    for s in range(n_sources):
        for t in range(n_sources):
            if s != t:
                senders.append(index[s])
                receivers.append(index[t])
    return torch.stack([torch.cat(senders), torch.cat(receivers)])


class EGNNLayer(nn.Module):
    """One EGNN layer on a fixed graph, batched: h (B, N, D), x (B, N, n) -> (h', x').

    Args:
        dim: node feature width D.
        edge_dim: width of the edge attributes a_ij (0: none, the layer is then E(n)-equivariant).
        coordinate_scale: C of the coordinate update (a mean over a node's edges is 1 / degree).
    """

    def __init__(self, dim: int, edge_dim: int = 0, coordinate_scale: float | None = None) -> None:
        super().__init__()
        self.edge_mlp = nn.Sequential(
            nn.Linear(2 * dim + 1 + edge_dim, dim), nn.SiLU(), nn.Linear(dim, dim), nn.SiLU()
        )
        self.coordinate_mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, 1, bias=False))
        nn.init.normal_(self.coordinate_mlp[-1].weight, std=1e-3)  # start near the identity in x
        self.node_mlp = nn.Sequential(nn.Linear(2 * dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.norm = nn.LayerNorm(dim)
        self.coordinate_scale = coordinate_scale

    def forward(
        self, h: torch.Tensor, x: torch.Tensor, edges: torch.Tensor, edge_attr: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        sender, receiver = edges  # message j -> i: j = sender, i = receiver
        difference = x[:, receiver] - x[:, sender]  # x_i - x_j, (B, E, n)
        distance = difference.pow(2).sum(-1, keepdim=True)
        parts = [h[:, receiver], h[:, sender], distance]
        if edge_attr is not None:
            parts.append(edge_attr.expand(h.shape[0], -1, -1))
        message = self.edge_mlp(torch.cat(parts, dim=-1))  # (B, E, D)
        n_nodes = h.shape[1]
        degree = torch.zeros(n_nodes, device=h.device).index_add_(
            0, receiver, torch.ones_like(receiver, dtype=h.dtype)
        )
        scale = self.coordinate_scale if self.coordinate_scale is not None else 1.0 / degree.clamp_min(1)
        shift = torch.zeros_like(x).index_add_(1, receiver, difference * self.coordinate_mlp(message))
        x = x + shift * (scale if isinstance(scale, float) else scale[None, :, None])
        aggregated = torch.zeros_like(h).index_add_(1, receiver, message)
        h = h + self.node_mlp(torch.cat([self.norm(h), aggregated], dim=-1))
        return h, x


class TraceEGNN(nn.Module):
    """(B, 5, 1000, 70) normalised gathers -> (B, 1, 70, 70) velocity in [-1, 1].

    Args:
        dim: node feature width.
        layers: EGNN layers.
        neighbours: same-shot neighbours on each side of a trace.
        encoder_channels: channels of the first time-convolution stage.
        decoder_channels: channels of the lateral decoder.
        dropout: Dropout2d probability in the decoder (MC dropout).
        flip_symmetric: average with the mirrored survey (exact flip equivariance, 2x compute).
    """

    def __init__(
        self,
        dim: int = 64,
        layers: int = 4,
        neighbours: int = 2,
        encoder_channels: int = 16,
        decoder_channels: int = 32,
        dropout: float = 0.1,
        flip_symmetric: bool = False,
        n_sources: int = len(SOURCE_X),
        n_receivers: int = N_RECEIVERS,
    ) -> None:
        super().__init__()
        geometry = trace_coordinates(n_sources, n_receivers)
        edges = trace_graph_edges(n_sources, n_receivers, neighbours)
        sender, receiver = edges
        edge_attr = torch.stack(
            [
                geometry["offset"][sender] - geometry["offset"][receiver],
                geometry["midpoint"][sender] - geometry["midpoint"][receiver],
                (geometry["source"][sender] == geometry["source"][receiver]).float(),
            ],
            dim=-1,
        )
        self.register_buffer("edges", edges, persistent=False)
        self.register_buffer("edge_attr", edge_attr[None], persistent=False)
        coordinates = torch.stack([geometry["midpoint"], geometry["offset"]], dim=-1)
        self.register_buffer("coordinates", coordinates[None], persistent=False)
        self.n_sources, self.n_receivers = n_sources, n_receivers
        self.flip_symmetric = flip_symmetric
        self.encoder = TraceEncoder(dim, encoder_channels)
        self.geometry_embedding = nn.Linear(3, dim)  # source x, receiver x, offset of the node itself
        self.register_buffer(
            "node_geometry",
            torch.stack([geometry["source_x"], geometry["receiver_x"], geometry["offset"]], dim=-1)[None],
            persistent=False,
        )
        self.layers = nn.ModuleList(EGNNLayer(dim, edge_dim=3) for _ in range(layers))
        self.decoder = LateralDecoder(2 * dim + 2, decoder_channels, dropout=dropout)
        self.head = nn.Conv2d(decoder_channels, 1, 3, 1, 1)

    def _predict(self, seismic: torch.Tensor) -> torch.Tensor:
        b = seismic.shape[0]
        h = self.encoder(seismic) + self.geometry_embedding(self.node_geometry)
        start = self.coordinates.expand(b, -1, -1)
        x = start
        for layer in self.layers:
            h, x = layer(h, x, self.edges, self.edge_attr)
        # read out the features and how far message passing moved each trace's coordinates
        nodes = torch.cat([h, x - start], dim=-1).reshape(b, self.n_sources, self.n_receivers, -1)
        per_receiver = nodes.mean(1)  # (B, R, D + 2)
        latent = h.mean(1, keepdim=True).expand(-1, self.n_receivers, -1)  # the pooled survey code
        lateral = torch.cat([per_receiver, latent], dim=-1).transpose(1, 2)
        return torch.tanh(self.head(self.decoder(lateral)))

    def forward(self, seismic: torch.Tensor) -> torch.Tensor:
        if self.flip_symmetric:
            return flip_symmetrised(self._predict, seismic)
        return self._predict(seismic)
