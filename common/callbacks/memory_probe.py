"""MemoryProbe: watch memory every step, warn near the limit, stop cleanly before running out."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn

from common.batches import batch_size_of
from common.memory import GIB, MemoryReading, ProcessTreeMemory, read_memory, reset_cuda_peaks

log = logging.getLogger(__name__)


class MemoryProbe(Callback):
    """Per-step memory readings, logged to the run's logger, with a warning and an optional clean stop.

    Each training step it reads: peak CUDA allocated and reserved memory (peaks are reset at the start
    of every step, so each value belongs to one step), resident memory of the trainer process and of its
    DataLoader workers, system memory in use, and memory per sample of the batch. Readings go to the
    logger every `log_every_n_steps` (default: the Trainer's). When the used fraction (CUDA reserved of
    the device's total on a GPU, system memory on the CPU) crosses `warn_fraction` it warns once; when it
    crosses `stop_fraction` (off by default) it saves `memory-stop.ckpt` beside the run's checkpoints and
    stops training, so a resume with a smaller batch can pick up there. At the end it writes
    `memory.json` in the run directory.

    Args:
        enabled: set False to switch the probe off in a config.
        warn_fraction: used fraction of memory that triggers a warning.
        stop_fraction: used fraction that stops training with a checkpoint; None never stops.
        log_every_n_steps: how often readings are sent to the logger.
    """

    def __init__(
        self,
        enabled: bool = True,
        warn_fraction: float = 0.8,
        stop_fraction: float | None = None,
        log_every_n_steps: int | None = None,
    ) -> None:
        if stop_fraction is not None and not 0 < stop_fraction <= 1:
            raise ValueError(f"MemoryProbe.stop_fraction must be in (0, 1], got {stop_fraction}")
        self.enabled = enabled
        self.warn_fraction = warn_fraction
        self.stop_fraction = stop_fraction
        self.log_every_n_steps = log_every_n_steps
        self._tree = ProcessTreeMemory()
        self._device: torch.device | None = None
        self._baseline: MemoryReading | None = None
        self._warned = False
        self.summary: dict[str, Any] = {}

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.enabled:
            return
        self._device = pl_module.device
        self._baseline = read_memory(self._tree, self._device)
        self.summary = {
            "device": str(self._device),
            "baseline_process_rss_gib": self._baseline.process_rss / GIB,
            "steps_measured": 0,
            "peak": {},
            "warnings": [],
            "stopped": None,
        }

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.enabled:
            reset_cuda_peaks(self._device)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self.enabled or self._baseline is None:
            return
        if batch_idx == 0 and _uses_workers(trainer):  # the epoch's DataLoader workers have started by now
            self._tree.refresh()
        reading = read_memory(self._tree, self._device)
        samples = batch_size_of(batch)
        metrics = self._metrics(reading, samples)
        self._update_summary(metrics)
        every = self.log_every_n_steps or trainer.log_every_n_steps
        if trainer.logger is not None and trainer.global_step % max(every, 1) == 0:
            self._log(trainer, metrics)
        fraction = metrics["memory/used_fraction"]
        if fraction >= self.warn_fraction and not self._warned:
            self._warned = True
            message = (
                f"MemoryProbe: {fraction:.0%} of {'GPU' if reading.cuda_total else 'system'} memory in use at "
                f"step {trainer.global_step} (warning threshold {self.warn_fraction:.0%})"
            )
            self.summary["warnings"].append(message)
            rank_zero_warn(message)
        if self.stop_fraction is not None:
            breach = trainer.strategy.reduce_boolean_decision(fraction >= self.stop_fraction, all=False)
            if breach:
                self._stop(trainer, fraction)

    def _metrics(self, reading: MemoryReading, samples: int) -> dict[str, float]:
        assert self._baseline is not None
        used_fraction = reading.cuda_fraction if reading.cuda_total else reading.system_fraction
        if reading.cuda_total:
            per_sample = reading.cuda_allocated_peak / samples
        else:
            per_sample = max(reading.tree_rss - self._baseline.tree_rss, 0) / samples
        metrics = {
            "memory/process_rss_gib": reading.process_rss / GIB,
            "memory/workers_rss_gib": reading.workers_rss / GIB,
            "memory/tree_rss_gib": reading.tree_rss / GIB,
            "memory/system_used_gib": reading.system_used / GIB,
            "memory/system_fraction": reading.system_fraction,
            "memory/per_sample_mib": per_sample / 1024**2,
            "memory/used_fraction": used_fraction,
        }
        if reading.cuda_total:  # a CPU run gets no CUDA cards that would only ever read zero
            metrics["memory/cuda_allocated_peak_gib"] = reading.cuda_allocated_peak / GIB
            metrics["memory/cuda_reserved_peak_gib"] = reading.cuda_reserved_peak / GIB
        return metrics

    def _update_summary(self, metrics: dict[str, float]) -> None:
        self.summary["steps_measured"] += 1
        peak = self.summary["peak"]
        for key, value in metrics.items():
            name = key.split("/", 1)[1]
            peak[name] = max(peak.get(name, value), value)

    @rank_zero_only
    def _log(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        # At the finished step's 0-based index, as Lightning logs `self.log` values: the memory cards and
        # train/loss line up, and the newest card's step + 1 is the number of steps done.
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=max(trainer.global_step - 1, 0))

    def _stop(self, trainer: Trainer, fraction: float) -> None:
        directory = _checkpoint_directory(trainer)
        path = directory / "memory-stop.ckpt"
        trainer.save_checkpoint(path)
        trainer.should_stop = True
        self.summary["stopped"] = {"step": trainer.global_step, "fraction": fraction, "checkpoint": str(path)}
        rank_zero_warn(
            f"MemoryProbe: stopping at step {trainer.global_step}: {fraction:.0%} of memory in use "
            f"(stop threshold {self.stop_fraction:.0%}); checkpoint saved to {path}"
        )

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.enabled and self.summary:
            # trainer.log_dir is a collective call under DDP: every rank asks, rank zero writes.
            self._write_summary(Path(trainer.log_dir or trainer.default_root_dir))

    @rank_zero_only
    def _write_summary(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "memory.json").write_text(json.dumps(self.summary, indent=2) + "\n")


def _uses_workers(trainer: Trainer) -> bool:
    """Whether the training DataLoader runs worker processes (listing them costs milliseconds)."""
    loader = trainer.train_dataloader
    loaders = loader if isinstance(loader, list | tuple) else [loader]
    return any(getattr(item, "num_workers", 1) > 0 for item in loaders)


def _checkpoint_directory(trainer: Trainer) -> Path:
    for callback in trainer.callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.dirpath:
            return Path(callback.dirpath)
    return Path(trainer.log_dir or trainer.default_root_dir) / "checkpoints"
