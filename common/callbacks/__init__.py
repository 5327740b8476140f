"""Callbacks that hook into any run: memory probing, staged scaling and checkpoint export."""

from common.callbacks.checkpoint_export import CheckpointExport
from common.callbacks.memory_probe import MemoryProbe
from common.callbacks.run_checkpoint import RunCheckpoint
from common.callbacks.staged_scaling import StagedScaling

__all__ = ["CheckpointExport", "MemoryProbe", "RunCheckpoint", "StagedScaling"]
