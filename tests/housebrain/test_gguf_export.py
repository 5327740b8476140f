"""`mtl housebrain export-gguf`: a GGUF that transformers' own GGUF loader reads back to the same model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from housebrain.gguf_export import GGUFExportError


def logits_of(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


@pytest.mark.parametrize(("quant", "tolerance"), [("f16", 2e-3), ("q8_0", 2e-2)])
def test_gguf_reads_back_with_transformers(
    housebrain_cli, tiny_model: Path, tmp_path: Path, quant: str, tolerance: float
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result = housebrain_cli(
        ["export-gguf", "--merged", tiny_model, "--out", f"tiny-{quant}.gguf", "--quant", quant]
    )
    path = tmp_path / f"tiny-{quant}.gguf"
    assert path.is_file() and result["bytes"] == path.stat().st_size
    original = AutoModelForCausalLM.from_pretrained(tiny_model, local_files_only=True, dtype=torch.float32)
    loaded = AutoModelForCausalLM.from_pretrained(
        tmp_path, gguf_file=path.name, local_files_only=True, dtype=torch.float32
    )
    tokenizer = AutoTokenizer.from_pretrained(tiny_model, local_files_only=True)
    gguf_tokenizer = AutoTokenizer.from_pretrained(tmp_path, gguf_file=path.name, local_files_only=True)
    text = '<|im_start|>user\n{"plot":[12.5,30],"floors":2}<|im_end|>\n'
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    assert gguf_tokenizer(text, add_special_tokens=False)["input_ids"] == ids[0].tolist()
    want, got = logits_of(original, ids), logits_of(loaded, ids)
    assert float((got - want).abs().max() / want.abs().max()) < tolerance
    assert torch.equal(got.argmax(-1), want.argmax(-1))


def test_q8_0_is_about_half_of_f16(housebrain_cli, tiny_model: Path, tmp_path: Path) -> None:
    q8 = housebrain_cli(["export-gguf", "--merged", tiny_model, "--out", "a.gguf", "--quant", "q8_0"])
    f16 = housebrain_cli(["export-gguf", "--merged", tiny_model, "--out", "b.gguf", "--quant", "f16"])
    assert q8["bytes"] < 0.7 * f16["bytes"]


def test_not_a_model_directory_is_named(housebrain_cli, tmp_path: Path) -> None:
    with pytest.raises(GGUFExportError, match=r"nothing: expected a merged model directory"):
        housebrain_cli(["export-gguf", "--merged", tmp_path / "nothing", "--out", "x.gguf"])


def test_adapters_on_a_gguf_base_merge_and_ship_as_gguf(
    housebrain_cli, tiny_model: Path, tmp_path: Path
) -> None:
    """The plan end to end on a GGUF base (as SmolLM2 ships): adapters, merge, Q8_0 GGUF, loaded back."""
    from transformers import AutoModelForCausalLM

    from tests.housebrain.test_merge import make_adapter

    housebrain_cli(["export-gguf", "--merged", tiny_model, "--out", "base.gguf", "--quant", "f16"])
    base = tmp_path / "base.gguf"
    adapters = [make_adapter(base, tmp_path / f"a{i}", seed=i) for i in range(2)]
    report = housebrain_cli(
        ["merge", "--adapters", f"[{adapters[0]},{adapters[1]}]", "--out", "m", "--strategy", "ties"]
    )
    assert report["base_identity"]["files"] == ["base.gguf"]
    housebrain_cli(["export-gguf", "--merged", tmp_path / "m/merged", "--out", "shipped.gguf"])
    model = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="shipped.gguf", local_files_only=True)
    assert model.config.num_hidden_layers == 2
