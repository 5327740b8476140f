"""InversionNet and SpecProj-UNet shapes, the paper's size, and the spectral masks summing to one."""

from __future__ import annotations

import torch

from fwi.models import build_model
from fwi.models.specproj_unet import SpectralProjection


def test_inversionnet_has_the_paper_size_and_shapes() -> None:
    full = build_model("inversionnet")
    assert 24.0e6 < sum(p.numel() for p in full.parameters()) < 24.8e6  # OpenFWI: 24.4M
    small = build_model("inversionnet", width=0.125).eval()
    out = small(torch.randn(2, 5, 1000, 70))
    assert out.shape == (2, 1, 70, 70) and out.abs().max() <= 1


def test_spectral_branches_sum_back_to_the_input() -> None:
    projection = SpectralProjection(n_masks=4, sharpness=8.0)
    with torch.no_grad():
        projection.edges.copy_(torch.tensor([0.3, -0.5, 0.1]))  # unsorted on purpose
    seismic = torch.randn(2, 5, 1000, 70)
    branches = projection(seismic).reshape(2, 5, 4, 1000, 70)
    assert torch.allclose(branches.sum(2), seismic, atol=1e-4)
    masks = projection.masks(1000, 70)
    assert masks.min() >= 0 and torch.allclose(masks.sum(0), torch.ones(1000, 70), atol=1e-6)
    # The bands differ: each branch carries a different share of the energy.
    energy = branches.pow(2).mean(dim=(0, 1, 3, 4))
    assert energy.max() / energy.min() > 1.05


def test_specproj_unet_output_and_learnable_edges() -> None:
    model = build_model(
        "specproj_unet", encoder="resnet18", image_size=64, decoder_channels=(32, 16, 8, 8, 4)
    )
    out = model(torch.randn(2, 5, 1000, 70))
    assert out.shape == (2, 1, 70, 70) and out.abs().max() <= 1
    out.mean().backward()
    assert model.projection.edges.grad is not None and model.projection.edges.grad.abs().sum() > 0
