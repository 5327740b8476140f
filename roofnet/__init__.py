"""roofnet: one multi-task roof model over RID, Roofline and AIRS (segments, superstructures, lines,
footprint and boundary, height). Layers: `data` (formats, datasets, DataModule, synthetic roofs) ->
`models` (pure nn.Modules) -> `task` (the LightningModule) -> `tools` (`mtl roofnet <verb>`).
User guide: docs/roofnet.md."""
