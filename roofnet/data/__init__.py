"""Roof datasets in their real layouts (RID, Roofline, AIRS), the synthetic generator and the DataModule.

Names are imported on first use, so the readers (`roofnet.data.formats`) load without Lightning or torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "RoofDataModule": "roofnet.data.datamodule",
    "AIRSDataset": "roofnet.data.datasets",
    "PredictionWindows": "roofnet.data.datasets",
    "RIDDataset": "roofnet.data.datasets",
    "RooflineDataset": "roofnet.data.datasets",
    "RoofDataError": "roofnet.data.formats",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'roofnet.data' has no attribute {name!r}")
