"""The trace-graph, trace-attention, heat-kernel and ViT families: shapes, bounds, gradients, learning,
the EGNN layer's equivariance, the diffusion operator's invariants and the built-in flip symmetry."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fwi.models import MODEL_CARDS, MODELS, build_model, parameter_count
from fwi.models.heat_kernel import perona_malik_step
from fwi.models.trace_egnn import EGNNLayer, trace_graph_edges
from fwi.models.trace_parts import mirror_survey

# CPU-sized settings of each new family (what the quickstart recipes use).
TINY: dict[str, dict] = {
    "trace_egnn": {"dim": 16, "layers": 2, "encoder_channels": 4, "decoder_channels": 8},
    "trace_transformer": {"dim": 16, "depth": 2, "heads": 2, "encoder_channels": 4, "decoder_channels": 8},
    "heat_kernel": {"width": 0.125, "steps": 3},
    "vit_unet": {
        "encoder": "vit_small_patch16_224",
        "image_size": [64, 160],
        "encoder_args": {"embed_dim": 32, "depth": 2, "num_heads": 2},
        "decoder_channels": 16,
    },
}


def gathers(batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 5, 1000, 70, generator=torch.Generator().manual_seed(seed)).clamp(-1, 1)


def test_every_registered_model_has_a_card_and_recipes_that_exist() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    assert set(MODEL_CARDS) == set(MODELS)
    for name, card in MODEL_CARDS.items():
        assert (root / card.recipe).is_file(), name
        assert card.quickstart is None or (root / card.quickstart).is_file(), name


@pytest.mark.parametrize("name", sorted(TINY))
def test_family_maps_gathers_to_a_bounded_velocity_map_with_gradients_everywhere(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, **TINY[name])
    out = model(gathers())
    assert out.shape == (2, 1, 70, 70)
    assert out.abs().max() <= 1.0
    out.square().mean().backward()
    without_gradient = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not without_gradient, f"{name}: no gradient reaches {without_gradient[:5]}"


@pytest.mark.parametrize("name", sorted(TINY))
def test_a_few_adamw_steps_reduce_the_loss_on_a_fixed_batch(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, **TINY[name], **({} if name == "heat_kernel" else {"dropout": 0.0}))
    seismic = gathers(4, seed=1)
    target = (
        torch.linspace(-0.8, 0.6, 70).reshape(1, 1, 70, 1).expand(4, 1, 70, 70)
    )  # velocity grows with depth
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        optimizer.zero_grad()
        loss = F.l1_loss(model(seismic), target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize("name", ["trace_egnn", "trace_transformer", "vit_unet"])
def test_flip_symmetric_models_are_exactly_mirror_equivariant(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, **TINY[name], flip_symmetric=True).eval()
    seismic = gathers()
    with torch.no_grad():
        direct = model(seismic)
        mirrored = model(mirror_survey(seismic))
    assert torch.allclose(mirrored, torch.flip(direct, dims=(-1,)), atol=1e-5)
    plain = build_model(name, **TINY[name]).eval()  # without it, the flip is not exact
    with torch.no_grad():
        gap = (plain(mirror_survey(seismic)) - torch.flip(plain(seismic), dims=(-1,))).abs().max()
    assert gap > 1e-4


def test_egnn_layer_without_edge_attributes_is_e2_equivariant() -> None:
    torch.manual_seed(0)
    layer = EGNNLayer(dim=8)
    torch.nn.init.normal_(layer.coordinate_mlp[-1].weight, std=0.5)  # a visible coordinate update
    edges = trace_graph_edges(5, 70, neighbours=2)
    h, x = torch.randn(2, 350, 8), torch.randn(2, 350, 2)
    angle = 0.7
    rotation = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    shift = torch.tensor([3.0, -1.0])
    h1, x1 = layer(h, x, edges)
    h2, x2 = layer(h, x @ rotation.T + shift, edges)
    assert (x1 - x).abs().max() > 1e-3  # coordinates did move
    assert torch.allclose(h1, h2, atol=1e-4)
    assert torch.allclose(x1 @ rotation.T + shift, x2, atol=1e-4)


def test_trace_graph_joins_shot_neighbours_and_common_receivers() -> None:
    edges = trace_graph_edges(5, 70, neighbours=2)
    pairs = set(map(tuple, edges.T.tolist()))
    assert (0, 1) in pairs and (1, 0) in pairs and (0, 2) in pairs and (0, 3) not in pairs
    assert (5, 70 + 5) in pairs and (4 * 70 + 5, 5) in pairs  # receiver 5 of shot 0 <-> of shots 1, 4
    assert len(pairs) == edges.shape[1]  # no duplicate edges


def test_perona_malik_step_identity_mean_bounds_and_edges() -> None:
    torch.manual_seed(0)
    u = torch.rand(3, 1, 70, 70) * 2 - 1
    assert torch.equal(perona_malik_step(u, torch.zeros_like(u), kappa=0.1), u)
    conductivity = torch.rand_like(u)
    stepped = u
    for _ in range(20):
        stepped = perona_malik_step(stepped, conductivity, kappa=0.5)
    assert torch.allclose(stepped.mean(dim=(1, 2, 3)), u.mean(dim=(1, 2, 3)), atol=1e-6)
    assert stepped.min() >= u.min() - 1e-6 and stepped.max() <= u.max() + 1e-6  # maximum principle
    assert stepped.std() < u.std()  # it did smooth
    # A layer boundary (a 1.0 jump) plus small noise: edge-stopping keeps the jump, linear diffusion blurs it.
    layered = torch.where(torch.arange(70).reshape(1, 1, 70, 1) < 35, -0.5, 0.5).expand(1, 1, 70, 70).clone()
    noisy = layered + 0.02 * torch.randn_like(layered)
    edge_kept, blurred = noisy, noisy
    ones = torch.ones_like(noisy)
    for _ in range(30):
        edge_kept = perona_malik_step(edge_kept, ones, kappa=0.05)
        blurred = perona_malik_step(blurred, ones, kappa=None)
    jump = lambda m: (m[..., 35, :] - m[..., 34, :]).mean().item()  # noqa: E731
    assert jump(edge_kept) > 0.95 and jump(blurred) < 0.5
    assert (edge_kept - layered)[..., 5:30, :].std() < 0.5 * (noisy - layered)[
        ..., 5:30, :
    ].std()  # noise removed


def test_new_families_train_through_the_task(openfwi_root) -> None:
    """One step of `VelocityInversionTask` (the class `mtl fit` builds) with each family."""
    from lightning.pytorch import Trainer

    from fwi.data import FwiDataModule
    from fwi.task import VelocityInversionTask

    for name in ("trace_egnn", "heat_kernel"):
        task = VelocityInversionTask(model=name, model_args=TINY[name], lr=1e-3, log_images=False)
        data = FwiDataModule(root=str(openfwi_root), batch_size=4, num_workers=0, val_fraction=0.25)
        trainer = Trainer(
            max_steps=2,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            limit_val_batches=1,
            accelerator="cpu",
            enable_model_summary=False,
        )
        trainer.fit(task, datamodule=data)
        assert torch.isfinite(task.seismic_low).any()
        assert parameter_count(task.net) > 0
