"""BaseTask and BaseDataModule: the contracts every domain fills, checked on a tiny domain of their own."""

from __future__ import annotations

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import SequentialSampler

from common.data import BaseDataModule
from common.errors import UserInputError
from common.resumable_loader import EpochRandomSampler, ResumableLoader
from common.task import lr_factor
from common.thread_workers import ThreadedDataLoader
from tests.common.models import TinyBaseDataModule, TinyBaseTask

TINY = [
    "--model",
    "tests.common.models.TinyBaseTask",
    "--data",
    "tests.common.models.TinyBaseDataModule",
    "--name",
    "tiny",
    "--trainer.accelerator",
    "cpu",
    "--trainer.log_every_n_steps",
    "1",
    "--trainer.enable_progress_bar",
    "false",
]


def test_warmup_then_decay_and_hold_after_the_end() -> None:
    linear = [lr_factor(step, "linear", total=14, warmup_steps=4) for step in range(20)]
    assert linear[:4] == [0.25, 0.5, 0.75, 1.0]  # linear warm-up to the base LR
    assert linear[9] == pytest.approx(0.5) and linear[14] == 0 and linear[19] == 0  # held past the end
    cosine = [lr_factor(step, "cosine", total=12, warmup_steps=2) for step in range(16)]
    assert cosine[1] == 1 and cosine[7] == pytest.approx(0.5) and cosine[15] == cosine[12] == 0
    assert [lr_factor(step, "none", total=5, warmup_steps=2) for step in range(4)] == [0.5, 1, 1, 1]


def test_metrics_are_cloned_per_stage_and_the_vocabulary_is_checked() -> None:
    task = TinyBaseTask()
    train, val = task.stage_metrics("train"), task.stage_metrics("val")
    assert train is not val and list(train.keys(keep_base=False)) != list(val.keys(keep_base=False))
    train.update(torch.tensor([[0.0, 1.0]]), torch.tensor([1]))
    assert train.compute()["train/acc"] == 1 and val["acc"].update_count == 0  # no shared state
    with pytest.raises(
        UserInputError, match=r"model.optimizer: expected one of adamw, adam, sgd, got 'lamb'"
    ):
        TinyBaseTask(optimizer="lamb")
    with pytest.raises(UserInputError, match=r"model\.scheduler"):
        TinyBaseTask(scheduler="cyclic")
    assert set(task.hparams) == {"hidden", "optimizer", "lr", "scheduler", "warmup_steps"}


def test_statistics_are_checked_against_the_buffers() -> None:
    task = TinyBaseTask()
    task.receive_statistics({"feature_mean": torch.full((32,), 2.0)})
    assert torch.all(task.feature_mean == 2)
    with pytest.raises(UserInputError, match=r"feature_mean: expected a statistic of shape \(32,\)"):
        task.receive_statistics({"feature_mean": torch.zeros(3)})
    with pytest.raises(UserInputError, match="no buffer of that name"):
        task.receive_statistics({"band_mean": torch.zeros(32)})


def test_one_loader_policy() -> None:
    data = TinyBaseDataModule(batch_size=5)
    data.setup("fit")
    train, val = data.train_dataloader(), data.val_dataloader()
    assert isinstance(train, ResumableLoader) and isinstance(train.sampler, EpochRandomSampler)
    assert not train.drop_last and not train.pin_memory  # no trainer on CUDA: nothing to pin
    assert type(val) is ThreadedDataLoader and isinstance(val.sampler, SequentialSampler)
    assert val.worker_threads == 0  # worker processes unless a domain offers worker_type: thread

    class NoLastBatchOfOne(TinyBaseDataModule):
        drop_last_train = True

    data = NoLastBatchOfOne(batch_size=5)
    data.setup("fit")
    assert data.train_dataloader().drop_last and len(data.train_dataloader()) == 18 // 5
    with pytest.raises(UserInputError, match=r"data\.batch_size: expected a positive number, got 0"):
        TinyBaseDataModule(batch_size=0)
    with pytest.raises(UserInputError, match=r"data\.num_workers: expected 0 or more, got -1"):
        BaseDataModule(num_workers=-1)


def test_fit_hands_statistics_over_once_and_checkpoints_keep_them(mtl, tmp_path) -> None:
    mtl(
        ["fit", *TINY, "--trainer.max_steps", "6", "--model.scheduler", "cosine", "--model.warmup_steps", "2"]
    )
    run = tmp_path / "runs" / "tiny"
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    expected = TinyBaseDataModule()
    expected.setup("fit")
    torch.testing.assert_close(state["state_dict"]["feature_mean"], expected.train_set.x.mean(0))
    scheduler = state["lr_schedulers"][0]
    assert scheduler["last_epoch"] == 6 and scheduler["base_lrs"] == [0.01]
    assert state["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(
        0.01 * lr_factor(6, "cosine", 6, 2)
    )

    events = EventAccumulator(str(run), size_guidance={"tensors": 0, "scalars": 0})
    events.Reload()
    assert "data/summary/text_summary" in events.Tags()["tensors"]
    assert {"train/acc", "val/acc", "val/loss"} <= set(events.Tags()["scalars"])
    # A later data change does not reach a resumed run: the checkpoint's statistics are loaded over them.
    mtl(["fit", *TINY, "--trainer.max_steps", "8", "--data.offset", "-5", "--ckpt_path", "last"])
    resumed = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    torch.testing.assert_close(resumed["state_dict"]["feature_mean"], expected.train_set.x.mean(0))
