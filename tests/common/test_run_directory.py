"""The run directory is computed without a collective call, so code that asks on rank zero only
cannot hang a multi-process run: `mtl test` under two-process CPU DDP, per domain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import TensorBoardLogger

from common.run_directory import run_directory
from tests.conftest import REPO

DDP = ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def test_run_directory_is_the_loggers_directory_else_the_root(tmp_path: Path) -> None:
    logger = TensorBoardLogger(save_dir=str(tmp_path / "runs"), name="fwi/x", version="")
    trainer = Trainer(logger=logger, default_root_dir=str(tmp_path / "root"))
    assert run_directory(trainer) == str(tmp_path / "runs" / "fwi" / "x") == trainer.log_dir.rstrip("/")
    assert run_directory(Trainer(logger=False, default_root_dir=str(tmp_path / "root"))) == str(
        tmp_path / "root"
    )


@pytest.mark.ddp
def test_landcover_test_under_two_process_ddp_writes_its_report(mtl, tmp_path: Path) -> None:
    # landcover's on_test_epoch_end writes test_report.json on rank zero only; asking
    # trainer.log_dir there (a broadcast) would leave rank one waiting forever.
    tiny = [
        "--config", str(REPO / "configs/landcover/quickstart.yaml"),
        "--data.synthetic_samples", "80", "--data.synthetic_size", "16", "--data.batch_size", "8",
        "--model.init_args.width", "4", "--model.init_args.depth", "2",
        "--model.init_args.example_size", "16",
    ]  # fmt: skip
    output = mtl(["test", *tiny, *DDP, *QUIET], timeout=240).stdout
    assert "Starting with 2 processes" in output
    report = json.loads((tmp_path / "runs/landcover/quickstart/test_report.json").read_text())
    assert sum(map(sum, report["confusion_matrix"])) == sum(row["support"] for row in report["classes"]) > 0


TINY_TESTS = {
    "fwi": [
        "--config", str(REPO / "configs/fwi/quickstart.yaml"),
        "--data.init_args.synthetic_samples", "8", "--data.init_args.synthetic_samples_per_file", "4",
        "--data.init_args.batch_size", "2", "--model.init_args.model_args", "{width: 0.125}",
        # thread workers: Lightning rebuilds the loader with its DistributedSampler
        "--data.init_args.worker_type", "thread", "--data.init_args.num_workers", "1",
    ],
    "roofnet": [
        "--config", str(REPO / "configs/roofnet/quickstart.yaml"),
        "--data.batch_size", "2", "--data.max_val_samples", "2", "--data.synthetic_samples", "8",
        "--data.synthetic_image_size", "64", "--data.synthetic_airs_tile_size", "320",
    ],
    "housebrain": [
        "--config", str(REPO / "configs/housebrain/quickstart.yaml"),
        "--data.init_args.synthetic_samples", "24", "--data.init_args.max_val_samples", "4",
        "--model.init_args.eval_generate_samples", "0",
    ],
}  # fmt: skip


@pytest.mark.ddp
@pytest.mark.parametrize("domain", sorted(TINY_TESTS))
def test_mtl_test_under_two_process_ddp_finishes(mtl, tmp_path: Path, domain: str) -> None:
    output = mtl(["test", *TINY_TESTS[domain], *DDP, *QUIET], timeout=400).stdout
    assert "Starting with 2 processes" in output
    assert "test/" in output  # the test metrics table: both processes got past every collective call
