"""Loss masks, packing without cross-contamination, and errors on bad chat files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from housebrain.data.chat import ChatDataError, collate_rows, encode_conversation, pack, read_chat_jsonl
from housebrain.data.datamodule import HouseDesignDataModule
from housebrain.models.causal_lm import load_causal_lm
from housebrain.models.segmented_attention import SEGMENTED_ATTENTION, LastSegmentBounds, segment_bounds


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_model: Path):
    model, tokenizer = load_causal_lm(tiny_model)
    return model.eval(), tokenizer


def test_labels_cover_exactly_the_assistant_json_and_end_of_turn(model_and_tokenizer, dataset: Path) -> None:
    _, tokenizer = model_and_tokenizer
    messages = read_chat_jsonl(dataset / "train.jsonl")[0]
    encoded = encode_conversation(tokenizer, messages)
    labelled = [int(t) for t in encoded.labels if t != -100]
    assert tokenizer.decode(labelled) == messages[-1]["content"] + "<|im_end|>"
    # everything before the reply (system, user, assistant header) is masked
    first = next(i for i, t in enumerate(encoded.labels) if t != -100)
    prompt = tokenizer.decode(encoded.input_ids[:first].tolist())
    assert prompt.endswith("<|im_start|>assistant\n") and messages[1]["content"] in prompt
    # the template's newline after <|im_end|> is in the inputs but not trained
    assert encoded.labels[-1] == -100 and encoded.input_ids[-1] != -100


def test_packed_samples_do_not_attend_to_each_other(model_and_tokenizer, dataset: Path) -> None:
    model, tokenizer = model_and_tokenizer
    samples = [encode_conversation(tokenizer, m) for m in read_chat_jsonl(dataset / "train.jsonl")[:3]]
    rows = pack(samples, max_length=10_000)
    assert len(rows) == 1 and len(rows[0]) == 3
    packed = collate_rows(rows, tokenizer.pad_token_id)
    with torch.no_grad():
        packed_logits = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"]).logits[0]
        offset = 0
        for sample in rows[0]:  # packing orders a row's samples longest first
            alone = collate_rows([[sample]], tokenizer.pad_token_id)
            logits = model(input_ids=alone["input_ids"], position_ids=alone["position_ids"]).logits[0]
            n = len(sample.input_ids)
            torch.testing.assert_close(packed_logits[offset : offset + n], logits, atol=1e-4, rtol=1e-4)
            offset += n
    # without the position-id restarts (one long sequence) the later samples would see the earlier ones
    with torch.no_grad():
        mixed = model(input_ids=packed["input_ids"]).logits[0]
    n0 = len(rows[0][0].input_ids)
    assert not torch.allclose(mixed[n0 : n0 + 5], packed_logits[n0 : n0 + 5], atol=1e-4)


def test_segmented_attention_equals_the_block_mask_in_values_and_gradients(
    tiny_model: Path, dataset: Path
) -> None:
    model, tokenizer = load_causal_lm(tiny_model)
    assert model.config._attn_implementation == SEGMENTED_ATTENTION
    samples = [encode_conversation(tokenizer, m) for m in read_chat_jsonl(dataset / "train.jsonl")[:5]]
    longest = max(len(s.input_ids) for s in samples)
    rows = pack(samples, max_length=2 * longest)  # several rows, padded tails: each a segment of its own
    assert len(rows) > 1 and any(len(row) > 1 for row in rows)
    batch = collate_rows(rows, tokenizer.pad_token_id)
    results = []
    for implementation in (SEGMENTED_ATTENTION, "sdpa"):  # sdpa: transformers' block-diagonal mask
        model.set_attn_implementation(implementation)
        model.zero_grad()
        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits
        (logits * (batch["labels"] != -100).unsqueeze(-1)).square().mean().backward()
        gradient = model.get_input_embeddings().weight.grad.clone()
        results.append((logits.detach(), gradient))
    torch.testing.assert_close(results[0][0], results[1][0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(results[0][1], results[1][1], atol=1e-6, rtol=1e-4)


def test_segment_bounds_follow_position_restarts() -> None:
    positions = torch.tensor([[0, 1, 2, 0, 1, 0], [0, 1, 2, 3, 4, 5]])
    assert segment_bounds(positions) == [[(0, 3), (3, 5), (5, 6)], [(0, 6)]]


def test_segment_bounds_are_reused_only_for_the_same_unchanged_tensor() -> None:
    cache = LastSegmentBounds()
    positions = torch.tensor([[0, 1, 0, 1]])
    assert cache.get(positions) == [[(0, 2), (2, 4)]]
    assert cache.get(positions) is cache.get(positions)  # the next layers of the same forward
    positions[0, 2] = 2  # changed in place: another layout
    assert cache.get(positions) == [[(0, 4)]]
    assert cache.get(torch.tensor([[0, 0, 1, 2]])) == [[(0, 1), (1, 4)]]


def test_segment_bounds_of_inference_tensors() -> None:
    """Lightning validates under `torch.inference_mode`, whose tensors have no version counter."""
    cache = LastSegmentBounds()
    with torch.inference_mode():
        positions = torch.tensor([[0, 1, 0, 1]])
        assert cache.get(positions) == [[(0, 2), (2, 4)]]
        positions[0, 2] = 2  # changed in place, no counter to tell: computed again
        assert cache.get(positions) == [[(0, 4)]]


def test_bad_lines_name_file_and_line(tmp_path: Path) -> None:
    good = json.dumps(
        {"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "{}"}]}
    )
    bad = tmp_path / "bad.jsonl"
    bad.write_text(good + "\n" + '{"messages": [\n')
    with pytest.raises(ChatDataError, match=r"bad.jsonl:2: malformed JSON"):
        read_chat_jsonl(bad)
    no_reply = tmp_path / "noreply.jsonl"
    no_reply.write_text(good + "\n\n" + json.dumps({"messages": [{"role": "user", "content": "u"}]}) + "\n")
    with pytest.raises(ChatDataError, match=r"noreply.jsonl:3: missing assistant turn"):
        read_chat_jsonl(no_reply)


def test_overlong_samples_are_counted_and_truncated_or_skipped(model_and_tokenizer, dataset: Path) -> None:
    _, tokenizer = model_and_tokenizer
    lengths = [
        len(encode_conversation(tokenizer, m).input_ids) for m in read_chat_jsonl(dataset / "train.jsonl")
    ]
    limit = sorted(lengths)[len(lengths) // 2]
    expected = sum(n > limit for n in lengths)
    for action, kept in (("truncate", len(lengths)), ("skip", len(lengths) - expected)):
        data = HouseDesignDataModule(root=str(dataset), max_length=limit, overlong=action)
        data.tokenizer = tokenizer
        with pytest.warns(UserWarning, match=f"{expected} of {len(lengths)} samples are longer"):
            data.setup("fit")
        assert data.stats["train"]["overlong"] == expected
        assert len(data.train_samples) == kept
        assert max(len(s.input_ids) for s in data.train_samples) <= limit


def test_shard_switch_reads_the_shard(tmp_path: Path, dataset: Path, model_and_tokenizer) -> None:
    from housebrain.data.shards import split_dataset

    split_dataset(dataset, 3, tmp_path / "splits")
    data = HouseDesignDataModule(root=str(tmp_path / "splits"), shard=2, max_length=4096)
    data.tokenizer = model_and_tokenizer[1]
    data.setup("fit")
    assert len(data.train_samples) == len(read_chat_jsonl(tmp_path / "splits/split_02/train.jsonl"))
    with pytest.raises(ChatDataError, match="split_07: shard 7 not found"):
        HouseDesignDataModule(root=str(tmp_path / "splits"), shard=7).files()


def test_knobs_are_read_when_loaders_are_built(model_and_tokenizer, dataset: Path) -> None:
    # StagedScaling changes these attributes after setup and rebuilds the loaders
    data = HouseDesignDataModule(root=str(dataset), max_length=4096)
    data.tokenizer = model_and_tokenizer[1]
    data.setup("fit")
    data.max_samples, data.batch_size = 6, 2
    assert len(data.train_dataloader()) == 3
    data.packing = True
    batch = next(iter(data.train_dataloader()))
    assert (
        batch["input_ids"].shape[0] <= 2 and int(batch["sample_index"].max()) >= 1
    )  # several samples per row


def test_token_cache_gives_the_same_samples(model_and_tokenizer, dataset: Path, tmp_path: Path) -> None:
    tokenizer = model_and_tokenizer[1]
    runs = []
    for _ in range(2):
        data = HouseDesignDataModule(root=str(dataset), max_length=4096, cache_dir=str(tmp_path / "tok"))
        data.tokenizer = tokenizer
        data.setup("fit")
        runs.append(data.train_samples)
    assert len(list((tmp_path / "tok").glob("train-*.npz"))) == 1
    assert [s.input_ids.tolist() for s in runs[0]] == [s.input_ids.tolist() for s in runs[1]]
    assert [(s.reply_start, s.reply_end) for s in runs[0]] == [(s.reply_start, s.reply_end) for s in runs[1]]
    # max_length and overlong still apply to cached samples
    data = HouseDesignDataModule(
        root=str(dataset), max_length=700, overlong="skip", cache_dir=str(tmp_path / "tok")
    )
    data.tokenizer = tokenizer
    with pytest.warns(UserWarning, match="longer than max_length=700"):
        data.setup("fit")
    assert data.train_samples and all(len(s.input_ids) <= 700 for s in data.train_samples)
