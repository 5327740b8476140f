"""Where are we running, and what does that imply for precision and directories?

Everything that looks at environment variables or at the GPU lives here, so domain code never does.
Detection is a pure function of an environment mapping (tests pass a dict) plus the GPU's compute
capability (tests pass a tuple), so every platform can be checked on a laptop.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PLATFORMS = ("laptop", "colab", "kaggle", "sagemaker", "slurm", "torchrun")


@dataclass(frozen=True)
class PlatformDefaults:
    """What a run on this platform should use unless the config says otherwise."""

    platform: str
    precision: str
    runs_dir: str
    export_dir: str | None
    accelerator: str
    # Said loudly before training when the run uses these defaults (e.g. Colab without Drive).
    warning: str | None = None


def detect_platform(environ: Mapping[str, str] | None = None) -> str:
    """Name of the platform the process runs on, from its environment variables.

    Order matters: a SLURM job launched through torchrun is still a SLURM job (requeue, signals), and
    a SageMaker job uses torchrun underneath but wants SageMaker's directories.
    """
    env = os.environ if environ is None else environ
    if "SM_TRAINING_ENV" in env or "SM_CURRENT_HOST" in env or "TRAINING_JOB_NAME" in env:
        return "sagemaker"
    if "KAGGLE_KERNEL_RUN_TYPE" in env or "KAGGLE_URL_BASE" in env:
        return "kaggle"
    if "COLAB_GPU" in env or "COLAB_RELEASE_TAG" in env:
        return "colab"
    if "SLURM_JOB_ID" in env and env.get("SLURM_JOB_NAME") not in ("bash", "interactive"):
        return "slurm"
    if "TORCHELASTIC_RUN_ID" in env or ("LOCAL_RANK" in env and "WORLD_SIZE" in env and "MASTER_ADDR" in env):
        return "torchrun"
    return "laptop"


def cuda_capability() -> tuple[int, int] | None:
    """Compute capability of the first visible CUDA device, or None without one."""
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_capability(0)


def choose_precision(capability: tuple[int, int] | None) -> str:
    """Lightning precision for a device of this compute capability (None: no CUDA device).

    bf16 needs Ampere (8.0) or newer. `torch.cuda.is_bf16_supported()` answers True on a T4 (7.5)
    because it can emulate bf16 matmuls, but cuDNN there has no bf16 convolutions, so T4 and V100
    get float16 autocast with a gradient scaler instead.
    """
    if capability is None:
        return "32-true"
    if tuple(capability) >= (8, 0):
        return "bf16-mixed"
    return "16-mixed"


COLAB_WITHOUT_DRIVE = (
    "Google Drive is not mounted: runs go to {runs_dir} on the Colab VM's own disk, which the next "
    "disconnect erases with every checkpoint. Mount Drive first (from google.colab import drive; "
    "drive.mount('/content/drive')) or pass --runs_dir s3://bucket/prefix (any fsspec URL)."
)


def _colab_runs_dir(environ: Mapping[str, str]) -> tuple[str, str | None]:
    """(runs directory, warning): a mounted Drive survives the VM's disconnects; the VM's disk does not."""
    drive = Path(environ.get("MTL_COLAB_DRIVE", "/content/drive/MyDrive"))
    if drive.is_dir():
        return str(drive / "mtl-runs"), None
    return "/content/mtl-runs", COLAB_WITHOUT_DRIVE.format(runs_dir="/content/mtl-runs")


def platform_defaults(
    environ: Mapping[str, str] | None = None,
    capability: tuple[int, int] | str | None = "probe",
) -> PlatformDefaults:
    """Defaults for the detected platform; `capability="probe"` asks the GPU itself."""
    env = os.environ if environ is None else environ
    platform = detect_platform(env)
    cap = cuda_capability() if capability == "probe" else capability
    precision = choose_precision(cap)  # type: ignore[arg-type]
    accelerator = "gpu" if cap is not None else "cpu"
    runs_dir, export_dir, warning = "runs", None, None
    if platform == "sagemaker":
        runs_dir = env.get("SM_CHECKPOINT_DIR", "/opt/ml/checkpoints")
        export_dir = env.get("SM_MODEL_DIR", "/opt/ml/model")
    elif platform == "kaggle":
        runs_dir = "/kaggle/working/runs"
    elif platform == "colab":
        runs_dir, warning = _colab_runs_dir(env)
    return PlatformDefaults(platform, precision, runs_dir, export_dir, accelerator, warning)
