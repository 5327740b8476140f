"""DataLoader workers as threads of the training process instead of worker processes.

A worker process hands every batch to the training process through shared memory: the worker writes
the batch into fresh (or recycled) shared pages, the training process maps them again, and the
dataset's own state (memory maps, caches) lives once per worker. For datasets whose batch is mostly a
copy out of memory-mapped files (fwi's `ShotGatherDataset`) that hand-over is most of the cost:
numpy's copies and reductions release the GIL, so threads run them beside the training step, reading
the training process's memory maps straight into batch buffers it reuses. `benchmarks/fwi_loader.py`
measures both against reads in the training process itself.

Threads share the process, so the dataset must be safe to call from several threads at once, and a
dataset that draws random augmentations should draw them from `batch_generator()`: torch's global
generator is shared with the training step, so draws from it in a thread land in an order that
varies from run to run. `batch_generator()` is seeded per batch from a seed the loader draws when an
epoch starts (as DataLoader seeds its workers), so a run's draws repeat, for any number of threads.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch
from torch.utils.data import DataLoader

BATCHES_AHEAD_PER_THREAD = 2  # DataLoader's default prefetch_factor for worker processes
_local = threading.local()


def batch_generator() -> torch.Generator | None:
    """The generator of the batch this thread is fetching, None outside a thread worker (use the
    global one, which DataLoader's worker processes seed per worker)."""
    return getattr(_local, "generator", None)


def pin_batch(batch: Any) -> Any:
    """`batch` with its tensors in page-locked memory (dicts, lists and tuples are walked)."""
    if isinstance(batch, torch.Tensor):
        return batch.pin_memory()
    if isinstance(batch, dict):
        return {key: pin_batch(value) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(pin_batch(value) for value in batch)
    return batch


class ThreadedDataLoader(DataLoader):
    """A DataLoader whose batches may be fetched by `worker_threads` threads instead of processes.

    Takes DataLoader's arguments. `worker_threads=0` is a plain DataLoader; with `worker_threads > 0`,
    `num_workers` must be 0 and batches come in the sampler's order, fetched at most
    `batches_in_flight` ahead of the one last handed out (a dataset that reuses batch buffers must
    keep more than that many, plus the batches its consumer still holds).
    """

    def __init__(self, *args: Any, worker_threads: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if worker_threads < 0:
            raise ValueError(f"worker_threads: expected 0 or more, got {worker_threads}")
        if worker_threads and self.num_workers:
            raise ValueError(
                f"worker_threads={worker_threads} with num_workers={self.num_workers}: a loader's workers "
                "are either processes or threads"
            )
        self.worker_threads = worker_threads

    @property
    def batches_in_flight(self) -> int:
        """Batches being fetched or waiting while the consumer works on one (0: no thread workers)."""
        return BATCHES_AHEAD_PER_THREAD * self.worker_threads

    def __iter__(self) -> Iterator[Any]:
        if not self.worker_threads:
            return super().__iter__()
        return self._batches_from_threads()

    def _batch_indices(self) -> Iterator[Any]:
        """What one fetch gets: a batch's list of indices, or one index without automatic batching."""
        return iter(self.batch_sampler if self.batch_sampler is not None else self.sampler)

    def _fetch(self, indices: Any, seed: int) -> Any:
        """One batch, as DataLoader's in-process fetcher builds it (`__getitems__` when the dataset has
        it), with this batch's generator published to the dataset."""
        _local.generator = torch.Generator().manual_seed(seed)
        try:
            if self.batch_sampler is None:
                batch = self.collate_fn(self.dataset[indices])
            else:
                getitems = getattr(self.dataset, "__getitems__", None)
                samples = getitems(indices) if getitems else [self.dataset[i] for i in indices]
                batch = self.collate_fn(samples)
        finally:
            _local.generator = None
        if self.pin_memory and torch.cuda.is_available():
            batch = pin_batch(batch)
        return batch

    def _batches_from_threads(self) -> Iterator[Any]:
        # Drawn when the epoch's iteration starts, in the training thread, as DataLoader draws its
        # workers' base seed: reproducible under seed_everything, new every epoch.
        base_seed = int(torch.empty((), dtype=torch.int64).random_(generator=self.generator).item())
        order = enumerate(self._batch_indices())
        pending: deque[Future] = deque()
        with ThreadPoolExecutor(self.worker_threads, thread_name_prefix="loader") as pool:

            def submit_next() -> None:
                for number, indices in order:
                    pending.append(pool.submit(self._fetch, indices, (base_seed + number) % 2**63))
                    return

            try:
                for _ in range(self.batches_in_flight):
                    submit_next()
                while pending:
                    batch = pending.popleft().result()
                    submit_next()
                    yield batch
            finally:  # the consumer stopped early (max_steps) or a fetch failed: start nothing new
                for future in pending:
                    future.cancel()
