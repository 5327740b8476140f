"""Self-contained export bundles: weights, config, hyperparameters, metrics, optional ONNX.

    <out>/model.safetensors         fp32 weights (model.fp16.safetensors / model.bf16.safetensors on request)
    <out>/config.yaml               the full resolved run config (when the run had one)
    <out>/bundle.json               class path and init args of the LightningModule, file list, checks
    <out>/hparams.yaml              the module's hyperparameters
    <out>/metrics.json              the last logged metrics, global step and epoch
    <out>/model.onnx                on request, checked against PyTorch with onnxruntime

`load_bundle(DIR)` rebuilds the module from `bundle.json` and loads the weights for inference. A
LightningModule can change what is exported by defining `export_state_dict()` (and the matching
`load_exported_state_dict(state_dict)`) and add files with `export_extras(directory)`; housebrain uses
this to export LoRA adapters instead of the base model.

The ONNX model takes inputs shaped like `example_input_array` with a dynamic batch axis. A module
whose inputs may vary along other axes names them in an `onnx_dynamic_axes` attribute,
`{input position: {axis: name}}`: roofnet's `{0: {2: "height", 3: "width"}}` lets its model run at
any image size the network accepts.
"""

from __future__ import annotations

import importlib
import json
import math
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from lightning.pytorch import LightningModule
from safetensors.torch import load_file, save_file

from common.checkpoint import read_checkpoint
from common.errors import ExportError
from common.run_directory import filesystem, is_url, join
from common.storage import write_bytes_atomically

BUNDLE_FILE = "bundle.json"
WEIGHTS_FILE = "model.safetensors"
HALF_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def class_path_of(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def exported_state_dict(module: LightningModule) -> dict[str, torch.Tensor]:
    custom = getattr(module, "export_state_dict", None)
    state = custom() if callable(custom) else module.state_dict()
    # safetensors refuses tensors that share storage (tied weights): store independent copies.
    return {name: tensor.detach().cpu().clone().contiguous() for name, tensor in state.items()}


def _cast(state: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}


def plain_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Scalar metrics as JSON-safe floats (NaN and inf kept as strings so nothing is lost)."""
    result: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                continue
            value = value.item()
        if isinstance(value, int | float):
            result[key] = value if math.isfinite(value) else str(value)
    return result


def export_bundle(
    module: LightningModule,
    out_dir: str | Path,
    *,
    model_config: dict[str, Any] | None = None,
    run_config: dict[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    fp16: bool = False,
    bf16: bool = False,
    onnx: bool = False,
    onnx_tolerance: float = 1e-4,
) -> Path | str:
    """Write a bundle for `module` into `out_dir` and return the directory.

    `model_config` is `{"class_path": ..., "init_args": {...}}`; without it the module's class and its
    saved hyperparameters are used, which requires `save_hyperparameters()` in its `__init__`.
    `out_dir` may be an fsspec URL: the bundle is written to a temporary directory, then uploaded.
    """
    if is_url(out_dir):
        with tempfile.TemporaryDirectory(prefix="mtl-bundle-") as local:
            export_bundle(
                module, local, model_config=model_config, run_config=run_config, metrics=metrics,
                fp16=fp16, bf16=bf16, onnx=onnx, onnx_tolerance=onnx_tolerance,
            )  # fmt: skip
            upload_bundle(Path(local), str(out_dir))
        return out_dir  # type: ignore[return-value]
    out = Path(out_dir)
    if onnx and module.example_input_array is None:
        raise ExportError(
            f"{class_path_of(module)}: ONNX export needs `example_input_array` set on the LightningModule"
        )
    out.mkdir(parents=True, exist_ok=True)
    if model_config is None:
        hparams = {k: v for k, v in dict(module.hparams).items() if not k.startswith("_")}
        model_config = {"class_path": class_path_of(module), "init_args": hparams}
    was_training = module.training
    module.eval()
    try:
        state = exported_state_dict(module)
        files = [WEIGHTS_FILE]
        save_file(state, str(out / WEIGHTS_FILE), metadata={"format": "pt", "dtype": "float32"})
        for flag, suffix in ((fp16, "fp16"), (bf16, "bf16")):
            if flag:
                name = f"model.{suffix}.safetensors"
                save_file(_cast(state, HALF_DTYPES[suffix]), str(out / name), metadata={"format": "pt"})
                files.append(name)
        extras = getattr(module, "export_extras", None)
        if callable(extras):
            extras(out)
        checks: dict[str, Any] = {}
        if onnx:
            checks["onnx"] = export_onnx(module, out / "model.onnx", tolerance=onnx_tolerance)
            files.append("model.onnx")
    finally:
        module.train(was_training)

    if run_config is not None:
        (out / "config.yaml").write_text(yaml.safe_dump(run_config, sort_keys=False))
        files.append("config.yaml")
    hparams = _yaml_safe(dict(module.hparams))
    (out / "hparams.yaml").write_text(yaml.safe_dump(hparams, sort_keys=False))
    (out / "metrics.json").write_text(json.dumps(plain_metrics(metrics or {}), indent=2) + "\n")
    bundle = {
        "class_path": model_config["class_path"],
        "init_args": _yaml_safe(model_config.get("init_args") or {}),
        "files": [*files, "hparams.yaml", "metrics.json"],
        "checks": checks,
        "torch_version": torch.__version__,
    }
    (out / BUNDLE_FILE).write_text(json.dumps(bundle, indent=2) + "\n")
    return out


def _yaml_safe(value: Any) -> Any:
    """Plain data for YAML/JSON: containers and scalars kept, anything else as its string."""
    if isinstance(value, Mapping):
        return {str(k): _yaml_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_yaml_safe(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Path):
        return str(value)
    return str(value)


def _flatten_outputs(output: Any) -> list[np.ndarray]:
    if isinstance(output, torch.Tensor):
        return [output.detach().cpu().float().numpy()]
    if isinstance(output, Mapping):
        return [array for value in output.values() for array in _flatten_outputs(value)]
    if isinstance(output, list | tuple):
        return [array for value in output for array in _flatten_outputs(value)]
    return []


def onnx_dynamic_axes(module: LightningModule, inputs: tuple[Any, ...]) -> dict[str, dict[int, str]]:
    """Dynamic axes per ONNX input name (`input_<position>`): axis 0 ("batch") of every input, plus
    the axes the module names in its optional `onnx_dynamic_axes` (`{position: {axis: name}}`)."""
    names = [f"input_{i}" for i in range(len(inputs))]
    axes = {name: {0: "batch"} for name in names}
    extra = getattr(module, "onnx_dynamic_axes", None) or {}
    if not isinstance(extra, Mapping):
        raise ExportError(
            f"{class_path_of(module)}.onnx_dynamic_axes: expected {{input position: {{axis: name}}}}, "
            f"got {extra!r}"
        )
    for position, named in extra.items():
        if not isinstance(position, int) or not 0 <= position < len(inputs):
            raise ExportError(
                f"{class_path_of(module)}.onnx_dynamic_axes: no input {position!r}; "
                f"example_input_array has {len(inputs)} (positions 0..{len(inputs) - 1})"
            )
        ndim = getattr(inputs[position], "ndim", 0)
        for axis, name in dict(named).items():
            if not isinstance(axis, int) or not 0 <= axis < ndim:
                raise ExportError(
                    f"{class_path_of(module)}.onnx_dynamic_axes: input {position} has no axis {axis!r}; "
                    f"its example has {ndim} axes"
                )
            axes[names[position]][axis] = str(name)
    return axes


def grown_inputs(inputs: tuple[Any, ...], dynamic_axes: dict[str, dict[int, str]]) -> tuple[Any, ...]:
    """The example with every dynamic axis doubled by tiling (batch 2 -> 4, 64 x 64 -> 128 x 128).

    Tiling keeps the values valid (token ids stay ids) and keeps sizes multiples of whatever the
    example's were (e.g. a U-Net's 32), so the exported graph is checked away from the traced shape.
    """
    grown = []
    for tensor, axes in zip(inputs, dynamic_axes.values(), strict=True):
        if isinstance(tensor, torch.Tensor):
            for axis in axes:
                tensor = torch.cat([tensor, tensor], dim=axis)
        grown.append(tensor)
    return tuple(grown)


def _onnx_difference(session: Any, module: LightningModule, inputs: tuple[Any, ...], path: Path):
    """(largest |onnx - torch|, largest relative to the output's scale, number of outputs)."""
    with torch.no_grad():
        expected = _flatten_outputs(module(*inputs))
    names = [i.name for i in session.get_inputs()]
    actual = session.run(None, {n: t.detach().cpu().numpy() for n, t in zip(names, inputs, strict=True)})
    if len(actual) != len(expected):
        raise ExportError(f"{path}: ONNX model has {len(actual)} outputs, PyTorch gave {len(expected)}")
    worst_abs, worst_relative = 0.0, 0.0
    for onnx_output, torch_output in zip(actual, expected, strict=True):
        if onnx_output.shape != torch_output.shape:
            shapes = f"{onnx_output.shape} instead of {torch_output.shape}"
            raise ExportError(f"{path}: for inputs {[tuple(t.shape) for t in inputs]} ONNX gave {shapes}")
        if not torch_output.size:
            continue
        difference = float(np.max(np.abs(onnx_output - torch_output)))
        scale = max(1.0, float(np.max(np.abs(torch_output))))
        worst_abs, worst_relative = max(worst_abs, difference), max(worst_relative, difference / scale)
    return worst_abs, worst_relative, len(actual)


def export_onnx(module: LightningModule, path: Path, tolerance: float = 1e-4) -> dict[str, Any]:
    """Export `module.forward` to ONNX and check onnxruntime gives PyTorch's outputs.

    The check is relative to each output's scale (|onnx - torch| <= tolerance * max(1, max|torch|)), so
    a model whose outputs are in m/s is held to the same float32 precision as one in [-1, 1]. The batch
    axis is dynamic, and so are the axes named in the module's `onnx_dynamic_axes` (see above); the
    check runs at the example's shape and again with every dynamic axis doubled (`grown_inputs`).
    """
    import onnxruntime

    example = module.example_input_array
    if example is None:
        raise ExportError(
            f"{class_path_of(module)}: ONNX export needs `example_input_array` set on the LightningModule"
        )
    inputs = example if isinstance(example, tuple) else (example,)
    inputs = tuple(t.to(module.device) if isinstance(t, torch.Tensor) else t for t in inputs)
    dynamic_axes = onnx_dynamic_axes(module, inputs)
    torch.onnx.export(
        module, inputs, str(path), input_names=list(dynamic_axes), dynamic_axes=dynamic_axes, dynamo=False
    )
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    checked = [inputs, grown_inputs(inputs, dynamic_axes)]
    results = [_onnx_difference(session, module, shaped, path) for shaped in checked]
    worst_abs = max(r[0] for r in results)
    worst_relative = max(r[1] for r in results)
    if not worst_relative <= tolerance:
        raise ExportError(
            f"{path}: onnxruntime differs from PyTorch by {worst_abs:.3g} "
            f"({worst_relative:.3g} of the output scale; tolerance {tolerance:g})"
        )
    return {
        "max_abs_difference": worst_abs,
        "max_relative_difference": worst_relative,
        "tolerance": tolerance,
        "outputs": results[0][2],
        "checked_input_shapes": [[list(t.shape) for t in shaped] for shaped in checked],
        "dynamic_axes": {
            name: {str(axis): label for axis, label in axes.items()} for name, axes in dynamic_axes.items()
        },
    }


def import_class(class_path: str) -> type:
    module_name, _, class_name = class_path.rpartition(".")
    return getattr(importlib.import_module(module_name), class_name)


def build_module(model_config: Mapping[str, Any]) -> LightningModule:
    """Instantiate a LightningModule from `{"class_path", "init_args"}` as LightningCLI would."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(LightningModule, "model", required=True)
    config = parser.parse_object({"model": dict(model_config)})
    return parser.instantiate_classes(config)["model"]


def load_bundle(directory: str | Path, dtype: str = "fp32", map_location: str = "cpu") -> LightningModule:
    """The exported module in eval mode with its weights, ready for inference.

    `directory` is a local path or an fsspec URL (`s3://bucket/runs/fwi/x/export`), which is copied
    to a temporary directory first. `dtype="fp16"` or `"bf16"` loads the half-precision copy when the
    bundle has one.
    """
    if is_url(directory):
        with tempfile.TemporaryDirectory(prefix="mtl-bundle-") as local:
            download_bundle(str(directory), Path(local))
            return _load_local_bundle(Path(local), dtype, map_location)
    return _load_local_bundle(Path(directory), dtype, map_location)


def download_bundle(url: str, local: Path) -> None:
    """Copy the bundle at `url` into the directory `local`."""
    fs, root = filesystem(url)
    if not fs.isfile(join(root, BUNDLE_FILE)):
        raise ExportError(f"{url}: not an export bundle (no {BUNDLE_FILE})")
    for remote in fs.find(root):
        target = local / remote[len(root.rstrip("/")) + 1 :]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(fs.cat_file(remote))


def upload_bundle(local: Path, url: str) -> None:
    """Copy a bundle written in `local` to `url`, each file atomically, bundle.json last: a reader who
    finds bundle.json finds every file it lists."""
    files = sorted(p for p in local.rglob("*") if p.is_file())
    for path in sorted(files, key=lambda p: p.name == BUNDLE_FILE):
        write_bytes_atomically(path.read_bytes(), join(url, path.relative_to(local).as_posix()))


def _load_local_bundle(directory: Path, dtype: str, map_location: str) -> LightningModule:
    manifest_path = directory / BUNDLE_FILE
    if not manifest_path.is_file():
        raise ExportError(f"{directory}: not an export bundle (no {BUNDLE_FILE})")
    manifest = json.loads(manifest_path.read_text())
    weights_name = WEIGHTS_FILE if dtype == "fp32" else f"model.{dtype}.safetensors"
    weights_path = directory / weights_name
    if not weights_path.is_file():
        raise ExportError(f"{weights_path}: missing; the bundle has {manifest.get('files')}")
    module = build_module({"class_path": manifest["class_path"], "init_args": manifest["init_args"]})
    state = load_file(str(weights_path), device=map_location)
    loader = getattr(module, "load_exported_state_dict", None)
    if callable(loader):
        loader(state)
    else:
        module.load_state_dict(state, strict=True)
    if dtype != "fp32":
        module = module.to(HALF_DTYPES[dtype])
    return module.eval()


def model_config_from_run(run_config: Mapping[str, Any] | None) -> dict[str, Any] | None:
    model = (run_config or {}).get("model")
    if isinstance(model, Mapping) and "class_path" in model:
        return {"class_path": model["class_path"], "init_args": dict(model.get("init_args") or {})}
    return None


def export_checkpoint(
    checkpoint: Path,
    *,
    out: Path,
    run_config: Path | None = None,
    fp16: bool = False,
    bf16: bool = False,
    onnx: bool = False,
) -> Path:
    """Export a training checkpoint as a self-contained bundle.

    Args:
        checkpoint: a `.ckpt` written by `mtl fit` (read with weights_only=True).
        out: directory to write the bundle into.
        run_config: the run's config.yaml; default: `config.yaml` of the run the checkpoint belongs to.
        fp16: also write float16 weights.
        bf16: also write bfloat16 weights.
        onnx: also write model.onnx, checked with onnxruntime.
    """
    checkpoint, out = Path(checkpoint), Path(out)
    if out.exists() and not out.is_dir():  # refuse before the (slow) model load, and never replace a file
        raise ExportError(f"{out}: --out must be a directory for the bundle, but a file of that name exists")
    state = read_checkpoint(checkpoint)
    if run_config is None:
        candidate = checkpoint.resolve().parent.parent / "config.yaml"
        run_config = candidate if candidate.is_file() else None
    config = yaml.safe_load(Path(run_config).read_text()) if run_config else None
    model_config = model_config_from_run(config)
    hparams = dict(state.get("hyper_parameters") or {})
    if model_config is None:
        if "_class_path" not in hparams:
            raise ExportError(
                f"{checkpoint}: cannot tell which LightningModule it belongs to: no config.yaml beside the run "
                "and no `_class_path` in its hyperparameters; pass --run_config"
            )
        class_path = hparams.pop("_class_path")
        hparams.pop("_instantiator", None)
        model_config = {"class_path": class_path, "init_args": hparams}
    module = build_module(model_config)
    module.load_state_dict(state["state_dict"], strict=True)
    metrics = {"global_step": state.get("global_step", 0), "epoch": state.get("epoch", 0)}
    for callback_state in (state.get("callbacks") or {}).values():
        if isinstance(callback_state, Mapping) and "best_model_score" in callback_state:
            score = callback_state.get("best_model_score")
            if isinstance(score, torch.Tensor):
                metrics[f"best_{callback_state.get('monitor')}"] = score
    out_dir = export_bundle(
        module,
        out,
        model_config=model_config,
        run_config=config,
        metrics=metrics,
        fp16=fp16,
        bf16=bf16,
        onnx=onnx,
    )
    print(f"exported {checkpoint} -> {out_dir}")
    return out_dir


def load_module(
    path: str | Path, map_location: str = "cpu", default_class_path: str | None = None
) -> LightningModule:
    """The trained LightningModule in eval mode, from an export bundle directory or a `.ckpt` of `mtl fit`.

    The one loader every predict, submit, design and serve verb uses. A bundle may be a local directory
    or an fsspec URL (`s3://bucket/run/export`). A checkpoint is read with `weights_only=True`
    (`common.checkpoint.read_checkpoint`); its module class comes from the run's `config.yaml`
    (`<run>/checkpoints/x.ckpt` -> `<run>/config.yaml`), else from the `_class_path` LightningCLI stores in
    the hyperparameters, else from `default_class_path` (a domain's own task, for checkpoints written
    outside `mtl fit`).
    """
    if "://" in str(path):
        return load_bundle(str(path), map_location=map_location)
    path = Path(path)
    if path.is_dir():
        return load_bundle(path, map_location=map_location)
    if not path.exists():
        raise ExportError(f"{path}: not found; expected an export bundle directory or a .ckpt file")
    state = read_checkpoint(path, map_location=map_location)
    candidate = path.resolve().parent.parent / "config.yaml"
    model_config = (
        model_config_from_run(yaml.safe_load(candidate.read_text())) if candidate.is_file() else None
    )
    if model_config is None:
        hparams = dict(state.get("hyper_parameters") or {})
        if "_class_path" not in hparams and default_class_path is not None:
            hparams["_class_path"] = default_class_path
        if "_class_path" not in hparams:
            raise ExportError(
                f"{path}: cannot tell which LightningModule it belongs to: no config.yaml beside the run "
                "and no `_class_path` in its hyperparameters"
            )
        hparams.pop("_instantiator", None)
        model_config = {"class_path": hparams.pop("_class_path"), "init_args": hparams}
    if "state_dict" not in state:
        raise ExportError(f"{path}: a checkpoint without 'state_dict'; found keys {sorted(state)[:8]}")
    module = build_module(model_config)
    module.load_state_dict(state["state_dict"], strict=True)
    return module.eval()
