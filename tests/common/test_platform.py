"""Platform detection from environment variables and precision from the GPU's compute capability."""

from __future__ import annotations

import pytest

from common.platform import choose_precision, detect_platform, platform_defaults


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, "laptop"),
        ({"COLAB_RELEASE_TAG": "release-colab-2026"}, "colab"),
        ({"KAGGLE_KERNEL_RUN_TYPE": "Batch"}, "kaggle"),
        ({"SM_TRAINING_ENV": "{}", "SM_CURRENT_HOST": "algo-1"}, "sagemaker"),
        ({"SLURM_JOB_ID": "1234", "SLURM_NTASKS": "4", "SLURM_JOB_NAME": "train"}, "slurm"),
        ({"SLURM_JOB_ID": "1234", "SLURM_JOB_NAME": "bash"}, "laptop"),  # an interactive allocation
        ({"TORCHELASTIC_RUN_ID": "abc", "LOCAL_RANK": "0", "WORLD_SIZE": "2"}, "torchrun"),
        ({"LOCAL_RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1"}, "torchrun"),
        # SageMaker launches through torchrun but keeps its own directories.
        ({"SM_CURRENT_HOST": "algo-1", "TORCHELASTIC_RUN_ID": "x"}, "sagemaker"),
    ],
)
def test_detect_platform(environ, expected):
    assert detect_platform(environ) == expected


@pytest.mark.parametrize(
    ("gpu", "capability", "precision"),
    [
        ("CPU", None, "32-true"),
        ("T4 (Colab/Kaggle)", (7, 5), "16-mixed"),  # is_bf16_supported() says True; cuDNN disagrees
        ("V100", (7, 0), "16-mixed"),
        ("A10G (ml.g5)", (8, 6), "bf16-mixed"),
        ("A100", (8, 0), "bf16-mixed"),
        ("H100", (9, 0), "bf16-mixed"),
    ],
)
def test_precision_follows_compute_capability(gpu, capability, precision):
    assert choose_precision(capability) == precision, gpu


def test_platform_directories():
    sagemaker = platform_defaults({"SM_CURRENT_HOST": "algo-1"}, capability=(8, 6))
    assert (sagemaker.runs_dir, sagemaker.export_dir) == ("/opt/ml/checkpoints", "/opt/ml/model")
    assert sagemaker.precision == "bf16-mixed"
    kaggle = platform_defaults({"KAGGLE_KERNEL_RUN_TYPE": "Interactive"}, capability=(7, 5))
    assert kaggle.runs_dir == "/kaggle/working/runs" and kaggle.precision == "16-mixed"
    colab = platform_defaults({"COLAB_GPU": "1", "MTL_COLAB_DRIVE": "/nonexistent"}, capability=(7, 5))
    assert colab.runs_dir == "/content/mtl-runs"
    laptop = platform_defaults({}, capability=None)
    assert (laptop.runs_dir, laptop.precision, laptop.accelerator) == ("runs", "32-true", "cpu")


def test_colab_prefers_a_mounted_drive(tmp_path):
    colab = platform_defaults({"COLAB_GPU": "1", "MTL_COLAB_DRIVE": str(tmp_path)}, capability=(7, 5))
    assert colab.runs_dir == str(tmp_path / "mtl-runs")


def test_colab_without_drive_warns_loudly_before_training(tmp_path, monkeypatch, capsys):
    colab = platform_defaults({"COLAB_GPU": "1", "MTL_COLAB_DRIVE": "/nonexistent"}, capability=(7, 5))
    assert (
        "erases" in colab.warning and "drive.mount" in colab.warning and "--runs_dir s3://" in colab.warning
    )
    mounted = tmp_path / "MyDrive"
    mounted.mkdir()
    assert (
        platform_defaults({"COLAB_GPU": "1", "MTL_COLAB_DRIVE": str(mounted)}, capability=(7, 5)).warning
        is None
    )

    from common.training_cli import MtlCLI

    monkeypatch.setenv("COLAB_GPU", "1")
    monkeypatch.setenv("MTL_COLAB_DRIVE", "/nonexistent")
    boring = ["--model", "lightning.pytorch.demos.boring_classes.BoringModel",
              "--data", "lightning.pytorch.demos.boring_classes.BoringDataModule"]  # fmt: skip
    MtlCLI(args=boring, run=False)
    assert (
        "mtl: WARNING: Google Drive is not mounted: runs go to /content/mtl-runs" in capsys.readouterr().err
    )
    MtlCLI(args=[*boring, "--runs_dir", str(tmp_path / "elsewhere")], run=False)
    assert "WARNING" not in capsys.readouterr().err  # the user chose where runs go
