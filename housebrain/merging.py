"""Merging LoRA adapters trained on different shards of the same base model.

A LoRA adapter changes a weight by the task vector `delta = scale * B @ A` (scale = alpha / r, or
alpha / sqrt(r) with rsLoRA). Every strategy works on these deltas, module by module:

- `average` / `weighted`: exactly `sum_i w_i * delta_i` (weights summing to 1). Also written as one
  adapter of rank `sum r_i` whose A is the adapters' A stacked and whose B is `w_i * scale_i * B_i`
  side by side, with scale 1: `B_cat @ A_cat = sum_i w_i scale_i B_i A_i`. (peft's `linear`
  combination averages A and B separately, which gives `mean(B) @ mean(A)`, not the mean of deltas.)
  `weighted` without `--weights` weighs by the metric: inverse value for a lower-is-better metric
  (`val/loss`), proportional for a higher-is-better one (`val/validator_pass_rate`).
- `best`: the adapter with the best metric (argmin or argmax by `--metric_mode`), unchanged.
- `ties` (Yadav et al. 2023, "TIES-Merging", arXiv:2306.01708): trim each delta to its `density`
  fraction of largest magnitudes, elect each weight's sign as the sign of the (weighted) sum of the
  trimmed deltas, and take the (weighted) mean of the trimmed deltas that agree with it (the paper's
  disjoint mean; with weights, normalised by the weights of the agreeing adapters, as mergekit's
  `ties` with `normalize`).
- `dare_linear` (Yu et al. 2023, "Language Models are Super Mario", arXiv:2311.03099): drop each
  element of each delta with probability p = 1 - density and rescale the kept ones by 1 / (1 - p),
  then the weighted sum. `dare_ties`: the same drop and rescale, then TIES' sign election and
  disjoint mean. The drop uses `torch.Generator().manual_seed(seed)`, drawn module by module (sorted
  names), adapter by adapter, one `torch.rand(delta.shape)` each; the seed is in the report.

peft's `add_weighted_adapter` (src/peft/utils/merge_utils.py) applies ties/dare to the A and B factors
separately, not to the deltas; mergekit's generalized task arithmetic works on full weights as here.
TIES and DARE results are not low rank: `out/merged` holds them exactly; `out/adapter` then holds the
best rank-`sum r_i` approximation (truncated SVD), with its relative error in the report.

The adapters' base model is identified by content (`housebrain.models.identity`): the path recorded at
training time is only a hint, and `--base` points at wherever the same weights are on this machine.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from common.errors import UserInputError
from housebrain.models.identity import BaseIdentityError, base_identity, describe, same_base
from housebrain.models.lora import SOURCE_FILE

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"

STRATEGIES = ("average", "weighted", "best", "ties", "dare_ties", "dare_linear")
SPARSE_STRATEGIES = ("ties", "dare_ties", "dare_linear")
#: Direction of metrics the project logs (lower or higher is better); others need --metric_mode.
KNOWN_METRIC_MODES = {
    "loss": "min",
    "select": "min",
    "token_accuracy": "max",
    "json_parse_rate": "max",
    "schema_valid_rate": "max",
    "validator_pass_rate": "max",
    "field_accuracy": "max",
}


class MergeError(UserInputError):
    """Adapters that cannot be merged; the message names the adapter or the option."""


@dataclass
class Adapter:
    path: Path
    config: dict[str, Any]
    weights: dict[str, torch.Tensor]
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def scale(self) -> float:
        r, alpha = self.config["r"], self.config["lora_alpha"]
        return alpha / r**0.5 if self.config.get("use_rslora") else alpha / r

    @property
    def recorded_base_path(self) -> str | None:
        """Where the base was when the adapter was trained (a hint: other machines have other paths)."""
        return self.source.get("model_path") or self.config.get("base_model_name_or_path")

    @property
    def base_identity(self) -> dict[str, Any] | None:
        return self.source.get("base_identity")


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


def _read_json_object(file: Path) -> dict[str, Any]:
    try:
        value = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MergeError(f"{file}: expected a JSON object, could not read it ({error})") from None
    if not isinstance(value, dict):
        raise MergeError(f"{file}: expected a JSON object, found {type(value).__name__}")
    return value


def load_adapter(path: str | Path) -> Adapter:
    """An adapter's config, LoRA weights and base record; unreadable files are named in the error."""
    directory = adapter_directory(path)
    weights_path = directory / ADAPTER_WEIGHTS
    if not weights_path.is_file():
        raise MergeError(f"{directory}: missing {ADAPTER_WEIGHTS}")
    config = _read_json_object(directory / ADAPTER_CONFIG)
    for key in ("r", "lora_alpha"):
        if not isinstance(config.get(key), int | float):
            raise MergeError(
                f"{directory / ADAPTER_CONFIG}: {key}: expected a number, found {config.get(key)!r}"
            )
    try:
        weights = load_file(str(weights_path))
    except Exception as error:  # safetensors raises SafetensorError / OSError on truncated files
        raise MergeError(
            f"{weights_path}: not a readable safetensors file (truncated or corrupt? {error})"
        ) from None
    source_file = directory / SOURCE_FILE
    source = _read_json_object(source_file) if source_file.is_file() else {}
    adapter = Adapter(directory, config, weights, source)
    for prefix in lora_pairs(weights):
        if f"{prefix}.lora_B.weight" not in weights:
            raise MergeError(f"{weights_path}: {prefix} has lora_A but no lora_B")
    if not lora_pairs(weights):
        raise MergeError(f"{weights_path}: no LoRA weights (*.lora_A.weight / *.lora_B.weight)")
    return adapter


def check_compatible(adapters: list[Adapter]) -> None:
    """Same rank, targets, layers, shapes and base model (by content) for all adapters."""
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
        for key, tensor in adapter.weights.items():
            if tensor.shape != first.weights[key].shape:
                raise MergeError(
                    f"{adapter.path}: {key} has shape {tuple(tensor.shape)}, {first.path} "
                    f"{tuple(first.weights[key].shape)} (adapters for different base models?)"
                )
        ours, theirs = adapter.base_identity, first.base_identity
        if ours and theirs and not same_base(ours, theirs):
            raise MergeError(
                f"{adapter.path}: trained on base {describe(ours)}, {first.path} on {describe(theirs)}; "
                "adapters of different base models cannot be merged"
            )


def resolve_base(adapters: list[Adapter], base: str | None) -> tuple[str, dict[str, Any] | None]:
    """(path, identity) of the base model on this machine, checked against the adapters' record.

    `base` (the `--base` option) wins over the path recorded at training time; either must hold the
    weights the adapters were trained on (same size and SHA-256).
    """
    expected = next((a.base_identity for a in adapters if a.base_identity), None)
    where = next((a.path / SOURCE_FILE for a in adapters if a.base_identity), None)
    if base:
        if not Path(base).exists():
            raise MergeError(f"--base {base}: not found (expected a model directory or .gguf file)")
        try:
            found = base_identity(base)
        except BaseIdentityError as error:
            raise MergeError(f"--base {error}") from None
        if expected and not same_base(found, expected):
            raise MergeError(
                f"--base {base}: weights {describe(found)} are not the base the adapters were trained on "
                f"({describe(expected)}, recorded in {where})"
            )
        return str(base), found
    recorded = adapters[0].recorded_base_path
    if recorded and Path(recorded).exists():
        found = base_identity(recorded)
        if expected is None or same_base(found, expected):
            return recorded, found
        raise MergeError(
            f"{recorded}: holds {describe(found)}, not the adapters' base {describe(expected)}; "
            "pass --base with a copy of the right model"
        )
    wanted = describe(expected) if expected else "(no identity recorded)"
    raise MergeError(
        f"{adapters[0].path}: base model {wanted} not found at its training-time path {recorded!r}; "
        "pass --base with its location on this machine"
    )


def lora_pairs(weights: dict[str, torch.Tensor]) -> list[str]:
    """Module prefixes that have lora_A weights, sorted (the order DARE's random draws follow)."""
    return sorted(k[: -len(".lora_A.weight")] for k in weights if k.endswith(".lora_A.weight"))


def delta(adapter: Adapter, prefix: str) -> torch.Tensor:
    """The task vector `scale * B @ A` an adapter adds to one module's weight, (out, in)."""
    return (
        adapter.scale
        * adapter.weights[f"{prefix}.lora_B.weight"].float()
        @ adapter.weights[f"{prefix}.lora_A.weight"].float()
    )


# ---- merge operators on task vectors: stacked (n, out, in), weights (n,) ----------------------------
def trim_to_density(task_vector: torch.Tensor, density: float) -> torch.Tensor:
    """TIES' trim: keep the `int(density * numel)` largest magnitudes, zero the rest."""
    keep = int(density * task_vector.numel())
    if keep <= 0:
        return torch.zeros_like(task_vector)
    flat = task_vector.flatten()
    mask = torch.zeros_like(flat, dtype=torch.bool)
    mask[flat.abs().topk(keep).indices] = True
    return (flat * mask).view_as(task_vector)


def drop_and_rescale(task_vector: torch.Tensor, density: float, generator: torch.Generator) -> torch.Tensor:
    """DARE: keep each element with probability `density` (drop with p = 1 - density), kept / (1 - p)."""
    keep = torch.rand(task_vector.shape, generator=generator) < density
    return task_vector * keep / density


def disjoint_mean(task_vectors: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """TIES' elect + disjoint merge: per element, the weighted mean over the adapters whose non-zero
    value has the sign of the weighted sum (0 where none agrees). task_vectors (n, ...), weights (n,)."""
    w = weights.view(-1, *([1] * (task_vectors.dim() - 1)))
    elected = torch.sign((w * task_vectors).sum(0))
    agree = (torch.sign(task_vectors) == elected) & (task_vectors != 0)
    total = (w * task_vectors * agree).sum(0)
    weight_sum = (w * agree).sum(0)
    return torch.where(weight_sum > 0, total / weight_sum.clamp(min=1e-12), torch.zeros_like(total))


def merged_deltas(
    adapters: list[Adapter], strategy: str, weights: list[float], density: float, seed: int
) -> dict[str, torch.Tensor]:
    """The merged task vector of every adapted module (prefix -> (out, in))."""
    if strategy in SPARSE_STRATEGIES and not 0 < density <= 1:
        raise MergeError(f"--density must be in (0, 1], got {density}")
    generator = torch.Generator().manual_seed(seed)
    w = torch.tensor(weights, dtype=torch.float32)
    result: dict[str, torch.Tensor] = {}
    for prefix in lora_pairs(adapters[0].weights):
        vectors = [delta(a, prefix) for a in adapters]
        if strategy == "ties":
            stacked = torch.stack([trim_to_density(v, density) for v in vectors])
            result[prefix] = disjoint_mean(stacked, w)
        elif strategy in ("dare_ties", "dare_linear"):
            stacked = torch.stack([drop_and_rescale(v, density, generator) for v in vectors])
            if strategy == "dare_ties":
                result[prefix] = disjoint_mean(stacked, w)
            else:
                result[prefix] = (w.view(-1, 1, 1) * stacked).sum(0)
        else:  # average, weighted, best (one-hot weights)
            result[prefix] = sum(wi * v for wi, v in zip(weights, vectors, strict=True))
    return result


# ---- adapters written out ---------------------------------------------------------------------------
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
    return _scale_one_config(adapters[0].config, rank), {k: v.contiguous() for k, v in merged.items()}


def _scale_one_config(config: dict[str, Any], rank: int) -> dict[str, Any]:
    config = dict(config)
    config.update(
        {"r": rank, "lora_alpha": rank, "use_rslora": False, "rank_pattern": {}, "alpha_pattern": {}}
    )
    return config


def low_rank_adapter(
    deltas: dict[str, torch.Tensor], config: dict[str, Any], rank: int
) -> tuple[dict[str, Any], dict[str, torch.Tensor], float]:
    """(config, weights, relative Frobenius error) of the best rank-`rank` adapter for `deltas` (SVD)."""
    weights: dict[str, torch.Tensor] = {}
    error_sq = total_sq = 0.0
    for prefix, matrix in deltas.items():
        u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
        k = min(rank, s.numel())
        root = s[:k].sqrt()
        weights[f"{prefix}.lora_B.weight"] = (u[:, :k] * root).contiguous()
        weights[f"{prefix}.lora_A.weight"] = (root[:, None] * vh[:k]).contiguous()
        error_sq += float((s[k:] ** 2).sum())
        total_sq += float((s**2).sum())
    return _scale_one_config(config, rank), weights, math.sqrt(error_sq / max(total_sq, 1e-30))


def write_adapter(
    directory: Path, config: dict[str, Any], weights: dict[str, torch.Tensor], source: Adapter
) -> Path:
    """A peft adapter directory (config, weights, tokenizer files and base record copied from `source`)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    save_file(weights, str(directory / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    for file in source.path.iterdir():
        if file.name not in (ADAPTER_CONFIG, ADAPTER_WEIGHTS, "metrics.json") and file.is_file():
            shutil.copyfile(file, directory / file.name)
    return directory


def fold_into_base(model: torch.nn.Module, deltas: dict[str, torch.Tensor], fan_in_fan_out: bool) -> None:
    """Add each merged delta to its base weight in place (peft's prefix `base_model.model.` dropped)."""
    with torch.no_grad():
        for prefix, matrix in deltas.items():
            name = prefix.removeprefix("base_model.model.")
            try:
                module = model.get_submodule(name)
            except AttributeError:
                raise MergeError(f"adapter module {name} is not in the base model") from None
            update = matrix.T if fan_in_fan_out else matrix
            if module.weight.shape != update.shape:
                raise MergeError(
                    f"adapter module {name}: delta {tuple(update.shape)} does not fit the base weight "
                    f"{tuple(module.weight.shape)}"
                )
            module.weight += update.to(module.weight.dtype)


# ---- merge weights from metrics ---------------------------------------------------------------------
def metric_key(metric: str) -> str:
    """`val/loss` -> `loss`: the key the eval rows and KNOWN_METRIC_MODES use."""
    return metric.split("/", 1)[1] if "/" in metric else metric


def metric_direction(metric: str, mode: str = "auto") -> str:
    """`min` or `max`: given, or inferred for the project's metrics (`val/loss` min, rates max)."""
    if mode in ("min", "max"):
        return mode
    if mode != "auto":
        raise MergeError(f"--metric_mode must be min, max or auto, got {mode!r}")
    key = metric_key(metric).removeprefix("constrained_")
    if key in KNOWN_METRIC_MODES:
        return KNOWN_METRIC_MODES[key]
    if key.endswith("_ok_rate"):
        return "max"
    raise MergeError(
        f"--metric {metric}: direction unknown (lower or higher is better?); pass --metric_mode min|max"
    )


def metric_of(adapter_path: Path, metric: str) -> float | None:
    """A metric from the export bundle the adapter came from (`<bundle>/metrics.json`)."""
    for candidate in (adapter_path / "metrics.json", adapter_path.parent / "metrics.json"):
        if candidate.is_file():
            value = _read_json_object(candidate).get(metric)
            return float(value) if isinstance(value, int | float) else None
    return None


def weights_from_metric(values: list[float], direction: str) -> list[float]:
    """Merge weights from metric values, summing to 1: inverse for `min` metrics, proportional for `max`."""
    if direction == "min":
        raw = [1.0 / max(v, 1e-6) for v in values]
    else:
        raw = [max(v, 0.0) for v in values]
        if sum(raw) <= 0:
            raise MergeError(
                f"every adapter scores {values} on a higher-is-better metric; no weights follow from "
                "it (pass --weights or use --strategy average)"
            )
    return [v / sum(raw) for v in raw]


def weights_from_losses(losses: list[float]) -> list[float]:
    """Merge weights from eval losses: inverse loss, normalised to sum 1 (lower loss, more weight)."""
    return weights_from_metric(losses, "min")


def merge_weights_for(
    adapters: list[Adapter],
    strategy: str,
    weights: list[float] | None,
    metric: str,
    direction: str,
    measured: list[dict[str, float]] | None,
) -> tuple[list[float], list[float] | None]:
    """(merge weights summing to 1, the metric values they came from or None)."""
    n = len(adapters)
    if weights is not None:
        if strategy == "best":
            raise MergeError("--weights does not apply to --strategy best (it picks by --metric)")
        if len(weights) != n or min(weights) < 0 or sum(weights) <= 0:
            raise MergeError(f"--weights needs {n} non-negative numbers with a positive sum, got {weights}")
        return [w / sum(weights) for w in weights], None
    if strategy in ("average", *SPARSE_STRATEGIES):
        return [1.0 / n] * n, None
    values = [metric_of(a.path, metric) for a in adapters]
    if any(v is None for v in values):
        key = metric_key(metric)
        if measured is None or any(key not in row for row in measured):
            missing = [str(a.path) for a, v in zip(adapters, values, strict=True) if v is None]
            raise MergeError(
                f"{strategy} merge needs {metric!r} in metrics.json of {missing}, --weights or --eval "
                "(with --generate_samples for generation rates)"
            )
        values = [row[key] for row in measured]
    scores = [float(v) for v in values]
    if strategy == "best":
        order = (lambda i: scores[i]) if direction == "min" else (lambda i: -scores[i])
        best = min(range(n), key=order)
        return [1.0 if i == best else 0.0 for i in range(n)], scores
    return weights_from_metric(scores, direction), scores


def merge_adapters(
    paths: list[str],
    out: str | Path,
    strategy: str = "average",
    weights: list[float] | None = None,
    metric: str = "val/loss",
    metric_mode: str = "auto",
    density: float = 0.5,
    seed: int = 0,
    eval_file: str | None = None,
    eval_samples: int = 16,
    generate_samples: int = 0,
    max_length: int = 1024,
    max_new_tokens: int = 1536,
    constrained: bool = False,
    merged_dtype: str = "bfloat16",
    base: str | None = None,
) -> dict[str, Any]:
    """Merge, export `out/adapter` and `out/merged`, evaluate, write `out/report.{json,md}`."""
    from peft import PeftModel

    from housebrain.data.chat import read_chat_jsonl
    from housebrain.evaluation import evaluate_conversations, generation_rates
    from housebrain.models.causal_lm import load_causal_lm, save_model

    if strategy not in STRATEGIES:
        raise MergeError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if merged_dtype not in ("float32", "float16", "bfloat16"):
        raise MergeError(f"--merged_dtype must be float32, float16 or bfloat16, got {merged_dtype!r}")
    if not paths:
        raise MergeError("--adapters needs at least one adapter")
    direction = metric_direction(metric, metric_mode) if strategy in ("weighted", "best") else None
    adapters = [load_adapter(p) for p in paths]
    check_compatible(adapters)
    base_path, identity = resolve_base(adapters, base)
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
    if conversations:
        for adapter in adapters:
            model, tokenizer = load_causal_lm(base_path)
            peft_model = PeftModel.from_pretrained(model, str(adapter.path)).eval()
            rows.append({"adapter": str(adapter.path), **evaluate(peft_model, tokenizer)})
    merge_weights, metric_values = merge_weights_for(
        adapters, strategy, weights, metric, direction or "min", rows or None
    )
    deltas = merged_deltas(adapters, strategy, merge_weights, density, seed)
    adapter_error = 0.0
    if strategy in ("average", "weighted"):
        config, merged = concatenate(adapters, merge_weights)
    elif strategy == "best":
        chosen = adapters[max(range(len(adapters)), key=lambda i: merge_weights[i])]
        config, merged = chosen.config, chosen.weights
    else:
        rank = sum(a.config["r"] for a in adapters)
        config, merged, adapter_error = low_rank_adapter(deltas, adapters[0].config, rank)
    adapter_out = write_adapter(out / "adapter", config, merged, adapters[0])
    model, tokenizer = load_causal_lm(base_path)
    fold_into_base(model, deltas, bool(adapters[0].config.get("fan_in_fan_out")))
    model.eval()
    merged_row = {"adapter": f"merge ({strategy})", **evaluate(model, tokenizer)}
    save_model(model, tokenizer, out / "merged", getattr(torch, merged_dtype))
    report = {
        "strategy": strategy,
        "weights": dict(zip([str(a.path) for a in adapters], merge_weights, strict=True)),
        "metric": metric if strategy in ("weighted", "best") and weights is None else None,
        "metric_mode": direction,
        "metric_values": metric_values,
        "density": density if strategy in SPARSE_STRATEGIES else None,
        "seed": seed if strategy in ("dare_ties", "dare_linear") else None,
        "base_model": str(base_path),
        "base_identity": identity,
        "rank": config["r"],
        "adapter_exact": strategy not in SPARSE_STRATEGIES,
        "adapter_relative_error": adapter_error,
        "eval_file": eval_file,
        "eval_samples": len(conversations),
        "results": [*rows, merged_row],
        "outputs": {
            "adapter": str(adapter_out),
            "merged_model": str(out / "merged"),
            "merged_dtype": merged_dtype,
        },
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(_report_markdown(report))
    return report


def _report_markdown(report: dict[str, Any]) -> str:
    columns = sorted({k for row in report["results"] for k in row if k != "adapter"})
    identity = report["base_identity"] or {}
    details = [f"merged rank {report['rank']}"]
    if report["metric"]:
        details.append(f"weights from {report['metric']} ({report['metric_mode']} is better)")
    if report["density"] is not None:
        details.append(f"density {report['density']}")
    if report["seed"] is not None:
        details.append(f"seed {report['seed']}")
    lines = [
        f"# Adapter merge: {report['strategy']}",
        "",
        f"Base model: {report['base_model']} (sha256 {str(identity.get('sha256'))[:12]}, "
        f"{identity.get('size')} bytes); {'; '.join(details)}; eval: {report['eval_file']} "
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
    lines += ["", f"Adapter: {report['outputs']['adapter']}"]
    if not report["adapter_exact"]:
        lines.append(
            f"  (rank-{report['rank']} SVD of the merged deltas, relative error "
            f"{report['adapter_relative_error']:.3f}; the merged model is exact)"
        )
    lines += [f"Merged model: {report['outputs']['merged_model']} ({report['outputs']['merged_dtype']})", ""]
    return "\n".join(lines)
