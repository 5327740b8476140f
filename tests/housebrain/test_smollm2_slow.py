"""Opt-in (`pytest -m slow`): LoRA on the real SmolLM2-135M-Instruct GGUF for a few steps, then generate."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer

from housebrain.data.chat import read_chat_jsonl
from housebrain.data.datamodule import HouseDesignDataModule
from housebrain.task import HouseDesignSFT


@pytest.mark.slow
def test_smollm2_lora_trains_and_generates(dataset: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    task = HouseDesignSFT(
        model_path="",
        lr=1e-3,
        eval_generate_samples=1,
        eval_max_new_tokens=24,
        best_checkpoint=False,
    )
    assert task.tokenizer.eos_token == "<|im_end|>"
    before = {n: p.detach().clone() for n, p in task.named_parameters() if p.requires_grad}
    data = HouseDesignDataModule(
        root=str(dataset), max_length=1024, overlong="skip", max_samples=4, max_val_samples=1
    )
    trainer = Trainer(
        max_steps=3,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
    )
    trainer.fit(task, datamodule=data)
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    changed = [
        n for n, p in task.named_parameters() if p.requires_grad and not torch.equal(p.detach(), before[n])
    ]
    assert changed
    reply = task.generate(read_chat_jsonl(dataset / "eval.jsonl")[0][:-1], max_new_tokens=24)
    assert isinstance(reply, str) and reply.strip()
    print("SmolLM2 reply:", reply)
