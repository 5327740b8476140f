"""RoofNet: one shared encoder-decoder (segmentation-models-pytorch) with a head per roof task.

input    (B, 3, H, W) normalised RGB, H and W multiples of 2**encoder_depth
segments        (B, 18, H, W) logits: 16 azimuth classes, flat, background (RID)
superstructures (B, 9, H, W)  logits: pvmodule, dormer, window, ladder, chimney, shadow, tree,
                              unknown, background (RID)
building        (B, H, W)     logit of the building footprint (AIRS)
boundary        (B, H, W)     logit of the footprint boundary band (Boundary IoU's band; AIRS)
lines           (B, 4, H, W)  logits: eave, ridge, hip, valley (Roofline)
height          (B, H, W)     nDSM in metres (Roofline depths)
pitch           (B, 7, H, W)  logits: roof pitch presets 0, 15, 25, 30, 35, 45, 60 degrees (RID's
                              segments_reviewed.csv slopes)
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

HEAD_CHANNELS = {
    "segments": 18,
    "superstructures": 9,
    "building": 1,
    "boundary": 1,
    "lines": 4,
    "height": 1,
    "pitch": 7,
}
SQUEEZED = ("building", "boundary", "height")


def _head(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(in_channels, out_channels, 1),
    )


class RoofNet(nn.Module):
    """Shared smp encoder-decoder and one small convolutional head per task.

    Args:
        encoder: smp encoder name ("resnet18", "efficientnet-b0", ...) or a timm encoder as "tu-<name>".
        architecture: smp architecture class name ("Unet", "UnetPlusPlus", "FPN", ...).
        encoder_depth: number of encoder stages (inputs must be multiples of 2**depth).
        decoder_channels: decoder widths, one per stage (Unet-style architectures); the last one feeds
            all seven heads, and below 32 it starves the 18-class segments head.
        encoder_weights_path: local encoder weights (.safetensors, or a .pt/.pth state dict read with
            weights_only=True); nothing is ever downloaded.
        height_scale: metres per unit of the height head's raw output (keeps its targets near 1).
    """

    def __init__(
        self,
        encoder: str = "resnet18",
        architecture: str = "Unet",
        encoder_depth: int = 5,
        decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 32),
        encoder_weights_path: str | None = None,
        height_scale: float = 10.0,
    ) -> None:
        super().__init__()
        import segmentation_models_pytorch as smp

        try:
            network_class = getattr(smp, architecture)
        except AttributeError as error:
            raise ValueError(
                f"RoofNet.architecture: smp has no {architecture!r} (try Unet, FPN, UnetPlusPlus)"
            ) from error
        kwargs = (
            {"decoder_channels": tuple(decoder_channels)}
            if "decoder_channels" in _init_params(network_class)
            else {}
        )
        network = network_class(
            encoder_name=encoder, encoder_weights=None, encoder_depth=encoder_depth, classes=1, **kwargs
        )
        self.encoder, self.decoder = network.encoder, network.decoder
        self.stride = 2**encoder_depth
        features = _decoder_out_channels(network)
        self.heads = nn.ModuleDict({name: _head(features, n) for name, n in HEAD_CHANNELS.items()})
        self.height_scale = height_scale
        if encoder_weights_path:
            load_encoder_weights(self.encoder, Path(encoder_weights_path))

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        height, width = image.shape[-2:]
        if height % self.stride or width % self.stride:
            raise ValueError(f"RoofNet input {height}x{width}: both sides must be multiples of {self.stride}")
        features = self.decoder(self.encoder(image))
        if features.shape[-2:] != image.shape[-2:]:  # e.g. FPN decodes at 1/4 resolution
            features = nn.functional.interpolate(
                features, size=(height, width), mode="bilinear", align_corners=False
            )
        outputs = {name: head(features) for name, head in self.heads.items()}
        for name in SQUEEZED:
            outputs[name] = outputs[name][:, 0]
        outputs["height"] = outputs["height"] * self.height_scale
        return outputs


def _init_params(cls: type) -> set[str]:
    import inspect

    return set(inspect.signature(cls.__init__).parameters)


def _decoder_out_channels(network: nn.Module) -> int:
    head = network.segmentation_head
    conv = next(m for m in head.modules() if isinstance(m, nn.Conv2d))
    return conv.in_channels


def load_encoder_weights(encoder: nn.Module, path: Path) -> None:
    """Load a local encoder state dict; fails naming the file when nothing or the wrong shapes match."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: encoder weights file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
    own = encoder.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not matched:
        raise ValueError(f"{path}: no tensor matches the encoder's parameters (names or shapes differ)")
    missing = sorted(set(own) - set(matched))
    if missing:
        raise ValueError(
            f"{path}: missing or mis-shaped encoder weights for {missing[:5]} ({len(missing)} in all)"
        )
    encoder.load_state_dict(matched, strict=True)
