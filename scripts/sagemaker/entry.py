"""SageMaker training entry point: torchrun over the instance's GPUs, then `mtl fit`.

Estimator sketch (PyTorch framework container, source_dir = this repository):

    PyTorch(entry_point="scripts/sagemaker/entry.py", source_dir=".", instance_type="ml.g5.xlarge",
            hyperparameters={"config": "configs/roofnet/g5.yaml"},
            checkpoint_s3_uri="s3://bucket/mtl/checkpoints",  # synced with /opt/ml/checkpoints
            ...)

SageMaker passes hyperparameters as `--config configs/...` arguments; every other argument goes to
`mtl fit` unchanged. Checkpoints go to /opt/ml/checkpoints (restored into a restarted or spot job, so
`--ckpt_path last` resumes) and the export bundle to /opt/ml/model, through the sagemaker-g5 profile.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def gpu_count() -> int:
    import torch

    return torch.cuda.device_count()


def build_command(args: list[str], gpus: int) -> list[str]:
    """torchrun with one process per GPU (Lightning picks the ranks up from torchrun's environment)."""
    launcher = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={max(gpus, 1)}",
    ]
    return [
        *launcher,
        "-m",
        "common.cli",
        "fit",
        *args,
        "--config",
        str(REPO / "configs/platforms/sagemaker-g5.yaml"),
        "--trainer.devices",
        str(max(gpus, 1)),
        "--ckpt_path",
        "last",
    ]


def main() -> int:
    if not (REPO / ".venv").exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "-e", str(REPO)], check=True)
    command = build_command(sys.argv[1:], gpu_count())
    print("running:", " ".join(command), flush=True)
    return subprocess.call(command, cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"})


if __name__ == "__main__":
    raise SystemExit(main())
