"""Tiny export bundles for the serving tests and benchmark: real LightningModules of each domain,
untrained (serving does not care how good the weights are), written by `common.export.export_bundle`,
so the server reads exactly what `mtl fit` / `mtl export` write."""

from __future__ import annotations

from pathlib import Path

import torch


def landcover_bundle(out: Path) -> Path:
    from common.export import export_bundle
    from landcover.task import LandCoverTask

    torch.manual_seed(0)
    return export_bundle(LandCoverTask(model="baseline_cnn", width=8, depth=2, example_size=32), out)


def fwi_bundle(out: Path) -> Path:
    from common.export import export_bundle
    from fwi.task import VelocityInversionTask

    torch.manual_seed(0)
    task = VelocityInversionTask(model="inversionnet", model_args={"width": 0.125})
    # The raw-amplitude range FwiDataModule would have measured on training files.
    task.seismic_low.fill_(-25.0)
    task.seismic_high.fill_(45.0)
    return export_bundle(task, out)


def roofnet_bundle(out: Path) -> Path:
    from common.export import export_bundle
    from roofnet.task import RoofTask

    torch.manual_seed(0)
    task = RoofTask(encoder="resnet18", decoder_channels=[32, 16, 16, 16, 16], overlays=False)
    return export_bundle(task, out)


def housebrain_bundle(out: Path, model_dir: Path) -> Path:
    """A LoRA bundle on a tiny random Llama written to `model_dir` (tokenizer trained offline)."""
    from common.export import export_bundle
    from housebrain.models.causal_lm import ensure_tiny_llama
    from housebrain.task import HouseDesignSFT

    torch.manual_seed(0)
    ensure_tiny_llama(model_dir, samples=80)
    task = HouseDesignSFT(
        model_path=str(model_dir), lora_r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]
    )
    return export_bundle(task, out)


BUILDERS = {"landcover": landcover_bundle, "fwi": fwi_bundle, "roofnet": roofnet_bundle}
