"""`mtl housebrain merge`: every strategy against an independent computation from the adapters' A and B,
a base model found by content after it moved, the metric's direction, and bad adapters named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from housebrain.merging import MergeError, disjoint_mean
from housebrain.models.causal_lm import load_causal_lm, write_tiny_llama
from housebrain.models.identity import base_identity
from housebrain.models.lora import save_adapter

TARGETS = ["q_proj", "v_proj"]


def make_adapter(base: Path, directory: Path, seed: int, r: int = 4, targets: list[str] = TARGETS) -> Path:
    from peft import LoraConfig, get_peft_model

    model, tokenizer = load_causal_lm(base)
    torch.manual_seed(seed)
    config = LoraConfig(
        r=r, lora_alpha=2 * r, target_modules=targets, init_lora_weights=False, task_type="CAUSAL_LM"
    )
    return save_adapter(get_peft_model(model, config), tokenizer, str(base), directory)


@pytest.fixture(scope="module")
def setup(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Three adapters trained against a base in one directory; the base then moved elsewhere."""
    root = tmp_path_factory.mktemp("adapters")
    training_copy = root / "colab" / "tiny-llama"
    shutil.copytree(tiny_model, training_copy)
    adapters = [make_adapter(training_copy, root / f"shard{i}", seed=i) for i in range(3)]
    moved = root / "laptop" / "models" / "renamed-base"
    moved.parent.mkdir(parents=True)
    shutil.move(str(training_copy), str(moved))
    return {"adapters": adapters, "base": moved}


def lora_factors(adapter: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
    """module name in the base model -> (A, B, scale), read straight from the adapter files."""
    config = json.loads((adapter / "adapter_config.json").read_text())
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    factors = {}
    for key in sorted(weights):
        if key.endswith(".lora_A.weight"):
            prefix = key[: -len(".lora_A.weight")]
            name = prefix.removeprefix("base_model.model.")
            factors[name] = (
                weights[key],
                weights[f"{prefix}.lora_B.weight"],
                config["lora_alpha"] / config["r"],
            )
    return factors


def task_vectors(adapters: list[Path]) -> dict[str, list[torch.Tensor]]:
    per_adapter = [lora_factors(a) for a in adapters]
    return {name: [s * b @ a for a, b, s in (f[name] for f in per_adapter)] for name in per_adapter[0]}


def merged_weights(out: Path) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out / "merged", local_files_only=True, dtype="auto")
    return {
        name: module.weight.detach()
        for name, module in model.named_modules()
        if name.endswith(TARGETS[0]) or name.endswith(TARGETS[1])
    }


def base_weights(base: Path) -> dict[str, torch.Tensor]:
    model, _ = load_causal_lm(base)
    return {name: m.weight.detach() for name, m in model.named_modules() if name.split(".")[-1] in TARGETS}


def assert_merged(out: Path, base: Path, expected_deltas: dict[str, torch.Tensor]) -> None:
    got, start = merged_weights(out), base_weights(base)
    assert set(got) == set(expected_deltas)
    for name, change in expected_deltas.items():
        torch.testing.assert_close(got[name].float(), start[name] + change, atol=2e-6, rtol=1e-5)


def merge(cli, adapters: list[Path], base: Path, out: str, *extra: str) -> dict:
    args = ["merge", "--adapters", f"[{','.join(map(str, adapters))}]", "--out", out, "--base", str(base)]
    return cli([*args, "--merged_dtype", "float32", *extra])


def test_base_found_by_content_after_it_moved(housebrain_cli, setup, dataset: Path, tmp_path: Path) -> None:
    adapters, base = setup["adapters"], setup["base"]
    with pytest.raises(MergeError, match=r"not found at its training-time path .*pass --base"):
        housebrain_cli(["merge", "--adapters", f"[{adapters[0]},{adapters[1]}]", "--out", "x"])
    report = merge(housebrain_cli, adapters, base, "avg", "--eval", str(dataset / "eval.jsonl"),
                   "--eval_samples", "2", "--generate_samples", "1", "--max_new_tokens", "8")  # fmt: skip
    assert report["base_identity"]["sha256"] == base_identity(base)["sha256"]
    vectors = task_vectors(adapters)
    assert_merged(tmp_path / "avg", base, {n: sum(v) / 3 for n, v in vectors.items()})
    # the adapter written beside is exact too: rank 3 * 4, delta = B_cat @ A_cat
    (a, b, s) = lora_factors(tmp_path / "avg/adapter")["model.layers.0.self_attn.q_proj"]
    assert a.shape[0] == 12 and s == 1.0
    torch.testing.assert_close(
        b @ a, sum(vectors["model.layers.0.self_attn.q_proj"]) / 3, atol=1e-6, rtol=1e-5
    )
    assert len(report["results"]) == 4 and all("loss" in row for row in report["results"])
    assert "| merge (average) |" in (tmp_path / "avg/report.md").read_text()


def test_weighted_and_best_follow_the_metric_direction(housebrain_cli, setup, tmp_path: Path) -> None:
    adapters, base = setup["adapters"], setup["base"]
    vectors = task_vectors(adapters)
    merge(housebrain_cli, adapters[:2], base, "w", "--strategy", "weighted", "--weights", "[3,1]")
    assert_merged(tmp_path / "w", base, {n: 0.75 * v[0] + 0.25 * v[1] for n, v in vectors.items()})

    metrics = [{"val/loss": 2.0, "val/validator_pass_rate": 0.2},
               {"val/loss": 1.0, "val/validator_pass_rate": 0.3},
               {"val/loss": 3.0, "val/validator_pass_rate": 0.5}]  # fmt: skip
    for adapter, values in zip(adapters, metrics, strict=True):
        (adapter / "metrics.json").write_text(json.dumps(values))
    try:
        report = merge(housebrain_cli, adapters, base, "best-loss", "--strategy", "best")
        assert report["metric_mode"] == "min" and report["weights"][str(adapters[1])] == 1.0
        report = merge(housebrain_cli, adapters, base, "best-pass", "--strategy", "best",
                       "--metric", "val/validator_pass_rate")  # fmt: skip
        assert report["metric_mode"] == "max" and report["weights"][str(adapters[2])] == 1.0
        assert_merged(tmp_path / "best-pass", base, {n: v[2] for n, v in vectors.items()})
        report = merge(housebrain_cli, adapters, base, "w-pass", "--strategy", "weighted",
                       "--metric", "val/validator_pass_rate")  # fmt: skip
        assert list(report["weights"].values()) == pytest.approx([0.2, 0.3, 0.5])
        assert_merged(
            tmp_path / "w-pass", base, {n: 0.2 * v[0] + 0.3 * v[1] + 0.5 * v[2] for n, v in vectors.items()}
        )
        report = merge(housebrain_cli, adapters, base, "w-loss", "--strategy", "weighted")
        inverse = [1 / 2, 1 / 1, 1 / 3]
        assert list(report["weights"].values()) == pytest.approx([v / sum(inverse) for v in inverse])
        with pytest.raises(MergeError, match=r"--metric val/cost_error: direction unknown.*--metric_mode"):
            merge(housebrain_cli, adapters, base, "x", "--strategy", "best", "--metric", "val/cost_error")
    finally:
        for adapter in adapters:
            (adapter / "metrics.json").unlink()


def test_disjoint_mean_by_hand() -> None:
    """TIES' elect + disjoint merge on numbers checked by hand (signs of the sums: +, -, 0)."""
    vectors = torch.tensor([[0.5, -0.2, 0.0], [-0.3, -0.4, 0.0], [0.4, 0.1, 0.0]])
    merged = disjoint_mean(vectors, torch.full((3,), 1 / 3))
    torch.testing.assert_close(merged, torch.tensor([0.45, -0.3, 0.0]))


def ties_reference(vectors: list[torch.Tensor], weights: list[float], density: float) -> torch.Tensor:
    """TIES-Merging (Yadav et al. 2023): trim to the top `density` magnitudes, elect the sign of the
    weighted sum, average the agreeing entries weighted (written without the implementation's helpers)."""
    trimmed = []
    for vector in vectors:
        keep = int(density * vector.numel())
        threshold = vector.abs().flatten().sort(descending=True).values[keep - 1]
        trimmed.append(torch.where(vector.abs() >= threshold, vector, torch.zeros_like(vector)))
    elected = torch.sign(sum(w * t for w, t in zip(weights, trimmed, strict=True)))
    numerator = torch.zeros_like(vectors[0])
    denominator = torch.zeros_like(vectors[0])
    for w, t in zip(weights, trimmed, strict=True):
        agrees = (torch.sign(t) == elected) & (t != 0)
        numerator += torch.where(agrees, w * t, 0.0)
        denominator += torch.where(agrees, w, 0.0)
    return torch.where(denominator > 0, numerator / denominator.clamp(min=1e-12), 0.0)


def test_ties_is_trim_elect_disjoint_mean(housebrain_cli, setup, tmp_path: Path) -> None:
    adapters, base = setup["adapters"], setup["base"]
    vectors = task_vectors(adapters)
    report = merge(housebrain_cli, adapters, base, "ties", "--strategy", "ties", "--density", "0.3")
    expected = {n: ties_reference(v, [1 / 3] * 3, 0.3) for n, v in vectors.items()}
    assert_merged(tmp_path / "ties", base, expected)
    mean_norm = sum(float((sum(v) / 3).norm()) for v in vectors.values())
    ties_norm = sum(float(e.norm()) for e in expected.values())
    assert 0.5 < ties_norm / mean_norm < 3  # the same order of size as the mean delta, not 0.24x
    assert report["density"] == 0.3 and not report["adapter_exact"]
    assert 0 <= report["adapter_relative_error"] < 1
    merge(housebrain_cli, adapters, base, "ties-w", "--strategy", "ties", "--weights", "[1,2,1]")
    assert_merged(
        tmp_path / "ties-w", base, {n: ties_reference(v, [0.25, 0.5, 0.25], 0.5) for n, v in vectors.items()}
    )


def dare_reference(
    vectors: dict[str, list[torch.Tensor]], density: float, seed: int
) -> dict[str, torch.Tensor]:
    """DARE (Yu et al. 2023): drop with p = 1 - density, rescale by 1 / (1 - p); draws in sorted module order."""
    generator = torch.Generator().manual_seed(seed)
    kept = {}
    for name in sorted(vectors, key=lambda n: f"base_model.model.{n}"):
        kept[name] = [
            v * (torch.rand(v.shape, generator=generator) < density) / density for v in vectors[name]
        ]
    return kept


def test_dare_is_seeded_drop_and_rescale(housebrain_cli, setup, tmp_path: Path) -> None:
    adapters, base = setup["adapters"], setup["base"]
    vectors = task_vectors(adapters)
    report = merge(
        housebrain_cli, adapters, base, "dl", "--strategy", "dare_linear", "--density", "0.4", "--seed", "7"
    )
    assert report["seed"] == 7 and "seed 7" in (tmp_path / "dl/report.md").read_text()
    kept = dare_reference(vectors, 0.4, 7)
    assert_merged(tmp_path / "dl", base, {n: sum(k) / 3 for n, k in kept.items()})
    one = next(iter(kept.values()))[0]
    assert 0.3 < float((one != 0).float().mean()) < 0.5  # about density of the entries survive
    merge(housebrain_cli, adapters, base, "dt", "--strategy", "dare_ties", "--density", "0.4", "--seed", "7")
    assert_merged(tmp_path / "dt", base, {n: disjoint_reference(k) for n, k in kept.items()})
    merge(
        housebrain_cli, adapters, base, "dl8", "--strategy", "dare_linear", "--density", "0.4", "--seed", "8"
    )
    first, other = merged_weights(tmp_path / "dl"), merged_weights(tmp_path / "dl8")
    assert not all(torch.equal(first[n], other[n]) for n in first)


def disjoint_reference(kept: list[torch.Tensor]) -> torch.Tensor:
    elected = torch.sign(sum(kept))
    agreeing = [torch.where((torch.sign(k) == elected) & (k != 0), k, 0.0) for k in kept]
    counts = sum(((torch.sign(k) == elected) & (k != 0)).float() for k in kept)
    return torch.where(counts > 0, sum(agreeing) / counts.clamp(min=1), 0.0)


def test_merged_model_is_16_bit_by_default(housebrain_cli, setup, tmp_path: Path) -> None:
    adapters, base = setup["adapters"], setup["base"]
    report = housebrain_cli(
        ["merge", "--adapters", f"[{adapters[0]},{adapters[1]}]", "--out", "d", "--base", str(base)]
    )
    assert report["outputs"]["merged_dtype"] == "bfloat16"
    assert next(iter(merged_weights(tmp_path / "d").values())).dtype == torch.bfloat16


def test_bad_adapters_are_named(housebrain_cli, setup, tiny_model: Path, tmp_path: Path) -> None:
    adapters, base = setup["adapters"], setup["base"]
    other_rank = make_adapter(base, tmp_path / "rank8", seed=5, r=8)
    with pytest.raises(MergeError, match=r"rank8: LoRA rank 8 differs"):
        merge(housebrain_cli, [adapters[0], other_rank], base, "x")
    other_targets = make_adapter(base, tmp_path / "qk", seed=6, targets=["q_proj", "k_proj"])
    with pytest.raises(MergeError, match=r"qk: target modules"):
        merge(housebrain_cli, [adapters[0], other_targets], base, "x")

    texts = [json.dumps({"room": i}) for i in range(40)]
    other_base = write_tiny_llama(tmp_path / "other-base", texts, seed=1)
    foreign = make_adapter(other_base, tmp_path / "foreign", seed=7)
    with pytest.raises(MergeError, match=r"foreign: trained on base other-base .* different base models"):
        merge(housebrain_cli, [adapters[0], foreign], base, "x")
    with pytest.raises(MergeError, match=r"--base .*other-base: weights .* are not the base the adapters"):
        merge(housebrain_cli, adapters[:2], other_base, "x")

    truncated = tmp_path / "truncated"
    shutil.copytree(adapters[1], truncated)
    weights = truncated / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(MergeError, match=r"truncated/adapter_model.safetensors: not a readable safetensors"):
        merge(housebrain_cli, [adapters[0], truncated], base, "x")
    assert not (tmp_path / "x").exists()
