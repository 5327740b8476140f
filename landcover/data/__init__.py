"""Sentinel-2 patch data: formats, datasets, the DataModule and the synthetic generator."""

from landcover.data.datamodule import LandCoverDataModule
from landcover.data.formats import DEFAULT_BANDS, DEFAULT_CLASSES, DatasetMetadata, PatchFormatError

__all__ = ["DEFAULT_BANDS", "DEFAULT_CLASSES", "DatasetMetadata", "LandCoverDataModule", "PatchFormatError"]
