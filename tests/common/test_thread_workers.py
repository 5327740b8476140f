"""Thread workers give a DataLoader's batches in its order, reproducibly, and stop cleanly."""

from __future__ import annotations

import threading

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from common.data import BaseDataModule
from common.errors import UserInputError
from common.thread_workers import ThreadedDataLoader, batch_generator


class Draws(Dataset):
    """Item i -> (i, a draw from the batch's generator); counts fetches and the threads that made them."""

    def __init__(self, size: int = 40, bad: int | None = None) -> None:
        self.size, self.bad = size, bad
        self.fetched: list[int] = []
        self.threads: set[str] = set()
        self.lock = threading.Lock()

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, item: int) -> torch.Tensor:
        if item == self.bad:
            raise ValueError(f"sample {item} is broken")
        with self.lock:
            self.fetched.append(item)
            self.threads.add(threading.current_thread().name)
        return torch.tensor([float(item), float(torch.rand((), generator=batch_generator()))])


def run(threads: int, seed: int = 3, **kwargs) -> list[torch.Tensor]:
    torch.manual_seed(seed)
    return list(ThreadedDataLoader(Draws(), batch_size=4, worker_threads=threads, **kwargs))


def test_threads_give_the_batches_in_the_samplers_order() -> None:
    data = torch.arange(40)
    sampler = torch.randperm(40, generator=torch.Generator().manual_seed(1)).tolist()
    expected = list(DataLoader(data, batch_size=4, sampler=sampler))
    got = list(ThreadedDataLoader(data, batch_size=4, sampler=sampler, worker_threads=3))
    assert len(got) == 10 and all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))
    single = list(ThreadedDataLoader(data, batch_size=None, sampler=sampler, worker_threads=2))
    assert [int(x) for x in single] == sampler


def test_batches_are_fetched_in_worker_threads_with_reproducible_draws() -> None:
    dataset = Draws()
    torch.manual_seed(3)
    batches = list(ThreadedDataLoader(dataset, batch_size=4, worker_threads=2))
    assert dataset.threads and all(name.startswith("loader") for name in dataset.threads)
    for threads in (1, 3):  # any number of threads: the same draws for the same seed
        again = run(threads)
        assert all(torch.equal(a, b) for a, b in zip(batches, again, strict=True))
    assert not torch.equal(torch.cat(batches), torch.cat(run(2, seed=4)))
    draws = torch.cat(batches)[:, 1]
    assert draws.unique().numel() == 40  # one stream per batch, not one draw repeated
    torch.manual_seed(3)
    loader = ThreadedDataLoader(Draws(), batch_size=4, worker_threads=2)
    first, second = torch.cat(list(loader)), torch.cat(list(loader))
    assert not torch.equal(first[:, 1], second[:, 1])  # a new epoch draws anew
    assert batch_generator() is None  # outside a worker thread


def test_stopping_early_leaves_only_the_batches_in_flight() -> None:
    dataset = Draws(size=400)
    loader = ThreadedDataLoader(dataset, batch_size=4, worker_threads=2)
    iterator = iter(loader)
    taken = [next(iterator) for _ in range(3)]
    iterator.close()  # what a loop that stops at max_steps does to the generator
    assert len(taken) == 3
    assert len(dataset.fetched) <= 4 * (3 + loader.batches_in_flight)
    assert not [t for t in threading.enumerate() if t.name.startswith("loader")]


def test_an_error_in_a_worker_thread_reaches_the_training_loop() -> None:
    loader = ThreadedDataLoader(Draws(bad=13), batch_size=4, worker_threads=2)
    with pytest.raises(ValueError, match="sample 13 is broken"):
        list(loader)


def test_workers_are_processes_or_threads_not_both() -> None:
    with pytest.raises(ValueError, match="either processes or threads"):
        ThreadedDataLoader(Draws(), batch_size=4, num_workers=1, worker_threads=1)
    with pytest.raises(
        UserInputError, match=r"data.worker_type: expected one of process, thread, got 'fibre'"
    ):
        BaseDataModule(worker_type="fibre")
    module = BaseDataModule(num_workers=3, worker_type="thread")
    for stage in ("train", "val"):
        loader = module.make_loader(Draws(), stage)
        assert (loader.num_workers, loader.worker_threads, loader.persistent_workers) == (0, 3, False)
    processes = BaseDataModule(num_workers=2).make_loader(Draws(), "train")
    assert (processes.num_workers, processes.worker_threads) == (2, 0)
