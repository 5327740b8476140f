"""LoRA adapters on a causal LM with peft: building one, and saving it as a self-describing directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

#: Written beside the adapter: the base model's path (where it was at training time, a hint only) and its
#: content identity (`housebrain.models.identity`), which decides whether another copy is the same base.
SOURCE_FILE = "housebrain.json"


def build_lora_model(base: torch.nn.Module, r: int, alpha: int, dropout: float, targets: list[str]) -> Any:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets), task_type="CAUSAL_LM"
    )
    return get_peft_model(base, config)


def save_adapter(model: Any, tokenizer: Any, source: str, directory: Path) -> Path:
    """A peft adapter directory plus the tokenizer and the base model's path and identity (`housebrain.json`)."""
    from housebrain.models.identity import base_identity

    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    record = {"model_path": str(Path(source).resolve()), "base_identity": base_identity(source)}
    (directory / SOURCE_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return directory
