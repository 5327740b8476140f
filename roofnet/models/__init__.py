"""Pure PyTorch roof models (no Lightning)."""

from roofnet.models.multitask import HEAD_CHANNELS, RoofNet

__all__ = ["HEAD_CHANNELS", "RoofNet"]
