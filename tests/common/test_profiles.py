"""Every platform profile parses together with a recipe and changes only Trainer and path settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from common.cli import main

REPO = Path(__file__).resolve().parents[2]
PROFILES = sorted((REPO / "configs" / "platforms").glob("*.yaml"))
ALLOWED_KEYS = {"trainer", "runs_dir", "export", "checkpoint_every_n_steps", "keep_last_checkpoints"}


def test_the_six_profiles_exist():
    assert {p.stem for p in PROFILES} == {
        "cpu",
        "colab-t4",
        "kaggle-t4x2",
        "sagemaker-g5",
        "lambda-multigpu",
        "slurm",
    }


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.stem)
def test_profile_parses_with_a_model(profile, capsys):
    assert set(yaml.safe_load(profile.read_text())) <= ALLOWED_KEYS
    args = [
        "fit",
        "--model",
        "tests.common.models.AdamBoringModel",
        "--config",
        str(profile),
        "--print_config",
    ]
    with pytest.raises(SystemExit) as stop:
        main(args)
    assert stop.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    expected = yaml.safe_load(profile.read_text())["trainer"]
    for key in ("precision", "devices", "strategy"):
        if key in expected:
            assert str(printed["trainer"][key]) == str(expected[key])


def test_slurm_profile_requeues_on_sigusr1(capsys):
    with pytest.raises(SystemExit):
        main(
            [
                "fit",
                "--model",
                "tests.common.models.AdamBoringModel",
                "--config",
                str(REPO / "configs/platforms/slurm.yaml"),
                "--print_config",
            ]
        )
    plugin = yaml.safe_load(capsys.readouterr().out)["trainer"]["plugins"][0]
    assert plugin["class_path"].endswith("SLURMEnvironment")
    assert plugin["init_args"]["auto_requeue"] is True and plugin["init_args"]["requeue_signal"] == "SIGUSR1"
    sbatch = (REPO / "scripts/slurm/train.sbatch").read_text()
    assert "--signal=SIGUSR1@90" in sbatch and "srun mtl fit" in sbatch and "--ckpt_path last" in sbatch
    assert subprocess.run(["bash", "-n", str(REPO / "scripts/slurm/train.sbatch")]).returncode == 0


def test_sagemaker_entry_launches_torchrun_with_the_profile():
    sys.path.insert(0, str(REPO / "scripts" / "sagemaker"))
    from entry import build_command

    command = build_command(["--config", "configs/roofnet/g5.yaml"], gpus=4)
    assert command[1:4] == ["-m", "torch.distributed.run", "--standalone"] and "--nproc_per_node=4" in command
    assert command[command.index("--trainer.devices") + 1] == "4"
    assert command[-2:] == ["--ckpt_path", "last"]
    assert str(REPO / "configs/platforms/sagemaker-g5.yaml") in command
