"""timm backbones (resnet18, resnet34, efficientnet_b0, ...) with 6 input bands.

Pretrained weights come only from a local file: timm loads it through `pretrained_cfg_overlay`,
adapts the 3-channel stem to `in_channels` (repeating the RGB filters and rescaling) and drops the
ImageNet classifier when the class count differs. Nothing is ever downloaded.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn


def create_timm_classifier(
    name: str, in_channels: int, num_classes: int, weights: str | None = None, drop_rate: float = 0.0
) -> nn.Module:
    """A timm model (B, in_channels, H, W) -> (B, num_classes); `weights`: local .pth/.safetensors file."""
    import timm

    if not timm.is_model(name):
        raise ValueError(f"unknown timm model {name!r}; e.g. resnet18, resnet34, efficientnet_b0")
    kwargs = {"in_chans": in_channels, "num_classes": num_classes, "drop_rate": drop_rate}
    if weights is None:
        return timm.create_model(name, pretrained=False, **kwargs)
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: pretrained weights file for {name} not found (local files only)")
    # timm reads the file itself (safetensors, or torch.load with weights_only=True, its default) and
    # adapts the first convolution to `in_chans` and drops a classifier of another size; no hub access.
    return timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **kwargs)


class TimmClassifier(nn.Module):
    """A timm backbone with its own classifier head; see `create_timm_classifier`."""

    def __init__(
        self,
        name: str,
        in_channels: int = 6,
        num_classes: int = 8,
        weights: str | None = None,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.model = create_timm_classifier(name, in_channels, num_classes, weights, drop_rate)

    def forward(self, image: Tensor) -> Tensor:
        return self.model(image)
