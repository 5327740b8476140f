"""Velocity-inversion networks: pure `nn.Module`s from normalised gathers (B, 5, 1000, 70) to (B, 1, 70, 70).

Adding a model is one new file here plus one line in `MODELS`; the task picks it by name
(`model: inversionnet`, `model_args: {...}`), so checkpoints and export bundles rebuild it from hparams.
"""

from __future__ import annotations

import importlib

from torch import nn

MODELS: dict[str, str] = {
    "inversionnet": "fwi.models.inversionnet:InversionNet",
    "specproj_unet": "fwi.models.specproj_unet:SpecProjUNet",
}


def build_model(name: str, **kwargs) -> nn.Module:
    """Instantiate a registered model by name (imported on demand: timm/smp only when needed)."""
    if name not in MODELS:
        raise ValueError(f"unknown fwi model {name!r}; registered: {sorted(MODELS)}")
    module_name, _, class_name = MODELS[name].partition(":")
    return getattr(importlib.import_module(module_name), class_name)(**kwargs)
