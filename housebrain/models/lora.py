"""LoRA adapters on a causal LM with peft: building one, and saving it as a self-describing directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

#: Written beside the adapter: the base model's path, so the adapter can be loaded on its own.
SOURCE_FILE = "housebrain.json"


def build_lora_model(base: torch.nn.Module, r: int, alpha: int, dropout: float, targets: list[str]) -> Any:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets), task_type="CAUSAL_LM"
    )
    return get_peft_model(base, config)


def save_adapter(model: Any, tokenizer: Any, source: str, directory: Path) -> Path:
    """A peft adapter directory plus the tokenizer and the base model's path (`housebrain.json`)."""
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    (directory / SOURCE_FILE).write_text(
        json.dumps({"model_path": str(Path(source).resolve())}, indent=2) + "\n"
    )
    return directory
