"""The lab's baseline CNN: a few conv blocks, global pooling and a linear classifier."""

from __future__ import annotations

from torch import Tensor, nn


class BaselineCNN(nn.Module):
    """`depth` blocks of conv3x3-BN-ReLU-conv3x3-BN-ReLU-maxpool, channels doubling from `width`.

    (B, in_channels, H, W) -> logits (B, num_classes). With depth 4 and width 32 it has about 1.2M
    parameters; any H, W of at least 2**depth works (global average pooling at the end).
    """

    def __init__(
        self,
        in_channels: int = 6,
        num_classes: int = 8,
        width: int = 32,
        depth: int = 4,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if depth < 1 or width < 1:
            raise ValueError(
                f"BaselineCNN: depth and width must be positive, got depth={depth} width={width}"
            )
        blocks: list[nn.Module] = []
        channels = in_channels
        for i in range(depth):
            out = width * 2 ** min(i, 3)
            blocks += [
                nn.Conv2d(channels, out, 3, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
                nn.Conv2d(out, out, 3, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            channels = out
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels, num_classes))

    def forward(self, image: Tensor) -> Tensor:
        return self.head(self.pool(self.features(image)))
