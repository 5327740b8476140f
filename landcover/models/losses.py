"""Classification losses for imbalanced land cover."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def focal_loss(
    logits: Tensor,
    target: Tensor,
    gamma: float = 2.0,
    weight: Tensor | None = None,
    label_smoothing: float = 0.0,
) -> Tensor:
    """Focal loss (Lin et al. 2017): cross-entropy scaled by (1 - p_true)**gamma, mean over the batch.

    logits (B, K), target (B,). gamma 0 gives (weighted, smoothed) cross-entropy.
    """
    ce = F.cross_entropy(logits, target, weight=weight, reduction="none", label_smoothing=label_smoothing)
    p_true = torch.softmax(logits.float(), dim=1).gather(1, target[:, None]).squeeze(1)
    factor = (1 - p_true).clamp(min=0) ** gamma
    loss = factor * ce
    if weight is not None:
        return loss.sum() / weight[target].sum().clamp(min=1e-12)
    return loss.mean()


def class_weights(counts: Tensor, mode: str) -> Tensor:
    """Per-class loss weights from training counts (K,): "balanced" N / (K * n_c), "sqrt" its root.

    Classes absent from the training split get weight 0 (they cannot be learnt anyway).
    """
    counts = counts.float()
    if mode == "none":
        return torch.ones_like(counts)
    present = counts > 0
    weights = torch.zeros_like(counts)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    if mode == "sqrt":
        weights = weights.sqrt()
    elif mode != "balanced":
        raise ValueError(f"class_weighting must be 'none', 'balanced' or 'sqrt', got {mode!r}")
    return weights
