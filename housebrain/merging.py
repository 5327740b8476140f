"""Merging LoRA adapters trained on different shards of the same base model.

A LoRA adapter changes a weight by `delta = scale * B @ A` (scale = alpha / r). The merges:

- `average` / `weighted`: exactly `sum_i w_i * delta_i` (weights summing to 1). Written as one adapter
  of rank `sum r_i` whose A is the adapters' A stacked and whose B is `w_i * scale_i * B_i` side by
  side, with scale 1: `B_cat @ A_cat = sum_i w_i scale_i B_i A_i`. (peft's `linear` combination
  averages A and B separately, which gives `mean(B) @ mean(A)`, not the mean of the deltas.)
- `best`: one adapter unchanged, the one with the best eval metric.
- `ties`, `dare_ties`, `dare_linear`: peft's `add_weighted_adapter` (sparsified, approximate by design).

Adapters must share rank, target modules and base model; otherwise the merge stops naming the adapter.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from housebrain.models.lora import SOURCE_FILE

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"

STRATEGIES = ("average", "weighted", "best", "ties", "dare_ties", "dare_linear")


class MergeError(ValueError):
    """Adapters that cannot be merged; the message names the adapter."""


@dataclass
class Adapter:
    path: Path
    config: dict[str, Any]
    weights: dict[str, torch.Tensor]

    @property
    def scale(self) -> float:
        r, alpha = self.config["r"], self.config["lora_alpha"]
        return alpha / r**0.5 if self.config.get("use_rslora") else alpha / r

    @property
    def base_model(self) -> str | None:
        source = self.path / SOURCE_FILE
        if source.is_file():
            return json.loads(source.read_text())["model_path"]
        return self.config.get("base_model_name_or_path")


def adapter_directory(path: str | Path) -> Path:
    """An adapter directory, or the `adapter/` inside an export bundle."""
    path = Path(path)
    if (path / ADAPTER_CONFIG).is_file():
        return path
    if (path / "adapter" / ADAPTER_CONFIG).is_file():
        return path / "adapter"
    raise MergeError(
        f"{path}: not a peft adapter directory (no {ADAPTER_CONFIG}) nor an export bundle with adapter/"
    )


def load_adapter(path: str | Path) -> Adapter:
    directory = adapter_directory(path)
    weights_path = directory / ADAPTER_WEIGHTS
    if not weights_path.is_file():
        raise MergeError(f"{directory}: missing {ADAPTER_WEIGHTS}")
    return Adapter(
        directory, json.loads((directory / ADAPTER_CONFIG).read_text()), load_file(str(weights_path))
    )


def check_compatible(adapters: list[Adapter]) -> None:
    first = adapters[0]
    targets = set(first.config.get("target_modules") or [])
    for adapter in adapters[1:]:
        if adapter.config["r"] != first.config["r"]:
            raise MergeError(
                f"{adapter.path}: LoRA rank {adapter.config['r']} differs from {first.path} (rank {first.config['r']})"
            )
        other = set(adapter.config.get("target_modules") or [])
        if other != targets:
            raise MergeError(
                f"{adapter.path}: target modules {sorted(other)} differ from {first.path} ({sorted(targets)})"
            )
        if set(adapter.weights) != set(first.weights):
            raise MergeError(f"{adapter.path}: adapted layers differ from {first.path}")
        if adapter.base_model and first.base_model and adapter.base_model != first.base_model:
            raise MergeError(
                f"{adapter.path}: trained on base {adapter.base_model}, {first.path} on {first.base_model}"
            )


def lora_pairs(weights: dict[str, torch.Tensor]) -> list[str]:
    """Module prefixes that have both lora_A and lora_B weights."""
    return sorted(k[: -len(".lora_A.weight")] for k in weights if k.endswith(".lora_A.weight"))


def delta(adapter: Adapter, prefix: str) -> torch.Tensor:
    """The weight change `scale * B @ A` an adapter makes to one module, (out, in)."""
    return (
        adapter.scale
        * adapter.weights[f"{prefix}.lora_B.weight"].float()
        @ adapter.weights[f"{prefix}.lora_A.weight"].float()
    )


def concatenate(
    adapters: list[Adapter], weights: list[float]
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(config, weights) of one adapter whose delta is exactly `sum_i weights[i] * delta_i`."""
    merged: dict[str, torch.Tensor] = {}
    for prefix in lora_pairs(adapters[0].weights):
        merged[f"{prefix}.lora_A.weight"] = torch.cat(
            [a.weights[f"{prefix}.lora_A.weight"].float() for a in adapters], dim=0
        )
        merged[f"{prefix}.lora_B.weight"] = torch.cat(
            [
                w * a.scale * a.weights[f"{prefix}.lora_B.weight"].float()
                for a, w in zip(adapters, weights, strict=True)
            ],
            dim=1,
        )
    rank = sum(a.config["r"] for a in adapters)
    config = dict(adapters[0].config)
    config.update(
        {"r": rank, "lora_alpha": rank, "use_rslora": False, "rank_pattern": {}, "alpha_pattern": {}}
    )
    return config, {k: v.contiguous() for k, v in merged.items()}


def metric_of(adapter_path: Path, metric: str) -> float | None:
    """A metric from the export bundle the adapter came from (`<bundle>/metrics.json`)."""
    for candidate in (adapter_path / "metrics.json", adapter_path.parent / "metrics.json"):
        if candidate.is_file():
            value = json.loads(candidate.read_text()).get(metric)
            return float(value) if isinstance(value, int | float) else None
    return None


def weights_from_losses(losses: list[float]) -> list[float]:
    """Merge weights from eval losses: inverse loss, normalised to sum 1 (lower loss, more weight)."""
    inverse = [1.0 / max(loss, 1e-6) for loss in losses]
    return [v / sum(inverse) for v in inverse]


def write_adapter(
    directory: Path, config: dict[str, Any], weights: dict[str, torch.Tensor], source: Adapter
) -> Path:
    """A peft adapter directory (config, weights, tokenizer files and base path copied from `source`)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    save_file(weights, str(directory / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    for file in source.path.iterdir():
        if file.name not in (ADAPTER_CONFIG, ADAPTER_WEIGHTS) and file.is_file():
            shutil.copyfile(file, directory / file.name)
    return directory


def peft_combination(
    adapters: list[Adapter], weights: list[float], strategy: str, density: float, base: torch.nn.Module
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(config, weights) from peft's `add_weighted_adapter` (ties / dare_ties / dare_linear)."""
    from peft import PeftModel, get_peft_model_state_dict

    model = PeftModel.from_pretrained(base, str(adapters[0].path), adapter_name="a0")
    for i, adapter in enumerate(adapters[1:], start=1):
        model.load_adapter(str(adapter.path), adapter_name=f"a{i}")
    names = [f"a{i}" for i in range(len(adapters))]
    model.add_weighted_adapter(names, weights, "merged", combination_type=strategy, density=density)
    config = model.peft_config["merged"].to_dict()
    config = {k: (sorted(v) if isinstance(v, set) else v) for k, v in config.items()}
    state = get_peft_model_state_dict(model, adapter_name="merged")
    return config, {k: v.detach().float().contiguous() for k, v in state.items()}


def _weights_for(
    adapters: list[Adapter],
    strategy: str,
    weights: list[float] | None,
    metric: str,
    losses: list[float] | None,
) -> list[float]:
    n = len(adapters)
    if weights is not None:
        if len(weights) != n or min(weights) < 0 or sum(weights) <= 0:
            raise MergeError(f"--weights needs {n} non-negative numbers with a positive sum, got {weights}")
        return [w / sum(weights) for w in weights]
    if strategy == "average" or strategy in ("ties", "dare_ties", "dare_linear"):
        return [1.0 / n] * n
    values = [metric_of(a.path, metric) for a in adapters]
    if any(v is None for v in values):
        if losses is None:
            missing = [str(a.path) for a, v in zip(adapters, values, strict=True) if v is None]
            raise MergeError(
                f"{strategy} merge needs {metric!r} in metrics.json of {missing}, --weights or --eval"
            )
        values = losses
    if strategy == "best":
        best = min(range(n), key=lambda i: values[i])
        return [1.0 if i == best else 0.0 for i in range(n)]
    return weights_from_losses([float(v) for v in values])


def merge_adapters(
    paths: list[str],
    out: str | Path,
    strategy: str = "average",
    weights: list[float] | None = None,
    metric: str = "val/loss",
    density: float = 0.5,
    eval_file: str | None = None,
    eval_samples: int = 16,
    generate_samples: int = 0,
    max_length: int = 1024,
    max_new_tokens: int = 1536,
    constrained: bool = False,
    merged_dtype: str = "float32",
    base: str | None = None,
) -> dict[str, Any]:
    """Merge, export `out/adapter` and `out/merged`, evaluate, write `out/report.{json,md}`."""
    from peft import PeftModel

    from housebrain.data.chat import read_chat_jsonl
    from housebrain.evaluation import evaluate_conversations, generation_rates
    from housebrain.models.causal_lm import load_causal_lm

    if strategy not in STRATEGIES:
        raise MergeError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if not paths:
        raise MergeError("--adapters needs at least one adapter")
    adapters = [load_adapter(p) for p in paths]
    check_compatible(adapters)
    base_path = base or adapters[0].base_model
    if not base_path or not Path(base_path).exists():
        raise MergeError(f"{adapters[0].path}: base model {base_path!r} not found; pass --base")
    out = Path(out)
    conversations = read_chat_jsonl(eval_file)[:eval_samples] if eval_file else []

    def evaluate(model: Any, tokenizer: Any) -> dict[str, float]:
        result = evaluate_conversations(model, tokenizer, conversations, max_length) if conversations else {}
        if generate_samples and conversations:
            prompts = conversations[:generate_samples]
            result.update(generation_rates(model, tokenizer, prompts, max_new_tokens))
            if constrained:
                rates = generation_rates(model, tokenizer, prompts, max_new_tokens, constrained=True)
                result.update({f"constrained_{k}": v for k, v in rates.items()})
        return result

    rows: list[dict[str, Any]] = []
    losses = None
    if conversations:
        for adapter in adapters:
            model, tokenizer = load_causal_lm(base_path)
            peft_model = PeftModel.from_pretrained(model, str(adapter.path)).eval()
            rows.append({"adapter": str(adapter.path), **evaluate(peft_model, tokenizer)})
        losses = [row["loss"] for row in rows]
    merge_weights = _weights_for(adapters, strategy, weights, metric, losses)
    if strategy in ("average", "weighted"):
        config, merged = concatenate(adapters, merge_weights)
    elif strategy == "best":
        chosen = adapters[merge_weights.index(1.0)]
        config, merged = chosen.config, chosen.weights
    else:
        model, _ = load_causal_lm(base_path)
        config, merged = peft_combination(adapters, merge_weights, strategy, density, model)
    adapter_out = write_adapter(out / "adapter", config, merged, adapters[0])
    model, tokenizer = load_causal_lm(base_path)
    peft_model = PeftModel.from_pretrained(model, str(adapter_out)).eval()
    merged_row = {"adapter": f"merge ({strategy})", **evaluate(peft_model, tokenizer)}
    full = peft_model.merge_and_unload().to(getattr(torch, merged_dtype))
    full.save_pretrained(out / "merged")
    tokenizer.save_pretrained(out / "merged")
    report = {
        "strategy": strategy,
        "weights": dict(zip([str(a.path) for a in adapters], merge_weights, strict=True)),
        "base_model": str(base_path),
        "rank": config["r"],
        "eval_file": eval_file,
        "eval_samples": len(conversations),
        "results": [*rows, merged_row],
        "outputs": {
            "adapter": str(out / "adapter"),
            "merged_model": str(out / "merged"),
            "merged_dtype": merged_dtype,
        },
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(_report_markdown(report))
    return report


def _report_markdown(report: dict[str, Any]) -> str:
    columns = sorted({k for row in report["results"] for k in row if k != "adapter"})
    lines = [
        f"# Adapter merge: {report['strategy']}",
        "",
        f"Base model: {report['base_model']}; merged rank {report['rank']}; eval: {report['eval_file']} "
        f"({report['eval_samples']} samples)",
        "",
        "| adapter | weight | " + " | ".join(columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for row in report["results"]:
        weight = report["weights"].get(row["adapter"], "")
        cells = [f"{row[c]:.4f}" if isinstance(row.get(c), float) else "" for c in columns]
        lines.append(
            f"| {row['adapter']} | {weight if weight == '' else f'{weight:.3f}'} | "
            + " | ".join(cells)
            + " |"
        )
    lines += [
        "",
        f"Adapter: {report['outputs']['adapter']}  ",
        f"Merged model: {report['outputs']['merged_model']}",
        "",
    ]
    return "\n".join(lines)
