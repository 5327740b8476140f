"""A run name never loses work: a second fresh fit is refused or moves the first aside on request;
an exception's checkpoint never replaces a good one; stale temporaries go at start."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch.demos.boring_classes import BoringModel

from common.run_directory import RunDirectoryError, check_fresh_run, remove_stale_temporaries
from common.training_cli import MtlCLI

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def boring(*extra: str, model: str = "tests.common.models.AdamBoringModel") -> list[str]:
    return [
        "fit",
        "--model",
        model,
        "--data",
        "lightning.pytorch.demos.boring_classes.BoringDataModule",
        "--name",
        "boring",
        "--checkpoint_every_n_steps",
        "5",
        "--export.enabled",
        "false",
        "--trainer.limit_val_batches",
        "0",
        *QUIET,
        *extra,
    ]


class FailsAtStep(BoringModel):
    """BoringModel whose training step raises at global step `fail_at` (bad data, a NaN guard...)."""

    def __init__(self, fail_at: int = 7) -> None:
        super().__init__()
        self.fail_at = fail_at

    def training_step(self, batch, batch_idx):
        if self.global_step == self.fail_at:
            raise ValueError(f"bad batch at step {self.global_step}")
        return super().training_step(batch, batch_idx)


def step_of(path: Path) -> int:
    return torch.load(path, weights_only=True)["global_step"]


def test_a_second_fresh_fit_under_the_same_name_is_refused_and_the_first_run_stays(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    MtlCLI(args=boring("--trainer.max_steps", "6"))
    run = tmp_path / "runs" / "boring"
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}

    with pytest.raises(RunDirectoryError) as refused:
        MtlCLI(args=boring("--trainer.max_steps", "3"))
    message = str(refused.value)
    assert "--ckpt_path last" in message and "--overwrite true" in message and "--name" in message
    assert "checkpoints/last.ckpt" in message
    after = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert after == before  # nothing written, nothing replaced

    # resuming the same run is what the message offers, and it works
    MtlCLI(args=boring("--trainer.max_steps", "8", "--ckpt_path", "last"))
    assert step_of(run / "checkpoints" / "last.ckpt") == 8


def test_overwrite_moves_the_old_run_aside_and_starts_afresh(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    MtlCLI(args=boring("--trainer.max_steps", "6"))
    MtlCLI(args=boring("--trainer.max_steps", "3", "--overwrite", "true"))
    runs = tmp_path / "runs"
    archived = sorted(runs.glob("boring.archived-*"))
    assert len(archived) == 1
    assert step_of(archived[0] / "checkpoints" / "last.ckpt") == 6
    assert len(list(archived[0].glob("events.out.tfevents.*"))) == 1
    fresh = runs / "boring"
    assert step_of(fresh / "checkpoints" / "last.ckpt") == 3
    assert len(list(fresh.glob("events.out.tfevents.*"))) == 1  # curves of one run only
    assert sorted(p.name for p in (fresh / "checkpoints").glob("step*.ckpt")) == []  # none of the old run's


def test_an_exception_checkpoint_goes_to_its_own_file_and_last_resumes_the_newest_good_one(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="bad batch at step 7"):
        MtlCLI(args=boring("--trainer.max_steps", "20", model=f"{__name__}.FailsAtStep"))
    checkpoints = tmp_path / "runs" / "boring" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == [
        "exception-step00000007.ckpt",
        "last.ckpt",
        "step00000005.ckpt",
    ]
    assert step_of(checkpoints / "exception-step00000007.ckpt") == 7
    assert step_of(checkpoints / "last.ckpt") == 5

    resumed = ["--trainer.max_steps", "9", "--ckpt_path", "last", "--model.fail_at", "-1"]
    cli = MtlCLI(args=boring(*resumed, model=f"{__name__}.FailsAtStep"))
    assert cli.trainer.ckpt_path == str(checkpoints / "last.ckpt")
    assert step_of(checkpoints / "last.ckpt") == 9


def test_stale_temporary_checkpoints_are_removed_when_a_run_starts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    MtlCLI(args=boring("--trainer.max_steps", "5"))
    checkpoints = tmp_path / "runs" / "boring" / "checkpoints"
    stale = checkpoints / ".last.ckpt.k3j_x9.tmp"  # what a kill -9 during a write leaves
    stale.write_bytes(b"half a checkpoint")
    MtlCLI(args=boring("--trainer.max_steps", "6", "--ckpt_path", "last"))
    assert not stale.exists()
    assert not list(checkpoints.glob(".*.tmp"))


def test_an_empty_or_config_only_directory_is_not_a_run(tmp_path):
    run = tmp_path / "x"
    assert check_fresh_run(str(run), "x", overwrite=False).archived_to is None
    run.mkdir()
    (run / "config.yaml").write_text("seed_everything: 0\n")  # a run that died while parsing
    assert check_fresh_run(str(run), "x", overwrite=False).archived_to is None
    (run / ".a.tmp").write_bytes(b"")
    assert remove_stale_temporaries(str(run)) == [str(run / ".a.tmp")]
