"""Facts about a batch that the platform needs without knowing the domain's keys."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch


def batch_size_of(batch: Any) -> int:
    """Leading dimension of the first tensor found in a (nested) batch; 1 if there is none."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.ndim else 1
    if isinstance(batch, Mapping):
        items: Sequence[Any] = list(batch.values())
    elif isinstance(batch, list | tuple):
        items = batch
    else:
        return 1
    for item in items:
        if isinstance(item, torch.Tensor | Mapping | list | tuple):
            size = batch_size_of(item)
            if size:
                return size
    return 1


def loss_of(outputs: Any) -> torch.Tensor | None:
    """The loss a training_step returned (a tensor or a dict with 'loss'), or None."""
    if isinstance(outputs, torch.Tensor):
        return outputs
    if isinstance(outputs, Mapping) and isinstance(outputs.get("loss"), torch.Tensor):
        return outputs["loss"]
    return None
