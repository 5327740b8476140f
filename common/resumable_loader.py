"""A training DataLoader that a mid-epoch checkpoint resumes where it stopped.

Free GPUs disconnect in the middle of an epoch: a Colab shard of 83k samples is one epoch of many hours.
Lightning restores the step and the position inside the epoch, but a plain DataLoader starts the epoch
again with a new random order, so the rest of the epoch is a fresh random draw: some samples are
trained twice and others never (Lightning warns "your dataloader is not resumable").

`ResumableLoader` is a DataLoader with the `state_dict` / `load_state_dict` pair that Lightning saves in
every checkpoint and restores before the first batch: the epoch and how many batches of it were taken.
Resumed in the same epoch, it replays that epoch's order and skips those batches as lists of indices,
without reading their data, so the run goes on with exactly the batches an uninterrupted run would
have trained. This needs an order that is a function of the epoch: `EpochRandomSampler` (a
`RandomSampler` seeded by seed and epoch) for shuffling, `EpochWeightedRandomSampler` for weighted
draws, `DistributedSampler` (which Lightning injects
under DDP), any sampler or batch sampler with `set_epoch`, or no shuffling at all.

Lightning tells the samplers the epoch (`set_epoch`) before each epoch's first batch; the loader reads
it from there and hands it on to a batch sampler that has `set_epoch` of its own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence, Sized
from itertools import islice
from typing import Any

import torch
from torch.utils.data import (
    IterableDataset,
    RandomSampler,
    SequentialSampler,
    WeightedRandomSampler,
)

from common.thread_workers import ThreadedDataLoader

STATE_KEYS = ("epoch", "batches")


def global_seed() -> int:
    """The run's seed as `seed_everything` published it (0 when none was set), as Lightning's
    DistributedSampler uses it."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


class _EpochSeeded:
    """`set_epoch` and a generator seeded by (seed, epoch); `seed` None is the run's seed."""

    seed: int | None
    epoch: int

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _generator(self) -> torch.Generator:
        seed = global_seed() if self.seed is None else self.seed
        return torch.Generator().manual_seed(seed + self.epoch)


class EpochRandomSampler(_EpochSeeded, RandomSampler):
    """A random order that is a function of (seed, epoch), so a resumed epoch can replay it.

    `seed` None takes the run's seed (`PL_GLOBAL_SEED`) when iterating. Lightning calls `set_epoch`
    at the start of each epoch. A `RandomSampler` subclass, so Lightning knows it shuffles and, under
    DDP, replaces it with a shuffling `DistributedSampler`.
    """

    def __init__(self, data_source: Sized, seed: int | None = None) -> None:
        super().__init__(data_source)
        self.seed, self.epoch = seed, 0

    def __iter__(self) -> Iterator[int]:
        yield from torch.randperm(len(self.data_source), generator=self._generator()).tolist()


class EpochWeightedRandomSampler(_EpochSeeded, WeightedRandomSampler):
    """`WeightedRandomSampler` whose draw is a function of (seed, epoch), like `EpochRandomSampler`."""

    def __init__(
        self, weights: Sequence[float], num_samples: int, replacement: bool = True, seed: int | None = None
    ) -> None:
        super().__init__(weights, num_samples, replacement)
        self.seed, self.epoch = seed, 0

    def __iter__(self) -> Iterator[int]:
        draw = torch.multinomial(
            self.weights, self.num_samples, self.replacement, generator=self._generator()
        )
        yield from draw.tolist()


def _epoch_setters(loader: ThreadedDataLoader) -> list[Any]:
    """The loader's samplers (sampler, batch sampler, the batch sampler's sampler) that take an epoch."""
    found: dict[int, Any] = {}
    batch_sampler = loader.batch_sampler
    for candidate in (loader.sampler, getattr(batch_sampler, "sampler", None), batch_sampler):
        if candidate is not None and callable(getattr(candidate, "set_epoch", None)):
            found.setdefault(id(candidate), candidate)
    return list(found.values())


class ResumableLoader(ThreadedDataLoader):
    """A DataLoader whose position inside an epoch is saved in checkpoints and restored on resume.

    Takes DataLoader's arguments and `worker_threads` (`common.thread_workers`). A shuffled order
    must be reproducible from the epoch (see the module docstring): a plain `RandomSampler`
    (`shuffle=True`) is refused.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if isinstance(self.dataset, IterableDataset):
            raise ValueError(
                f"ResumableLoader: {type(self.dataset).__name__} is an IterableDataset, which decides its "
                "own order; it needs its own state_dict/load_state_dict to resume mid-epoch"
            )
        if not _epoch_setters(self) and not isinstance(self.sampler, SequentialSampler):
            raise ValueError(
                f"ResumableLoader: the order of {type(self.sampler).__name__} cannot be replayed after a "
                "resume; shuffle with sampler=EpochRandomSampler(dataset), or give the sampler or batch "
                "sampler a set_epoch(epoch) that fixes each epoch's order"
            )
        self._epoch: int | None = None  # epoch of the iteration in progress
        self._taken = 0  # batches handed out in it
        self._resume: dict[str, int] | None = None

    def state_dict(self) -> dict[str, int | None]:
        return {"epoch": self._epoch, "batches": self._taken}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = [key for key in STATE_KEYS if key not in state]
        if missing:
            raise ValueError(
                f"ResumableLoader: checkpoint loader state {state!r} lacks {missing}; expected {STATE_KEYS}"
            )
        self._resume = {"epoch": state["epoch"], "batches": int(state["batches"])}  # used by __iter__

    def _current_epoch(self) -> int | None:
        setters = _epoch_setters(self)
        epochs = [sampler.epoch for sampler in setters if isinstance(getattr(sampler, "epoch", None), int)]
        epoch = epochs[0] if epochs else None
        if epoch is not None:
            for sampler in setters:  # a batch sampler follows the epoch Lightning gave its sampler
                sampler.set_epoch(epoch)
        return epoch

    def __iter__(self) -> Iterator[Any]:
        # A generator: nothing (not even the sampler) runs before the first batch is asked for, which
        # Lightning does after it has called set_epoch for the epoch.
        resume, self._resume = self._resume, None
        skip = 0
        if resume and resume["batches"] < len(self):  # else the checkpoint closed its epoch
            # The saved epoch wins over the one Lightning announced: a run stopped by max_steps counts
            # its unfinished epoch as done, yet the batches an uninterrupted run trains next are the
            # rest of that epoch.
            skip = resume["batches"]
            if resume["epoch"] is not None:
                for sampler in _epoch_setters(self):
                    sampler.set_epoch(resume["epoch"])
        self._epoch = self._current_epoch()
        self._taken = skip
        for batch in self._rest_of_epoch(skip) if skip else super().__iter__():
            self._taken += 1
            yield batch

    def _rest_of_epoch(self, skip: int) -> ThreadedDataLoader:
        """A one-off loader over this epoch's batches after the first `skip`, with the same workers."""
        if self.batch_sampler is not None:
            order: dict[str, Any] = {"batch_sampler": list(islice(iter(self.batch_sampler), skip, None))}
        else:  # no automatic batching: each index is one batch
            order = {"sampler": list(islice(iter(self.sampler), skip, None)), "batch_size": None}
        workers = self.num_workers
        return ThreadedDataLoader(
            self.dataset,
            **order,
            num_workers=workers,
            worker_threads=self.worker_threads,
            collate_fn=self.collate_fn,
            pin_memory=self.pin_memory,
            timeout=self.timeout,
            worker_init_fn=self.worker_init_fn,
            multiprocessing_context=self.multiprocessing_context if workers else None,
            generator=self.generator,
            prefetch_factor=self.prefetch_factor if workers else None,
            pin_memory_device=self.pin_memory_device,
        )
