"""`mtl housebrain merge`: exact average/weighted merges, best, peft ties, exports, report, bad adapters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from housebrain.merging import MergeError, delta, load_adapter
from housebrain.models.causal_lm import load_causal_lm
from housebrain.models.lora import save_adapter

TARGETS = ["q_proj", "v_proj"]
MODULE = "base_model.model.model.layers.0.self_attn.q_proj"


def make_adapter(
    tiny_model: Path, directory: Path, seed: int, r: int = 4, targets: list[str] = TARGETS
) -> Path:
    from peft import LoraConfig, get_peft_model

    model, tokenizer = load_causal_lm(tiny_model)
    torch.manual_seed(seed)
    config = LoraConfig(
        r=r, lora_alpha=2 * r, target_modules=targets, init_lora_weights=False, task_type="CAUSAL_LM"
    )
    return save_adapter(get_peft_model(model, config), tokenizer, str(tiny_model), directory)


@pytest.fixture(scope="module")
def adapters(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("adapters")
    return [make_adapter(tiny_model, root / f"shard{i}", seed=i) for i in range(3)]


def merged_q_weight(out: Path) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out / "merged", local_files_only=True, dtype="auto")
    return model.model.layers[0].self_attn.q_proj.weight.detach()


def test_average_is_the_exact_mean_of_deltas(
    housebrain_cli, adapters, tiny_model: Path, dataset: Path, tmp_path: Path
) -> None:
    housebrain_cli(
        ["merge", "--adapters", f"[{','.join(map(str, adapters))}]", "--strategy", "average", "--out", "avg",
         "--eval", str(dataset / "eval.jsonl"), "--eval_samples", "2", "--generate_samples", "1", "--max_new_tokens", "8", "--constrained", "true"]
    )  # fmt: skip
    base, _ = load_causal_lm(tiny_model)
    base_q = base.model.layers[0].self_attn.q_proj.weight.detach()
    loaded = [load_adapter(a) for a in adapters]
    mean_delta = sum(delta(a, MODULE) for a in loaded) / 3
    torch.testing.assert_close(merged_q_weight(tmp_path / "avg"), base_q + mean_delta, atol=1e-5, rtol=1e-4)
    # peft's `linear` (mean of A times mean of B) is a different matrix
    mean_a = sum(a.weights[f"{MODULE}.lora_A.weight"] for a in loaded) / 3
    mean_b = sum(a.weights[f"{MODULE}.lora_B.weight"] for a in loaded) / 3
    assert not torch.allclose(loaded[0].scale * mean_b @ mean_a, mean_delta, atol=1e-4)

    from peft import PeftModel

    peft_model = PeftModel.from_pretrained(base, str(tmp_path / "avg/adapter"))
    assert peft_model.peft_config["default"].r == 12
    report = json.loads((tmp_path / "avg/report.json").read_text())
    assert len(report["results"]) == 4 and all(
        "loss" in row and "token_accuracy" in row for row in report["results"]
    )
    assert "| merge (average) |" in (tmp_path / "avg/report.md").read_text()


def test_weighted_best_and_ties(housebrain_cli, adapters, tiny_model: Path, tmp_path: Path) -> None:
    housebrain_cli(["merge", "--adapters", f"[{adapters[0]},{adapters[1]}]", "--strategy", "weighted",
                    "--weights", "[3,1]", "--out", "w"])  # fmt: skip
    base, _ = load_causal_lm(tiny_model)
    base_q = base.model.layers[0].self_attn.q_proj.weight.detach()
    a, b = (load_adapter(p) for p in adapters[:2])
    expected = base_q + 0.75 * delta(a, MODULE) + 0.25 * delta(b, MODULE)
    torch.testing.assert_close(merged_q_weight(tmp_path / "w"), expected, atol=1e-5, rtol=1e-4)

    for i, loss in enumerate([2.0, 1.0, 3.0]):  # as if each adapter came from a bundle with metrics.json
        (adapters[i] / "metrics.json").write_text(json.dumps({"val/loss": loss}))
    try:
        report = housebrain_cli(
            [
                "merge",
                "--adapters",
                f"[{','.join(map(str, adapters))}]",
                "--strategy",
                "best",
                "--out",
                "best",
            ]
        )
    finally:
        for path in adapters:
            (path / "metrics.json").unlink()
    assert report["weights"][str(adapters[1])] == 1.0
    torch.testing.assert_close(
        merged_q_weight(tmp_path / "best"), base_q + delta(load_adapter(adapters[1]), MODULE)
    )

    report = housebrain_cli(
        [
            "merge",
            "--adapters",
            f"[{','.join(map(str, adapters))}]",
            "--strategy",
            "ties",
            "--out",
            "ties",
            "--merged_dtype",
            "bfloat16",
        ]
    )
    assert (tmp_path / "ties/adapter/adapter_model.safetensors").is_file() and report["strategy"] == "ties"
    assert merged_q_weight(tmp_path / "ties").dtype == torch.bfloat16
    assert not torch.allclose(merged_q_weight(tmp_path / "ties").float(), base_q)


def test_mismatched_adapters_are_named(housebrain_cli, adapters, tiny_model: Path, tmp_path: Path) -> None:
    other_rank = make_adapter(tiny_model, tmp_path / "rank8", seed=5, r=8)
    with pytest.raises(MergeError, match=r"rank8: LoRA rank 8 differs"):
        housebrain_cli(["merge", "--adapters", f"[{adapters[0]},{other_rank}]", "--out", "x"])
    other_targets = make_adapter(tiny_model, tmp_path / "qk", seed=6, targets=["q_proj", "k_proj"])
    with pytest.raises(MergeError, match=r"qk: target modules"):
        housebrain_cli(["merge", "--adapters", f"[{adapters[0]},{other_targets}]", "--out", "x"])
