"""Import an OpenFWI InversionNet checkpoint (lanl/OpenFWI `train.py`) as one of our export bundles.

OpenFWI saves `{"model": state_dict, "optimizer": ..., "lr_scheduler": ..., "epoch": ..., "step": ...,
"args": argparse.Namespace}` with `torch.save`. The state dict may carry DDP's `module.` prefix, and
checkpoints from older OpenFWI versions name each block's `nn.Sequential` after its class
(`Conv2DwithBN`, `Conv2DwithBN_Tanh`, `Deconv2DwithBN`, `ResizeConv2DwithBN`) where current ones say
`layers` (OpenFWI's own `network.replace_legacy`). The file is read with `weights_only=True`, with
`argparse.Namespace` the one class allowed besides tensors and containers, so no code in it can run.

OpenFWI's InversionNet (lanl/OpenFWI `network.py`) is ours layer for layer: `convblock1` ..
`convblock8` are `encoder.0` .. `encoder.13`, `deconv1_1` .. `deconv5_2` are `decoder.0` .. `decoder.9`,
`deconv6` is `head`. Every key must map and every one of ours must be filled (strict). The family picks
OpenFWI's seismic limits (`dataset_config.json`), which the bundle carries as the task's buffers.
"""

from __future__ import annotations

import argparse
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from common.errors import CheckpointError
from fwi.data.families import FAMILIES, canonical_family
from fwi.data.normalization import OPENFWI_SEISMIC_LIMITS

OPENFWI_ENCODER = (
    "convblock1",
    "convblock2_1",
    "convblock2_2",
    "convblock3_1",
    "convblock3_2",
    "convblock4_1",
    "convblock4_2",
    "convblock5_1",
    "convblock5_2",
    "convblock6_1",
    "convblock6_2",
    "convblock7_1",
    "convblock7_2",
    "convblock8",
)
OPENFWI_DECODER = tuple(f"deconv{i}_{j}" for i in range(1, 6) for j in (1, 2))
BLOCK_NAMES = {
    **{name: f"encoder.{i}" for i, name in enumerate(OPENFWI_ENCODER)},
    **{name: f"decoder.{i}" for i, name in enumerate(OPENFWI_DECODER)},
    "deconv6": "head",
}
LEGACY_SEQUENTIALS = ("Conv2DwithBN_Tanh", "ResizeConv2DwithBN", "Deconv2DwithBN", "Conv2DwithBN", "layers")
_KEY = re.compile(
    r"^(?P<block>\w+?)\.(?P<sequential>" + "|".join(LEGACY_SEQUENTIALS) + r")\.(?P<rest>\d+\..+)$"
)


def read_openfwi_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The model state dict of an OpenFWI checkpoint (a `model` entry, or a bare state dict)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path}: refused to load: it holds Python objects other than tensors, containers and "
            f"argparse.Namespace ({error})"
        ) from error
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as error:
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({type(error).__name__}: {error})"
        ) from error
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected OpenFWI's checkpoint dict with a 'model' state dict")
    return state


def map_openfwi_keys(state: dict[str, torch.Tensor], path: str | Path) -> dict[str, torch.Tensor]:
    """OpenFWI InversionNet keys -> our `InversionNet` keys; any key that does not map is an error."""
    mapped: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        plain = key[len("module.") :] if key.startswith("module.") else key
        match = _KEY.match(plain)
        if not match or match["block"] not in BLOCK_NAMES:
            unknown.append(key)
            continue
        mapped[f"{BLOCK_NAMES[match['block']]}.{match['rest']}"] = value
    if unknown:
        raise CheckpointError(
            f"{path}: not an OpenFWI InversionNet checkpoint: {len(unknown)} key(s) do not map, e.g. "
            f"{', '.join(unknown[:3])}"
        )
    return mapped


def import_openfwi(checkpoint: str | Path, out: str | Path, family: str) -> Path:
    """Write an export bundle (and a Lightning `model.ckpt` for `mtl validate`) from OpenFWI weights."""
    from lightning import __version__ as lightning_version

    from common.checkpoint import save_checkpoint_atomically
    from common.export import export_bundle
    from fwi.task import VelocityInversionTask

    family = canonical_family(family)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise CheckpointError(f"{out}: exists and is not empty; choose a new bundle directory")
    weights = map_openfwi_keys(read_openfwi_checkpoint(checkpoint), checkpoint)
    first = weights.get("encoder.0.0.weight")
    if first is None or first.ndim != 4:
        raise CheckpointError(f"{checkpoint}: no first convolution (convblock1) in the checkpoint")
    width = first.shape[0] / 32
    task = VelocityInversionTask(
        model="inversionnet", model_args={"width": width}, l1_weight=1.0, l2_weight=0.0, log_images=False
    )
    expected = task.net.state_dict()
    missing = sorted(set(expected) - set(weights))
    wrong = [k for k in expected if k in weights and weights[k].shape != expected[k].shape]
    if missing or wrong:
        detail = f"missing {missing[:3]}" if missing else f"shapes differ at {wrong[:3]}"
        raise CheckpointError(
            f"{checkpoint}: does not fit InversionNet (width {width:g}, 5 sources, 70 receivers): {detail}"
        )
    task.net.load_state_dict(weights, strict=True)
    low, high = OPENFWI_SEISMIC_LIMITS[family]
    index = FAMILIES.index(family)
    task.seismic_low[index], task.seismic_high[index] = low, high
    bundle = export_bundle(task, out, fp16=True)
    hparams: dict[str, Any] = {**dict(task.hparams), "_class_path": "fwi.task.VelocityInversionTask"}
    save_checkpoint_atomically(
        {
            "state_dict": task.state_dict(),
            "hyper_parameters": hparams,
            "pytorch-lightning_version": lightning_version,
            "epoch": 0,
            "global_step": 0,
        },
        bundle / "model.ckpt",
    )
    return bundle
