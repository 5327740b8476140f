"""`mtl housebrain generate` and `split` as a user runs them."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from housebrain.data.chat import ChatDataError, read_chat_jsonl
from housebrain.data.generator import requirements_from_prompt
from housebrain.design.validator import validate_design


def test_generate_data_writes_valid_chat_jsonl_independent_of_workers(
    mtl, housebrain_cli, tmp_path: Path
) -> None:
    result = mtl(["housebrain", "generate", "--samples", "120", "--out", "one", "--workers", "1"])
    assert "samples/s" in result.stdout and "refusals" in result.stdout and "room programs" in result.stdout
    housebrain_cli(["generate", "--samples", "120", "--out", "two", "--workers", "2", "--validate", "false"])
    meta = json.loads((tmp_path / "one/meta.json").read_text())
    assert (meta["train"], meta["eval"]) == (118, 2) and meta["samples_per_second"] > 0
    for name in ("train.jsonl", "eval.jsonl"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    conversations = read_chat_jsonl(tmp_path / "one/train.jsonl")
    assert [m["role"] for m in conversations[0]] == ["system", "user", "assistant"]
    for messages in conversations[:20]:
        assert validate_design(
            requirements_from_prompt(messages[1]["content"]), messages[2]["content"]
        ).passed


def test_split_is_deterministic_disjoint_complete_balanced(
    housebrain_cli, tmp_path: Path, dataset: Path
) -> None:
    housebrain_cli(["split", "--source", str(dataset), "--shards", "4", "--out", "a", "--zip", "true"])
    housebrain_cli(["split", "--source", str(dataset), "--shards", "4", "--out", "b"])
    source = (dataset / "train.jsonl").read_text().splitlines()
    shards = [(tmp_path / f"a/split_{i:02d}/train.jsonl").read_text().splitlines() for i in range(1, 5)]
    assert sorted(line for shard in shards for line in shard) == sorted(source)  # complete and disjoint
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    for i in range(1, 5):
        assert (tmp_path / f"a/split_{i:02d}/train.jsonl").read_bytes() == (
            tmp_path / f"b/split_{i:02d}/train.jsonl"
        ).read_bytes()
    manifest = json.loads((tmp_path / "a/manifest.json").read_text())
    assert manifest["samples"] == len(source)
    for entry, shard in zip(manifest["shards"], shards, strict=True):
        assert entry["train"] == len(shard)
        data = (tmp_path / "a" / entry["name"] / "train.jsonl").read_bytes()
        assert entry["train_sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["eval"] == 6
        with zipfile.ZipFile(tmp_path / "a" / entry["zip"]) as archive:
            assert archive.read(f"{entry['name']}/train.jsonl") == data
    # another seed gives another assignment
    housebrain_cli(["split", "--source", str(dataset), "--shards", "4", "--out", "c", "--seed", "1"])
    assert (tmp_path / "c/split_01/train.jsonl").read_bytes() != (
        tmp_path / "a/split_01/train.jsonl"
    ).read_bytes()


def test_split_names_the_bad_line(housebrain_cli, tmp_path: Path, dataset: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    lines = (dataset / "train.jsonl").read_text().splitlines()
    lines[4] = lines[4][:50]
    (source / "train.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(ChatDataError, match=r"train.jsonl:5: malformed JSON"):
        housebrain_cli(["split", "--source", str(source), "--shards", "2", "--out", "o"])
