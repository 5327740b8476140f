"""A run resumed from a mid-epoch checkpoint trains exactly the batches an uninterrupted run trains next."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset

from common.resumable_loader import EpochRandomSampler, ResumableLoader


class Stream(IterableDataset):
    def __iter__(self):
        yield from range(4)


def flat(batches) -> list[int]:
    return [int(i) for batch in batches for i in batch]


def take(loader: DataLoader, count: int) -> list[int]:
    iterator = iter(loader)
    return flat(next(iterator) for _ in range(count))


@pytest.mark.parametrize(("workers", "threads"), [(0, 0), (1, 0), (0, 2)])
def test_a_new_loader_given_the_state_continues_the_epoch(workers: int, threads: int) -> None:
    data = torch.arange(23)
    sampler = EpochRandomSampler(data, seed=5)
    sampler.set_epoch(3)
    whole = flat(DataLoader(data, batch_size=4, sampler=sampler))
    assert sorted(whole) == list(range(23))

    def fresh_loader() -> ResumableLoader:
        sampler = EpochRandomSampler(data, seed=5)
        return ResumableLoader(
            data, batch_size=4, sampler=sampler, num_workers=workers, worker_threads=threads
        )

    first = fresh_loader()
    first.sampler.set_epoch(3)
    head = take(first, 2)
    state = first.state_dict()
    assert state == {"epoch": 3, "batches": 2}

    # A new process: a fresh loader (epoch 0), given the checkpoint's state before Lightning asks for a batch.
    second = fresh_loader()
    second.load_state_dict(state)
    tail = flat(second)
    assert head + tail == whole
    assert second.state_dict() == {"epoch": 3, "batches": 6}  # len(loader): the epoch is complete
    assert sorted(flat(second)) == list(range(23))  # the next pass is a whole one again


def test_orders_differ_by_epoch_and_seed_and_replay_exactly() -> None:
    data = torch.arange(50)
    sampler = EpochRandomSampler(data, seed=1)
    epoch0 = list(sampler)
    assert list(sampler) == epoch0
    sampler.set_epoch(1)
    assert list(sampler) != epoch0
    assert list(EpochRandomSampler(data, seed=2)) != epoch0


def test_a_state_that_closed_its_epoch_starts_the_next_from_the_beginning() -> None:
    data = torch.arange(8)
    loader = ResumableLoader(data, batch_size=2)  # sequential
    loader.load_state_dict({"epoch": None, "batches": 4})
    assert flat(loader) == list(range(8))


def test_loader_without_automatic_batching_skips_single_items() -> None:
    data = torch.arange(6)
    loader = ResumableLoader(data, batch_size=None, sampler=EpochRandomSampler(data, seed=0))
    whole = [int(x) for x in loader]
    loader.load_state_dict({"epoch": 0, "batches": 4})
    assert [int(x) for x in loader] == whole[4:]


def test_an_order_that_cannot_be_replayed_is_refused() -> None:
    with pytest.raises(ValueError, match="EpochRandomSampler"):
        ResumableLoader(torch.arange(4), batch_size=2, shuffle=True)
    with pytest.raises(ValueError, match="IterableDataset"):
        ResumableLoader(Stream(), batch_size=2)
    loader = ResumableLoader(torch.arange(4), batch_size=2)
    with pytest.raises(ValueError, match="lacks"):
        loader.load_state_dict({"batches": 1})


def trained(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()]


def test_mtl_resumed_from_a_mid_epoch_checkpoint_trains_what_the_uninterrupted_run_trains(mtl, tmp_path):
    common = [
        "fit", "--model", "tests.common.models.IndexRecordingModel",
        "--data", "tests.common.models.IndexDataModule", "--data.num_workers", "1",
        "--seed_everything", "7", "--checkpoint_every_n_steps", "7", "--trainer.max_steps", "25",
        "--trainer.limit_val_batches", "0", "--trainer.enable_progress_bar", "false",
    ]  # fmt: skip
    mtl([*common, "--name", "whole", "--model.record", "whole.txt"])
    whole = trained(tmp_path / "whole.txt")
    assert len(whole) == 50  # 25 steps of 2: epochs of 20 samples, each a permutation
    assert sorted(whole[:20]) == sorted(whole[20:40]) == list(range(20)) and whole[:20] != whole[20:40]

    # Step 14 is the 4th batch of the second epoch: the checkpoint a disconnect leaves behind.
    step14 = tmp_path / "runs/whole/checkpoints/step00000014.ckpt"
    saved = torch.load(step14, weights_only=True)["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert saved == [{"epoch": 1, "batches": 4}]
    output = mtl(
        [*common, "--name", "resumed", "--model.record", "resumed.txt", "--ckpt_path", step14]
    ).stdout
    assert "not resumable" not in output
    assert trained(tmp_path / "resumed.txt") == whole[28:]


@pytest.mark.ddp
def test_ddp_processes_each_resume_their_own_share_of_the_epoch(mtl, tmp_path):
    common = [
        "fit", "--model", "tests.common.models.IndexRecordingModel",
        "--data", "tests.common.models.IndexDataModule", "--seed_everything", "7",
        "--checkpoint_every_n_steps", "3", "--trainer.max_steps", "12", "--trainer.limit_val_batches", "0",
        "--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.accelerator", "cpu",
        "--trainer.enable_progress_bar", "false",
    ]  # fmt: skip
    mtl([*common, "--name", "whole", "--model.record", "whole.txt"])
    whole = [trained(tmp_path / f"whole.txt.rank{rank}") for rank in (0, 1)]
    # Lightning's DistributedSampler: per epoch (5 steps of 2 per process) the two shares are the samples.
    assert sorted(whole[0][:10] + whole[1][:10]) == list(range(20))
    step6 = tmp_path / "runs/whole/checkpoints/step00000006.ckpt"  # the 2nd batch of the 2nd epoch
    mtl([*common, "--name", "resumed", "--model.record", "resumed.txt", "--ckpt_path", step6])
    for rank in (0, 1):
        assert trained(tmp_path / f"resumed.txt.rank{rank}") == whole[rank][12:]
