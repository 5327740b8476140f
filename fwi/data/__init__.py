"""FWI data: OpenFWI / Kaggle GWI layouts, memory-mapped datasets, splits, generator."""

from fwi.data.datamodule import FwiDataModule
from fwi.data.datasets import KaggleTestDataset, ShotGatherDataset, mirror_sample
from fwi.data.families import FAMILIES
from fwi.data.formats import FilePair, FwiDataError, discover_pairs

__all__ = [
    "FAMILIES",
    "FilePair",
    "FwiDataError",
    "FwiDataModule",
    "KaggleTestDataset",
    "ShotGatherDataset",
    "discover_pairs",
    "mirror_sample",
]
