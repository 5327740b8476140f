"""HouseDesignDataModule: chat JSONL (one shard or the whole set) -> masked, optionally packed batches.

Directory layout it reads (what `mtl housebrain generate` and `split` write):

    <root>/train.jsonl, <root>/eval.jsonl              the whole set
    <root>/split_03/train.jsonl [, eval.jsonl]         shard 3 (`shard: 3`); eval falls back to <root>/eval.jsonl

The tokenizer is the model's: `tokenizer` is the same path as the task's `model_path` (the recipes
write it once with a YAML anchor, `model_path: &model ...` then `tokenizer: *model`), and `setup` loads
it from there, so the datamodule never reaches into the task. Knobs that `StagedScaling` may change (`max_samples`, `batch_size`,
`num_workers`, `packing`) are read when the dataloaders are built.
"""

from __future__ import annotations

import hashlib
import json
from functools import partial
from pathlib import Path
from typing import Any, Literal

from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader

from common.data import BaseDataModule
from housebrain.data.chat import (
    ChatDataError,
    Encoded,
    collate_rows,
    encode_conversation,
    fill_factor,
    label_tokens,
    load_encoded,
    pack,
    read_chat_jsonl,
    save_encoded,
)
from housebrain.data.generator import EVAL_FILE, TRAIN_FILE, write_dataset
from housebrain.data.windows import AccumulationWindowSampler
from housebrain.models.causal_lm import default_model_path, load_tokenizer, tokenizer_fingerprint

DEFAULT_ROOT = ".cache/mtl/housebrain/data"


def shard_directory(root: str | Path, shard: int) -> Path:
    return Path(root) / f"split_{shard:02d}"


class _Rows:
    """A list of rows (each a list of samples) as a map-style dataset."""

    def __init__(self, rows: list[list[Encoded]]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int | tuple[int, int]) -> list[Encoded] | tuple[list[Encoded], int]:
        """A row, or `(row, window tokens)` for an `AccumulationWindowSampler` key."""
        if isinstance(index, tuple):
            return self.rows[index[0]], index[1]
        return self.rows[index]


class HouseDesignDataModule(BaseDataModule):
    """Chat SFT data for house designs.

    Args:
        root: dataset directory (see the module docstring).
        tokenizer: the model's path (the task's `model_path`; "" is the packaged SmolLM2 too).
        shard: train on `<root>/split_NN` only (1-based, as written by `mtl housebrain split`).
        max_length: longest token sequence; longer samples are counted and handled by `overlong`.
        overlong: "truncate" (keep the first max_length tokens; the reply loses its end) or "skip".
        packing: concatenate samples into rows of max_length tokens (block-diagonal attention).
        batch_size: rows per batch.
        num_workers: DataLoader workers.
        max_samples: use only the first N training samples (None: all).
        max_val_samples: use only the first N eval samples (None: all).
        synthetic_samples: when root has no train.jsonl, generate this many procedural samples there
            first (0: never generate; a missing file is then an error).
        seed: generator seed for synthetic data.
        cache_dir: keep the training split's token ids here (one .npz per file, tokenizer and template),
            so a resumed run does not tokenise the shard again; None: no cache.
    """

    def __init__(
        self,
        root: str = DEFAULT_ROOT,
        tokenizer: str = "",
        shard: int | None = None,
        max_length: int = 512,
        overlong: Literal["truncate", "skip"] = "truncate",
        packing: bool = False,
        batch_size: int = 1,
        num_workers: int = 0,
        max_samples: int | None = None,
        max_val_samples: int | None = None,
        synthetic_samples: int = 0,
        seed: int = 0,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__(batch_size, num_workers, max_samples, max_val_samples, synthetic_samples, seed)
        self.root = root
        self.shard = shard
        self.max_length = max_length
        self.overlong = overlong
        self.packing = packing
        self.cache_dir = cache_dir
        self.tokenizer_path = tokenizer
        self.tokenizer: Any = None
        self.train_samples: list[Encoded] = []
        self.eval_samples: list[Encoded] = []
        self.eval_conversations: list[list[dict[str, str]]] = []
        self.stats: dict[str, Any] = {}

    def files(self) -> tuple[Path, Path]:
        """(train.jsonl, eval.jsonl) this configuration reads."""
        root = Path(self.root)
        directory = shard_directory(root, self.shard) if self.shard is not None else root
        if self.shard is not None and not directory.is_dir():
            raise ChatDataError(
                f"{directory}: shard {self.shard} not found (run `mtl housebrain split` first)"
            )
        eval_file = directory / EVAL_FILE
        return directory / TRAIN_FILE, eval_file if eval_file.is_file() else root / EVAL_FILE

    def prepare_synthetic_data(self) -> None:
        root = Path(self.root)
        if self.shard is None and not (root / TRAIN_FILE).is_file():
            meta = write_dataset(root, self.synthetic_samples, eval_fraction=0.1, seed=self.seed)
            rank_zero_info(f"HouseDesignDataModule: generated {meta['samples']} synthetic samples in {root}")

    def fitted_statistics(self) -> dict[str, Any]:
        """What the task takes from the data: the eval conversations its generation metrics answer, and
        which tokenizer encoded the samples (the task checks it is its model's)."""
        return {
            "eval_conversations": self.eval_conversations,
            "tokenizer": self.tokenizer_path or default_model_path(),
            "tokenizer_fingerprint": tokenizer_fingerprint(self.tokenizer),
        }

    def setup(self, stage: str | None = None) -> None:
        if self.tokenizer is None:
            self.tokenizer = load_tokenizer(self.tokenizer_path or default_model_path())
        train_file, eval_file = self.files()
        if stage in (None, "fit") and not self.train_samples:
            self.train_samples = self._encode(train_file, "train")
        if stage in (None, "fit", "validate", "test") and not self.eval_samples and eval_file.is_file():
            conversations = read_chat_jsonl(eval_file)[: self.max_val_samples]
            self.eval_conversations = conversations
            self.eval_samples = self._encode_conversations(conversations, eval_file, "eval")

    def _encode(self, path: Path, split: str) -> list[Encoded]:
        if not self.cache_dir:
            return self._encode_conversations(read_chat_jsonl(path), path, split)
        cache = Path(self.cache_dir) / f"{path.stem}-{self._cache_key(path)}.npz"
        if cache.is_file():
            raw = load_encoded(cache)
            rank_zero_info(f"HouseDesignDataModule {split}: token ids of {path} read from {cache}")
        else:
            raw = self._tokenise(read_chat_jsonl(path), path)
            save_encoded(cache, raw)
        return self._limit(raw, path, split)

    def _cache_key(self, path: Path) -> str:
        """Changes with the file (size, mtime), the tokenizer's vocabulary and the chat template."""
        stat = path.stat()
        identity = [str(path.resolve()), stat.st_size, stat.st_mtime_ns, self.tokenizer.chat_template]
        identity.append(hashlib.sha256(self.tokenizer.backend_tokenizer.to_str().encode()).hexdigest())
        return hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16]

    def _tokenise(self, conversations: list, path: Path) -> list[Encoded]:
        return [
            encode_conversation(self.tokenizer, messages, f"{path}: sample {number}")
            for number, messages in enumerate(conversations, start=1)
        ]

    def _encode_conversations(self, conversations: list, path: Path, split: str) -> list[Encoded]:
        return self._limit(self._tokenise(conversations, path), path, split)

    def _limit(self, raw: list[Encoded], path: Path, split: str) -> list[Encoded]:
        """Count, truncate or skip the samples longer than max_length; record and report the counts."""
        encoded: list[Encoded] = []
        overlong = 0
        for sample in raw:
            if len(sample.input_ids) > self.max_length:
                overlong += 1
                if self.overlong == "skip":
                    continue
                sample = sample.truncated(self.max_length)
            encoded.append(sample)
        total = len(raw)
        lengths = [len(s.input_ids) for s in encoded]
        self.stats[split] = {
            "file": str(path),
            "samples": total,
            "overlong": overlong,
            "overlong_action": self.overlong,
            "kept": len(encoded),
            "tokens": sum(lengths),
            "max_tokens": max(lengths, default=0),
        }
        rank_zero_info(
            f"HouseDesignDataModule {split}: {path}: {len(encoded)} of {total} samples kept, "
            f"{overlong} longer than max_length={self.max_length} ({self.overlong}), {sum(lengths)} tokens"
        )
        if overlong:
            rank_zero_warn(
                f"{path}: {overlong} of {total} samples are longer than max_length={self.max_length} "
                f"tokens and were {'skipped' if self.overlong == 'skip' else 'truncated'} (data.overlong)"
            )
        if not encoded:
            raise ChatDataError(f"{path}: no usable samples (all {total} longer than max_length?)")
        return encoded

    def _rows(self, samples: list[Encoded], split: str) -> list[list[Encoded]]:
        if not self.packing:
            return [[s] for s in samples]
        rows = pack(samples, self.max_length)
        fill = fill_factor(rows, self.max_length)
        self.stats[f"{split}_packing"] = {
            "rows": len(rows),
            "samples_per_row": round(len(samples) / max(len(rows), 1), 3),
            "fill_factor": round(fill, 4),
        }
        rank_zero_info(
            f"{split}: best-fit-decreasing packing put {len(samples)} samples into {len(rows)} rows of "
            f"{self.max_length} tokens ({len(samples) / max(len(rows), 1):.2f} per row, fill factor {fill:.3f})"
        )
        return rows

    def _loader(self, samples: list[Encoded], stage: str) -> DataLoader:
        rows = self._rows(samples, stage)
        collate = partial(collate_rows, pad_id=self.tokenizer.pad_token_id)
        dataset = _Rows(rows)
        if stage == "train" and self._world_size() == 1:
            # per-token loss over each accumulation window (housebrain/data/windows.py)
            sampler = AccumulationWindowSampler(
                [label_tokens(row) for row in rows], self.batch_size, self._accumulation()
            )
            return self.make_loader(dataset, stage, batch_sampler=sampler, collate_fn=collate)
        return self.make_loader(dataset, stage, collate_fn=collate)

    def _accumulation(self) -> int:
        trainer = getattr(self, "trainer", None)
        return int(getattr(trainer, "accumulate_grad_batches", 1) or 1) if trainer is not None else 1

    def _world_size(self) -> int:
        trainer = getattr(self, "trainer", None)
        return int(getattr(trainer, "world_size", 1) or 1) if trainer is not None else 1

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_samples[: self.max_samples], "train")

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.eval_samples, "val")

    def test_dataloader(self) -> DataLoader:
        """The eval split (the shards share one held-out set)."""
        return self.val_dataloader()
