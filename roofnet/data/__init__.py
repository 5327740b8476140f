"""Roof datasets in their real layouts (RID, Roofline, AIRS), the synthetic generator and the DataModule."""

from roofnet.data.datamodule import RoofDataModule
from roofnet.data.datasets import AIRSDataset, PredictionWindows, RIDDataset, RooflineDataset
from roofnet.data.formats import RoofDataError

__all__ = [
    "AIRSDataset",
    "PredictionWindows",
    "RIDDataset",
    "RoofDataError",
    "RoofDataModule",
    "RooflineDataset",
]
