"""A run killed mid-training (a Colab disconnect) resumes from last.ckpt with `--ckpt_path last`, mid-epoch."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from common.checkpoint import read_checkpoint

REPO = Path(__file__).resolve().parents[2]


def test_resume_after_sigkill(mtl, tmp_path: Path, tiny_model: Path, dataset: Path) -> None:
    shutil.copytree(dataset, tmp_path / "data")
    args = [
        "fit", "--config", str(REPO / "configs/housebrain/quickstart.yaml"),
        "--model.init_args.model_path", str(tiny_model), "--model.init_args.eval_generate_samples", "0",
        "--data.init_args.tokenizer", str(tiny_model),
        "--data.init_args.root", "data", "--data.init_args.packing", "false", "--data.init_args.batch_size", "1",
        "--checkpoint_every_n_steps", "1", "--trainer.accumulate_grad_batches", "1",
        "--trainer.val_check_interval", "1000", "--trainer.enable_progress_bar", "false",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    last = tmp_path / "runs/housebrain/quickstart/checkpoints/last.ckpt"
    process = subprocess.Popen(
        [sys.executable, "-m", "common.cli", *args, "--trainer.max_steps", "10000"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (
            last.is_file() and read_checkpoint(last)["global_step"] >= 3
        ):
            time.sleep(0.5)
    finally:
        os.kill(process.pid, signal.SIGKILL)  # no clean shutdown, as when a free VM disappears
        process.wait()
    checkpoint = read_checkpoint(last)
    killed_at = checkpoint["global_step"]
    assert killed_at >= 3
    # The loader's place in the epoch is saved too (batch 1, no accumulation: one batch per step) ...
    assert checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [
        {"epoch": 0, "batches": killed_at}
    ]
    result = mtl([*args, "--trainer.max_steps", str(killed_at + 2), "--ckpt_path", "last"])
    assert "Restoring states from the checkpoint" in result.stdout or "Restored all states" in result.stdout
    assert read_checkpoint(last)["global_step"] == killed_at + 2
    # ... so the resumed run goes on with the epoch's next batches instead of a new random order.
    assert "not resumable" not in result.stdout
    state = read_checkpoint(last)["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert state == [{"epoch": 0, "batches": killed_at + 2}]
