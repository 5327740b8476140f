"""Sentinel-2 land-cover patch classification: `data` (NPZ formats, DataModule, synthetic generator,
GeoTIFF cutting), `models` (the lab's baseline CNN, timm backbones, losses), `task` (the
LightningModule) and `tools` (the `mtl landcover` verbs). User guide: docs/landcover.md."""
