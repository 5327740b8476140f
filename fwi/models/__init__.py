"""Velocity-inversion networks: pure `nn.Module`s from normalised gathers (B, 5, 1000, 70) to (B, 1, 70, 70).

Adding a model is one new file here, one line in `MODELS` and its card in `MODEL_CARDS`; the task
picks it by name (`model: inversionnet`, `model_args: {...}`), so checkpoints and export bundles
rebuild it from hparams. `mtl fwi models` prints the cards with parameter counts.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from torch import nn

MODELS: dict[str, str] = {
    "inversionnet": "fwi.models.inversionnet:InversionNet",
    "specproj_unet": "fwi.models.specproj_unet:SpecProjUNet",
    "trace_egnn": "fwi.models.trace_egnn:TraceEGNN",
    "trace_transformer": "fwi.models.trace_transformer:TraceTransformer",
    "heat_kernel": "fwi.models.heat_kernel:HeatKernelNet",
    "vit_unet": "fwi.models.vit_unet:ViTUNet",
}

OPENFWI_GRID = "5 shots at x = 0, 17, 34, 52, 69; 70 receivers; 1000 x 1 ms; output 70 x 70 at 10 m"
FLIP_AUGMENTED = "none built in; the left-right flip with shots reversed is learned from mirror augmentation"
FLIP_OPTIONAL = (
    "flip_symmetric: true averages with the mirrored survey: exactly flip-equivariant (middle shot one "
    "cell off on real data); otherwise learned from mirror augmentation"
)


@dataclass(frozen=True)
class ModelCard:
    """What `mtl fwi models` says about a registered model (and what a user must know to use it)."""

    summary: str
    geometry: str
    symmetries: str
    recipe: str
    quickstart: str | None  # a CPU-sized recipe, None where there is none yet


MODEL_CARDS: dict[str, ModelCard] = {
    "inversionnet": ModelCard(
        "CNN encoder-decoder (Wu & Lin 2019, OpenFWI baseline)",
        f"{OPENFWI_GRID}; the last encoder kernel fixes 70 receivers",
        FLIP_AUGMENTED,
        "configs/fwi/inversionnet.yaml",
        "configs/fwi/quickstart.yaml",
    ),
    "specproj_unet": ModelCard(
        "dip/apparent-velocity FFT bands per shot into a timm-encoder UNet",
        f"{OPENFWI_GRID}; any (T, R), resized to image_size",
        FLIP_AUGMENTED,
        "configs/fwi/specproj_unet.yaml",
        None,
    ),
    "trace_egnn": ModelCard(
        "graph over traces, EGNN message passing with (midpoint, offset) coordinates",
        f"{OPENFWI_GRID}; source positions and receivers are fixed graph geometry",
        f"E(n)-form layers; signed offset/midpoint edge attributes keep depth and side. {FLIP_OPTIONAL}",
        "configs/fwi/trace_egnn.yaml",
        "configs/fwi/trace_egnn-quickstart.yaml",
    ),
    "trace_transformer": ModelCard(
        "attention over traces with relative offset/midpoint/receiver attention biases",
        f"{OPENFWI_GRID}; 350 trace tokens (full attention)",
        f"relative geometric encodings (not SE(3) invariance). {FLIP_OPTIONAL}",
        "configs/fwi/trace_transformer.yaml",
        "configs/fwi/trace_transformer-quickstart.yaml",
    ),
    "heat_kernel": ModelCard(
        "InversionNet backbone, Perona-Malik diffusion steps with learned conductivity",
        f"{OPENFWI_GRID}; the last encoder kernel fixes 70 receivers",
        f"diffusion is mean-conserving and bounded; {FLIP_AUGMENTED}",
        "configs/fwi/heat_kernel.yaml",
        "configs/fwi/heat_kernel-quickstart.yaml",
    ),
    "vit_unet": ModelCard(
        "shots side by side as one image, timm ViT encoder, light conv decoder (Kaggle 1st place)",
        f"{OPENFWI_GRID}; any (T, 5 R), resized to image_size",
        FLIP_OPTIONAL,
        "configs/fwi/vit_unet.yaml",
        "configs/fwi/vit_unet-quickstart.yaml",
    ),
}


def build_model(name: str, **kwargs) -> nn.Module:
    """Instantiate a registered model by name (imported on demand: timm/smp only when needed)."""
    if name not in MODELS:
        raise ValueError(f"unknown fwi model {name!r}; registered: {sorted(MODELS)}")
    module_name, _, class_name = MODELS[name].partition(":")
    return getattr(importlib.import_module(module_name), class_name)(**kwargs)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
