"""Memory readings: process tree (trainer + DataLoader workers), system, and CUDA peaks.

Pure measurement functions with no Lightning in them, shared by `MemoryProbe` and `StagedScaling`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import psutil
import torch

GIB = 1024**3


@dataclass
class MemoryReading:
    """One reading; bytes unless the name says otherwise."""

    process_rss: int
    workers_rss: int
    system_used: int
    system_total: int
    cuda_allocated_peak: int = 0
    cuda_reserved_peak: int = 0
    cuda_total: int = 0

    @property
    def tree_rss(self) -> int:
        return self.process_rss + self.workers_rss

    @property
    def system_fraction(self) -> float:
        return self.system_used / self.system_total if self.system_total else 0.0

    @property
    def cuda_fraction(self) -> float:
        return self.cuda_reserved_peak / self.cuda_total if self.cuda_total else 0.0

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "tree_rss": self.tree_rss, "system_fraction": self.system_fraction}


class ProcessTreeMemory:
    """Resident memory of this process and its children (DataLoader workers).

    Listing children scans all of /proc (milliseconds on a busy machine), so the list is refreshed
    only every `refresh_every` readings and when the caller says workers may have changed (a new
    epoch starts new workers unless they are persistent); a reading itself costs tens of microseconds.
    """

    def __init__(self, refresh_every: int = 200) -> None:
        self.process = psutil.Process()
        self.refresh_every = refresh_every
        self._children: list[psutil.Process] = []
        self._calls = 0

    def refresh(self) -> None:
        self._children = self.process.children(recursive=True)

    def read(self) -> tuple[int, int]:
        if self._calls % self.refresh_every == 0:
            self.refresh()
        self._calls += 1
        workers = 0
        alive = []
        for child in self._children:
            try:
                workers += child.memory_info().rss
                alive.append(child)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        self._children = alive
        return self.process.memory_info().rss, workers


def cuda_peaks(device: torch.device | None = None) -> tuple[int, int, int]:
    """(peak allocated, peak reserved, total) bytes on a CUDA device since the last reset."""
    if device is None or device.type != "cuda" or not torch.cuda.is_available():
        return 0, 0, 0
    total = torch.cuda.get_device_properties(device).total_memory
    return torch.cuda.max_memory_allocated(device), torch.cuda.max_memory_reserved(device), total


def reset_cuda_peaks(device: torch.device | None = None) -> None:
    if device is not None and device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats(device)


def read_memory(tree: ProcessTreeMemory, device: torch.device | None = None) -> MemoryReading:
    process_rss, workers_rss = tree.read()
    system = psutil.virtual_memory()
    allocated, reserved, total = cuda_peaks(device)
    return MemoryReading(
        process_rss=process_rss,
        workers_rss=workers_rss,
        system_used=system.total - system.available,
        system_total=system.total,
        cuda_allocated_peak=allocated,
        cuda_reserved_peak=reserved,
        cuda_total=total,
    )
