"""Memory readings: process tree (trainer + DataLoader workers), system, and CUDA peaks.

Pure measurement functions with no Lightning in them, shared by `MemoryProbe` and `StagedScaling`.
"""

from __future__ import annotations

import os
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


PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class _ProcReader:
    """A /proc file kept open and re-read with pread: no open/close per reading.

    Opening, reading and closing a /proc file through psutil costs 25 us on an idle machine and over
    200 us right after a training step's compute; a pread on a held descriptor is a few microseconds.
    """

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDONLY)

    def read(self) -> bytes:
        return os.pread(self.fd, 4096, 0)

    def close(self) -> None:
        os.close(self.fd)


def _statm_rss(reader: _ProcReader) -> int:
    return int(reader.read().split()[1]) * PAGE_SIZE


def _open_statm(pid: int) -> _ProcReader | None:
    try:
        return _ProcReader(f"/proc/{pid}/statm")
    except OSError:
        return None


class ProcessTreeMemory:
    """Resident memory of this process and its children (DataLoader workers).

    Listing children scans all of /proc (milliseconds on a busy machine), so the list is refreshed
    only every `refresh_every` readings and when the caller says workers may have changed (a new
    epoch starts new workers unless they are persistent). On Linux each process's statm is kept open,
    so a reading costs microseconds; elsewhere psutil answers.
    """

    def __init__(self, refresh_every: int = 200) -> None:
        self.process = psutil.Process()
        self.refresh_every = refresh_every
        self._own = _open_statm(self.process.pid)
        self._children: list[psutil.Process] = []
        self._child_readers: list[_ProcReader | None] = []
        self._calls = 0

    def refresh(self) -> None:
        for reader in self._child_readers:
            if reader is not None:
                reader.close()
        self._children = self.process.children(recursive=True)
        self._child_readers = [_open_statm(child.pid) for child in self._children]

    def _child_rss(self, index: int) -> int:
        reader = self._child_readers[index]
        if reader is not None:
            try:
                return _statm_rss(reader)
            except (OSError, ValueError, IndexError):  # the worker exited
                return 0
        try:
            return self._children[index].memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return 0

    def read(self) -> tuple[int, int]:
        if self._calls % self.refresh_every == 0:
            self.refresh()
        self._calls += 1
        workers = sum(self._child_rss(index) for index in range(len(self._children)))
        own = _statm_rss(self._own) if self._own is not None else self.process.memory_info().rss
        return own, workers


class SystemMemory:
    """(used, total) bytes of system memory, as `free` counts them (total minus available)."""

    def __init__(self) -> None:
        try:
            self._meminfo: _ProcReader | None = _ProcReader("/proc/meminfo")
        except OSError:
            self._meminfo = None

    def read(self) -> tuple[int, int]:
        if self._meminfo is None:
            system = psutil.virtual_memory()
            return system.total - system.available, system.total
        fields = {}
        for line in self._meminfo.read().split(b"\n", 3)[:3]:  # MemTotal, MemFree, MemAvailable
            name, _, value = line.partition(b":")
            fields[name] = int(value.split()[0]) * 1024
        total = fields[b"MemTotal"]
        return total - fields.get(b"MemAvailable", fields[b"MemFree"]), total


_SYSTEM = SystemMemory()


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
    system_used, system_total = _SYSTEM.read()
    allocated, reserved, total = cuda_peaks(device)
    return MemoryReading(
        process_rss=process_rss,
        workers_rss=workers_rss,
        system_used=system_used,
        system_total=system_total,
        cuda_allocated_peak=allocated,
        cuda_reserved_peak=reserved,
        cuda_total=total,
    )
