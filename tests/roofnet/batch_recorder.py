"""A callback for the DDP test: what each process trained on, one JSON line per training batch."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer


def image_digest(image: torch.Tensor) -> str:
    """A fingerprint of one `(3, H, W)` image tensor: equal pixels, equal digest."""
    return hashlib.sha1(image.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


class BatchRecorder(Callback):
    """Appends `{"epoch", "step", "dataset", "images": [digest, ...]}` per training batch to
    `<out_dir>/rank<global rank>.jsonl`."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: dict, batch_idx: int
    ) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        record = {
            "epoch": trainer.current_epoch,
            "step": trainer.global_step,
            "dataset": sorted(set(batch["dataset"])),
            "images": [image_digest(image) for image in batch["image"]],
        }
        with open(self.out_dir / f"rank{trainer.global_rank}.jsonl", "a") as file:
            file.write(json.dumps(record) + "\n")
