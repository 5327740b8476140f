"""The training objective: per-token loss over accumulation windows, best-fit-decreasing packing, and an
attention that refuses to mix packed samples or to run variants it does not implement."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from housebrain.data.chat import (
    Encoded,
    collate_rows,
    encode_conversation,
    fill_factor,
    label_tokens,
    pack,
    read_chat_jsonl,
)
from housebrain.data.windows import AccumulationWindowSampler
from housebrain.evaluation import masked_loss
from housebrain.models.causal_lm import load_causal_lm
from housebrain.models.segmented_attention import PackedAttentionError, segmented_sdpa_forward


def fake(n: int) -> Encoded:
    return Encoded(np.arange(n, dtype=np.int32) % 50 + 3, 0, n)


def greedy(samples: list[Encoded], max_length: int) -> list[list[Encoded]]:
    """The in-order packing the project used before: a baseline to beat."""
    rows, current, used = [], [], 0
    for s in samples:
        if current and used + len(s.input_ids) > max_length:
            rows.append(current)
            current, used = [], 0
        current.append(s)
        used += len(s.input_ids)
    return [*rows, current]


def test_best_fit_decreasing_packs_tighter_and_keeps_every_sample_once() -> None:
    rng = np.random.default_rng(0)
    samples = [fake(int(n)) for n in rng.integers(600, 1300, size=300)]
    rows = pack(samples, 1536)
    assert all(sum(len(s.input_ids) for s in row) <= 1536 for row in rows)
    assert sorted(id(s) for row in rows for s in row) == sorted(id(s) for s in samples)
    assert fill_factor(rows, 1536) > fill_factor(greedy(samples, 1536), 1536) + 0.05


@pytest.fixture(scope="module")
def task(tiny_model: Path):
    from housebrain.task import HouseDesignSFT

    torch.manual_seed(0)
    module = HouseDesignSFT(model_path=str(tiny_model), lora_r=4, eval_generate_samples=0, lora_dropout=0.0)
    return module


def window_gradients(task, rows: list[list[Encoded]], batch_size: int, per_micro_batch_mean: bool = False):
    """LoRA gradients after one accumulation window over all rows, as Lightning runs it (each
    micro-batch's returned loss divided by k before backward)."""
    sampler = AccumulationWindowSampler(
        [label_tokens(r) for r in rows], batch_size, accumulate=10_000, seed=0
    )
    batches = list(sampler)
    k = len(batches)
    task._trainer = SimpleNamespace(accumulate_grad_batches=k)
    task.zero_grad()
    for keys in batches:
        batch = collate_rows([(rows[i], tokens) for i, tokens in keys], task.tokenizer.pad_token_id)
        logits = task(batch["input_ids"], batch["position_ids"], batch["sample_index"])
        loss, _, count = masked_loss(logits, batch["labels"])
        objective = loss if per_micro_batch_mean else task.objective(batch, loss, count)
        (objective / k).backward()
    task._trainer = None
    return {n: p.grad.clone() for n, p in task.named_parameters() if p.requires_grad}


def test_the_objective_is_the_same_with_and_without_packing(task, dataset: Path) -> None:
    samples = [encode_conversation(task.tokenizer, m) for m in read_chat_jsonl(dataset / "train.jsonl")[:6]]
    unpacked = window_gradients(task, [[s] for s in samples], batch_size=2)
    rows = pack(samples, max_length=3 * max(len(s.input_ids) for s in samples))
    assert len(rows) < len(samples)
    packed = window_gradients(task, rows, batch_size=1)
    for name in unpacked:
        torch.testing.assert_close(packed[name], unpacked[name], atol=1e-6, rtol=1e-4)
    # the old objective (mean per micro-batch, then over micro-batches) depends on the packing
    old_unpacked = window_gradients(task, [[s] for s in samples], 2, per_micro_batch_mean=True)
    old_packed = window_gradients(task, rows, 1, per_micro_batch_mean=True)
    assert not all(torch.allclose(old_packed[n], old_unpacked[n], atol=1e-6, rtol=1e-4) for n in old_packed)


def test_missing_position_ids_with_packing_raise(task, dataset: Path) -> None:
    samples = [encode_conversation(task.tokenizer, m) for m in read_chat_jsonl(dataset / "train.jsonl")[:2]]
    batch = collate_rows(pack(samples, 10_000), task.tokenizer.pad_token_id)
    with pytest.raises(PackedAttentionError, match="restart only"):
        task(batch["input_ids"], None, batch["sample_index"])  # Llama makes 0..T-1 positions itself
    task(batch["input_ids"], batch["position_ids"], batch["sample_index"])


def test_grouped_query_attention_keeps_packed_samples_apart(
    tiny_model: Path, tmp_path: Path, dataset: Path
) -> None:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tiny_model, local_files_only=True)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048)  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(tmp_path / "gqa")
    tokenizer.save_pretrained(tmp_path / "gqa")
    model, tokenizer = load_causal_lm(tmp_path / "gqa")
    samples = [encode_conversation(tokenizer, m) for m in read_chat_jsonl(dataset / "train.jsonl")[:3]]
    rows = pack(samples, 10_000)
    packed = collate_rows(rows, tokenizer.pad_token_id)
    with torch.no_grad():
        logits = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"]).logits[0]
        offset = 0
        for sample in rows[0]:
            alone = collate_rows([[sample]], tokenizer.pad_token_id)
            expected = model(input_ids=alone["input_ids"], position_ids=alone["position_ids"]).logits[0]
            n = len(sample.input_ids)
            torch.testing.assert_close(logits[offset : offset + n], expected, atol=1e-4, rtol=1e-4)
            offset += n


def test_attention_variants_it_does_not_implement_are_refused(tiny_model: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer, MistralConfig, MistralForCausalLM

    q = torch.zeros(1, 2, 4, 8)
    with pytest.raises(NotImplementedError, match="sliding_window"):
        segmented_sdpa_forward(
            torch.nn.Module(), q, q, q, None, sliding_window=16, position_ids=torch.arange(4)[None]
        )
    with pytest.raises(NotImplementedError, match="softcap"):
        segmented_sdpa_forward(
            torch.nn.Module(), q, q, q, None, softcap=50.0, position_ids=torch.arange(4)[None]
        )
    tokenizer = AutoTokenizer.from_pretrained(tiny_model, local_files_only=True)
    config = MistralConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                           num_attention_heads=4, num_key_value_heads=2, sliding_window=16)  # fmt: skip
    MistralForCausalLM(config).save_pretrained(tmp_path / "mistral")
    tokenizer.save_pretrained(tmp_path / "mistral")
    with pytest.warns(UserWarning, match="sliding-window attention"):
        model, _ = load_causal_lm(tmp_path / "mistral")
    assert model.config._attn_implementation == "sdpa"
