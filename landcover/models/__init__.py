"""Pure nn.Modules for patch classification (no Lightning here)."""

from torch import nn

from landcover.models.baseline_cnn import BaselineCNN
from landcover.models.timm_backbone import TimmClassifier


def build_classifier(
    name: str,
    in_channels: int,
    num_classes: int,
    width: int = 32,
    depth: int = 4,
    dropout: float = 0.2,
    weights: str | None = None,
) -> nn.Module:
    """ "baseline_cnn" (width, depth, dropout apply) or any timm model name (weights: a local file)."""
    if name == "baseline_cnn":
        if weights is not None:
            raise ValueError("baseline_cnn has no pretrained weights; resume with --ckpt_path instead")
        return BaselineCNN(in_channels, num_classes, width=width, depth=depth, dropout=dropout)
    return TimmClassifier(name, in_channels, num_classes, weights=weights, drop_rate=dropout)


__all__ = ["BaselineCNN", "TimmClassifier", "build_classifier"]
