"""Memory-mapped datasets: reading one sample touches only that sample's bytes.

Each file is opened with `np.load(mmap_mode="r", allow_pickle=False)` the first time a worker needs it
(memory maps are not pickled to workers), so a DataLoader worker's RSS stays flat in the number of
files, and one sample is a 1.4 MB copy out of the page cache instead of a 700 MB `np.load`.

Samples are raw: seismic as stored (float32, or float16 from `mtl fwi cache`), velocity in m/s. The
normalisation lives in the task, with statistics in its buffers, so inference cannot use other numbers.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate, get_worker_info

from common.lightning_private import new_shared_storage
from common.thread_workers import BATCHES_AHEAD_PER_THREAD, batch_generator
from fwi.data.families import FAMILIES, N_RECEIVERS, SEISMIC_SHAPE, SOURCE_X, UNKNOWN_FAMILY, VELOCITY_SHAPE
from fwi.data.formats import FilePair, FwiDataError, check_test_file, check_velocity_range

log = logging.getLogger(__name__)
MIRROR_MIDDLE_MODES = ("shift", "keep")


def open_memmap(path: Path) -> np.ndarray:
    return np.load(path, mmap_mode="r", allow_pickle=False)


def mirror_sample(seismic: torch.Tensor, velocity: torch.Tensor | None = None, middle: str = "shift"):
    """Flip x and reverse the source order: a mirrored survey of the mirrored model.

    Sources sit at x = 0, 17, 34, 52, 69 on a 70-wide grid; mirroring sends x to 69 - x, so 0<->69 and
    17<->52 swap exactly, but the middle source 34 lands at 35, where no source was fired. With
    `middle="shift"` the mirrored middle gather is moved one receiver towards x = 0 (receiver r takes
    the value of r + 1, the last receiver repeated), which re-centres its source on 34: exact for
    laterally invariant media, one cell (10 m) of lateral shift otherwise. `middle="keep"` leaves it
    at 35 (a 10 m source-position error). Works on one sample (5, T, 70) / (1, 70, 70) or on batches
    (B, 5, T, 70) / (B, 1, 70, 70); returns new tensors.
    """
    if middle not in MIRROR_MIDDLE_MODES:
        raise ValueError(f"mirror middle mode must be one of {MIRROR_MIDDLE_MODES}, got {middle!r}")
    mirrored = torch.flip(seismic, dims=(-3, -1))
    if middle == "shift":
        centre = len(SOURCE_X) // 2
        mirrored[..., centre, :, :-1] = mirrored[..., centre, :, 1:].clone()
    flipped = None if velocity is None else torch.flip(velocity, dims=(-1,))
    return mirrored, flipped


def empty_batch(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised tensor; in a DataLoader worker, allocated straight in shared memory.

    A worker's batch crosses to the main process through shared memory. Allocating it there at once
    (as `default_collate` does) writes each byte once; `share_memory_()` on a finished batch would
    allocate a second buffer and copy, which made the one-worker loader about a third slower.
    """
    if get_worker_info() is None:
        return torch.empty(shape, dtype=dtype)
    storage = new_shared_storage(math.prod(shape) * dtype.itemsize)
    return torch.empty(0, dtype=dtype).set_(storage).view(shape)


class SharedBatchRing:
    """Batch tensors that a loader's workers reuse in turn instead of allocating anew.

    In a worker process they are shared memory; with thread workers (`common.thread_workers`) they are
    the training process's own memory, taken under a lock by any number of threads.

    A fresh shared-memory batch costs a page fault per 4 KiB page on first touch (about 2 GB/s on a
    2-core VM, which held one float32 worker to 41% of the in-process read rate). With `size` buffers
    per batch shape, batch i's memory is written again for batch i + size. A worker runs at most
    `prefetch_factor` batches ahead of the batch the main process last received, so with `size` of at
    least prefetch_factor + 2 a batch stays intact until two later batches have been drawn: enough for
    a training or validation step, which is done with its batch by then. Code that keeps batches
    longer must copy them (or use a loader without the ring).
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._buffers: dict[tuple, list[torch.Tensor]] = {}
        self._turn: dict[tuple, int] = {}
        self._lock = threading.Lock()

    def take(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        key = (tuple(shape), dtype)
        with self._lock:
            buffers = self._buffers.setdefault(key, [])
            turn = self._turn.get(key, 0)
            self._turn[key] = (turn + 1) % self.size
            if turn == len(buffers):
                buffers.append(empty_batch(shape, dtype))
            return buffers[turn]


def thread_batch_ring(threads: int) -> int:
    """Ring size for `threads` thread workers sharing one `SharedBatchRing`.

    Counts the batches in flight (`BATCHES_AHEAD_PER_THREAD` per thread), up to `threads - 1` more
    whose reads start in another order than they were asked for, and the two a Lightning loop holds
    (the batch it trains on and the one it fetched ahead), plus one.
    """
    return (BATCHES_AHEAD_PER_THREAD + 1) * threads + 2


FLOAT16_MAGNITUDE_BITS, FLOAT16_EXPONENT_BITS = 0x7FFF, 0x7C00


def has_nonfinite(array: np.ndarray) -> bool:
    """Whether `array` holds a NaN or inf.

    numpy has no SIMD `isfinite` for float16 (0.37 ms per sample, a third of a one-worker loader's
    time); a float16 is NaN or inf exactly when its exponent bits are all ones, which integer SIMD
    checks about 4x faster.
    """
    if array.dtype == np.float16:
        magnitude = np.bitwise_and(array.view(np.uint16), FLOAT16_MAGNITUDE_BITS)
        return bool(magnitude.max(initial=0) >= FLOAT16_EXPONENT_BITS)
    return not np.isfinite(array).all()


def _check_finite(array: np.ndarray, path: Path, index: int, what: str) -> None:
    if has_nonfinite(array):
        bad = int(array.size - np.isfinite(array).sum())
        raise FwiDataError(f"{path}: sample {index}: {bad} NaN/inf value(s) in the {what}")


class ShotGatherDataset(Dataset):
    """(seismic, velocity, family) samples over OpenFWI-layout file pairs.

    Args:
        pairs: file pairs from `fwi.data.formats.discover_pairs`.
        max_samples: use only this many samples, spread evenly over all files (None: all).
        mirror_probability: chance of the mirror augmentation per sample (0 for validation).
        mirror_middle: "shift" or "keep"; see `mirror_sample`.
        on_bad: "error" raises for NaN/inf samples and velocity maps outside 1500-4500 m/s, naming
            file and index; "skip" logs and counts them and the collate function leaves them out.
        max_open_files: memory maps kept open per process (each holds a file descriptor).
        batch_ring: reuse this many batches (`SharedBatchRing`: per worker process, at least the
            DataLoader's prefetch_factor + 2; shared by thread workers, see `thread_batch_ring`);
            0 allocates every batch anew. Only for loaders whose consumer is done with a batch two
            batches later, as Lightning's loops are.

    Safe to read from several threads at once (thread workers): the memory-map cache and the ring
    take locks, mirror draws come from `common.thread_workers.batch_generator()`.
    """

    def __init__(
        self,
        pairs: Sequence[FilePair],
        max_samples: int | None = None,
        mirror_probability: float = 0.0,
        mirror_middle: str = "shift",
        on_bad: str = "error",
        max_open_files: int = 128,
        batch_ring: int = 0,
    ) -> None:
        self.pairs = list(pairs)
        self.offsets = np.cumsum([0] + [p.count for p in self.pairs])
        total = int(self.offsets[-1])
        if max_samples is not None and max_samples < total:
            self.indices = np.linspace(0, total - 1, num=max(max_samples, 0)).round().astype(np.int64)
        else:
            self.indices = np.arange(total, dtype=np.int64)
        self.mirror_probability = mirror_probability
        self.mirror_middle = mirror_middle
        self.on_bad = on_bad
        self.skipped = 0
        self.max_open_files = max_open_files
        self.batch_ring = batch_ring
        self._ring: SharedBatchRing | None = None
        self._maps: OrderedDict[Path, np.ndarray] = OrderedDict()
        self._maps_lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.indices)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_maps"] = OrderedDict()
        state["_ring"] = None
        del state["_maps_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._maps_lock = threading.Lock()

    def _array(self, path: Path) -> np.ndarray:
        """The memory map of `path`, kept among the `max_open_files` most recently used.

        Each map holds a file descriptor: all of OpenFWI is ~1,900 files (940 pairs), above the usual limit of
        1,024 open files per process, so the least recently used map is closed beyond the cap.
        """
        with self._maps_lock:
            array = self._maps.get(path)
            if array is None:
                array = self._maps[path] = open_memmap(path)
                while len(self._maps) > self.max_open_files:
                    self._maps.popitem(last=False)
            else:
                self._maps.move_to_end(path)
            return array

    def locate(self, item: int) -> tuple[FilePair, int]:
        flat = int(self.indices[item])
        file_index = int(np.searchsorted(self.offsets, flat, side="right") - 1)
        return self.pairs[file_index], flat - int(self.offsets[file_index])

    def _read_into(self, item: int, seismic: torch.Tensor, velocity: torch.Tensor) -> dict[str, Any] | None:
        """Copy sample `item` straight from the memory maps into preallocated tensors (one copy).

        Returns its metadata, or None when the sample is bad and `on_bad="skip"`.
        """
        pair, index = self.locate(item)
        seismic_view, velocity_view = seismic.numpy(), velocity.numpy()
        seismic_view[...] = self._array(pair.seismic)[index]
        velocity_view[...] = self._array(pair.velocity)[index]
        try:
            _check_finite(seismic_view, pair.seismic, index, "shot gathers")
            _check_finite(velocity_view, pair.velocity, index, "velocity map")
            check_velocity_range(velocity_view, pair.velocity, index)
        except FwiDataError as error:
            if self.on_bad != "skip":
                raise
            self.skipped += 1
            log.warning("skipping bad sample (%d so far in this process): %s", self.skipped, error)
            return None
        mirrored = False
        # Worker processes: torch's generator, seeded per worker by seed_everything(workers=True);
        # thread workers: the batch's own generator.
        draw = torch.rand((), generator=batch_generator()) if self.mirror_probability > 0 else None
        if draw is not None and float(draw) < self.mirror_probability:
            seismic[...], velocity[...] = mirror_sample(seismic, velocity, self.mirror_middle)
            mirrored = True
        return {"family": FAMILIES.index(pair.family), "mirrored": mirrored}

    def _seismic_dtype(self) -> torch.dtype:
        dtypes = {p.seismic_dtype for p in self.pairs}
        return torch.float16 if dtypes == {"float16"} else torch.float32

    def __getitem__(self, item: int) -> dict[str, Any] | None:
        seismic = torch.empty(SEISMIC_SHAPE, dtype=self._seismic_dtype())
        velocity = torch.empty(VELOCITY_SHAPE, dtype=torch.float32)
        meta = self._read_into(item, seismic, velocity)
        return None if meta is None else {"seismic": seismic, "velocity": velocity, **meta}

    def _batch_tensor(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        if self.batch_ring < 1:
            return empty_batch(shape, dtype)
        with self._maps_lock:
            if self._ring is None:
                self._ring = SharedBatchRing(self.batch_ring)
        return self._ring.take(shape, dtype)

    def read_batch(self, items: list[int]) -> dict[str, Any]:
        """A whole batch read into one (shared-memory, in a worker) tensor: no per-sample copy, no stack.

        Bad samples skipped with `on_bad="skip"` are left out. See `BatchedReads` for DataLoaders.
        """
        seismic = self._batch_tensor((len(items), *SEISMIC_SHAPE), self._seismic_dtype())
        velocity = self._batch_tensor((len(items), *VELOCITY_SHAPE), torch.float32)
        metas = [self._read_into(item, seismic[j], velocity[j]) for j, item in enumerate(items)]
        keep = [j for j, meta in enumerate(metas) if meta is not None]
        if len(keep) < len(items):
            seismic, velocity = seismic[keep], velocity[keep]
        return {
            "seismic": seismic,
            "velocity": velocity,
            "family": torch.tensor([metas[j]["family"] for j in keep], dtype=torch.long),
            "mirrored": torch.tensor([metas[j]["mirrored"] for j in keep], dtype=torch.bool),
        }


class BatchedReads(Dataset):
    """Wraps a ShotGatherDataset so a DataLoader fetches whole batches with `read_batch`.

    DataLoader calls `__getitems__` with a batch's indices when a dataset has it; the result is the
    finished batch, which `collate_skipping_bad` passes through (default_collate would not). The
    unwrapped dataset keeps per-sample dicts for plain DataLoaders.
    """

    def __init__(self, dataset: ShotGatherDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: int) -> dict[str, Any] | None:
        return self.dataset[item]

    def __getitems__(self, items: list[int]) -> dict[str, Any]:
        return self.dataset.read_batch(items)


class KaggleTestDataset(Dataset):
    """Kaggle test gathers `<oid>.npy` (5, 1000, 70), memory-mapped one file per item."""

    def __init__(self, files: Sequence[Path]) -> None:
        self.files = [Path(f) for f in files]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, item: int) -> dict[str, Any]:
        path = self.files[item]
        check_test_file(path)
        seismic = np.array(open_memmap(path))
        _check_finite(seismic, path, 0, "shot gathers")
        return {"seismic": torch.from_numpy(seismic), "family": UNKNOWN_FAMILY, "oid": path.stem}


def collate_skipping_bad(samples: list[dict[str, Any] | None] | dict[str, Any]) -> dict[str, Any]:
    """default_collate without the samples a dataset skipped (None); an all-bad batch is empty.

    A dict is a batch `BatchedReads` already assembled: it is returned as is.
    """
    if isinstance(samples, dict):
        return samples
    kept = [s for s in samples if s is not None]
    if not kept:
        return {
            "seismic": torch.zeros(0, 5, 1000, N_RECEIVERS),
            "velocity": torch.zeros(0, 1, 70, 70),
            "family": torch.zeros(0, dtype=torch.long),
        }
    return default_collate(kept)
