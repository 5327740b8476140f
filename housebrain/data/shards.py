"""Split a chat JSONL dataset into N shards: deterministic, disjoint, complete and balanced.

    <out>/split_01/train.jsonl   samples whose position in a seeded permutation is 0 mod N, ...
    <out>/split_01/eval.jsonl    the source's eval split, copied into every shard (every run evaluates alike)
    <out>/manifest.json          counts and SHA-256 of every file (and of each archive with --zip)
    <out>/split_01.zip           with zip=True: one archive per shard, holding split_01/...

Shard sizes differ by at most one sample. The permutation depends only on the seed and the number of
lines, so the same source and seed always give byte-identical shards. Lines are checked while they are
streamed: a malformed line or one without an assistant turn stops the split with file and line.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from housebrain.data.chat import ChatDataError, parse_chat_line
from housebrain.data.generator import EVAL_FILE, TRAIN_FILE

MANIFEST_FILE = "manifest.json"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shard_assignment(n: int, shards: int, seed: int) -> np.ndarray:
    """Shard index (0-based) of each of `n` samples: balanced, a pure function of (n, shards, seed)."""
    order = np.random.default_rng(seed).permutation(n)
    assignment = np.empty(n, dtype=np.int64)
    assignment[order] = np.arange(n) % shards
    return assignment


def _count_lines(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(1 for line in handle if line.strip())


def split_dataset(
    source: str | Path, shards: int, out: str | Path, seed: int = 0, archive: bool = False
) -> dict[str, Any]:
    """Write the shards and the manifest (see the module docstring); return the manifest."""
    source, out = Path(source), Path(out)
    train = source / TRAIN_FILE
    if not train.is_file():
        raise ChatDataError(f"{train}: not found; --source must hold train.jsonl (and optionally eval.jsonl)")
    if shards < 1:
        raise ValueError(f"--shards must be at least 1, got {shards}")
    n = _count_lines(train)
    if n < shards:
        raise ChatDataError(f"{train}: {n} samples cannot fill {shards} shards")
    assignment = shard_assignment(n, shards, seed)
    names = [f"split_{i + 1:02d}" for i in range(shards)]
    for name in names:
        (out / name).mkdir(parents=True, exist_ok=True)
    counts = [0] * shards
    with ExitStack() as stack, open(train, encoding="utf-8") as lines:
        handles = [
            stack.enter_context(open(out / name / TRAIN_FILE, "w", encoding="utf-8")) for name in names
        ]
        index = 0
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            parse_chat_line(line, f"{train}:{number}")
            shard = int(assignment[index])
            handles[shard].write(line if line.endswith("\n") else line + "\n")
            counts[shard] += 1
            index += 1
    eval_source = source / EVAL_FILE
    eval_count = _count_lines(eval_source) if eval_source.is_file() else 0
    manifest: dict[str, Any] = {
        "source": str(source),
        "source_sha256": sha256_of(train),
        "samples": n,
        "seed": seed,
        "shards": [],
    }
    for name, count in zip(names, counts, strict=True):
        entry: dict[str, Any] = {
            "name": name,
            "train": count,
            "train_sha256": sha256_of(out / name / TRAIN_FILE),
        }
        if eval_count:
            shutil.copyfile(eval_source, out / name / EVAL_FILE)
            entry["eval"] = eval_count
            entry["eval_sha256"] = sha256_of(out / name / EVAL_FILE)
        if archive:
            zip_path = out / f"{name}.zip"
            with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
                for file in sorted((out / name).iterdir()):
                    bundle.write(file, f"{name}/{file.name}")
            entry["zip"] = zip_path.name
            entry["zip_sha256"] = sha256_of(zip_path)
        manifest["shards"].append(entry)
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
