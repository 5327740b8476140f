"""The SLURM job script runs as submitted (with `srun` replaced by a pass-through shim, no cluster here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

SCRIPT = REPO / "scripts/slurm/landcover.sbatch"


def test_sbatch_script_trains_logs_into_the_run_directory_and_plots(tmp_path: Path) -> None:
    (tmp_path / "configs").symlink_to(REPO / "configs")
    shims = tmp_path / "bin"
    shims.mkdir()
    (shims / "srun").write_text('#!/bin/sh\nexec "$@"\n')
    (shims / "mtl").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m common.cli "$@"\n')
    for shim in shims.iterdir():
        shim.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{shims}:{os.environ['PATH']}",
        "PYTHONPATH": str(REPO),
        "SLURM_JOB_ID": "4242",
        "SLURM_CPUS_PER_TASK": "0",
    }
    args = ["--trainer.max_steps", "4", "--data.synthetic_samples", "96", "--data.synthetic_size", "16"]
    args += ["--trainer.enable_progress_bar", "false", "--trainer.log_every_n_steps", "1"]
    done = subprocess.run(["bash", SCRIPT, "quickstart", *args], cwd=tmp_path, env=env, timeout=300)
    run = tmp_path / "runs/landcover/quickstart"
    log = run / "slurm-4242.log"
    assert done.returncode == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert "job 4242 restart 0" in text and "resume: last" in text and "done: curves in" in text
    assert (run / "checkpoints/last.ckpt").is_file() and (run / "curves.png").is_file()

    missing = subprocess.run(
        ["bash", SCRIPT, "no_such_recipe"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert missing.returncode == 2 and "no recipe configs/landcover/no_such_recipe.yaml" in missing.stderr
