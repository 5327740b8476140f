"""`mtl sweep` on Optuna: trials as ordinary runs, summary and best recipe, pruning, bad search spaces,
two processes sharing one SQLite study, and a killed sweep that continues."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from common.cli import main
from tests.common.logging_models import LOGGING_FIT
from tests.conftest import REPO

TRIAL = [
    *LOGGING_FIT,
    "--trainer.max_epochs",
    "2",
    "--trainer.limit_train_batches",
    "8",
    "--trainer.val_check_interval",
    "1.0",
]
SPACE = """\
model.init_args.lr: {type: float, low: 1.0e-3, high: 0.1, log: true}
model.init_args.hidden: {type: categorical, choices: [4, 16]}
"""


def load_study(path: Path, name: str = "sweep") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{path}")


def test_tiny_sweep_runs_trials_as_runs_and_writes_the_best_recipe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.yaml").write_text(SPACE)
    command = ["sweep", "--space", "space.yaml", "--trials", "3", "--seed", "0", *TRIAL]
    main(command)
    sweep_dir = tmp_path / "runs/sweep"
    rows = json.loads((sweep_dir / "summary.json").read_text())
    assert [row["state"] for row in rows] == ["complete"] * 3
    values = [row["val/loss"] for row in rows]
    assert values == sorted(values)  # best first (minimize)
    for row in rows:  # each trial an ordinary run directory, trained with the sampled values
        config = yaml.safe_load((tmp_path / row["run_dir"] / "config.yaml").read_text())
        assert config["model"]["init_args"]["lr"] == pytest.approx(row["model.init_args.lr"])
        assert config["model"]["init_args"]["hidden"] == row["model.init_args.hidden"] in (4, 16)
        assert 1e-3 <= row["model.init_args.lr"] <= 0.1
        assert list((tmp_path / row["run_dir"]).glob("events.out.tfevents.*"))
    table = (sweep_dir / "summary.md").read_text()
    assert table.startswith(
        "| trial | state | val/loss | model.init_args.lr | model.init_args.hidden | run_dir |"
    )

    best = yaml.safe_load((sweep_dir / "best.yaml").read_text())
    assert best["name"] == "sweep/best" and "ckpt_path" not in best
    assert best["model"]["init_args"]["lr"] == pytest.approx(rows[0]["model.init_args.lr"])
    main(["fit", "--config", str(sweep_dir / "best.yaml"), "--trainer.max_epochs", "1"])
    assert (sweep_dir / "best/checkpoints/last.ckpt").is_file()

    # The same command again: the study is complete, nothing trains, the table is printed again.
    capsys.readouterr()
    main(command)
    assert "| complete |" in capsys.readouterr().out
    assert len(load_study(sweep_dir / "study.db").trials) == 3
    assert sorted(p.name for p in sweep_dir.glob("trial_*")) == ["trial_000", "trial_001", "trial_002"]


def test_grid_sweep_prunes_a_trial_worse_than_the_median(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    # lr 0 and 1e-5 hardly learn; with this seed the grid takes 0.1 first, and the median pruner
    # (acting after one complete trial) stops the others at their first epoch.
    space = "model.init_args.lr: {type: categorical, choices: [0.00001, 0.1, 0.0]}\n"
    (tmp_path / "grid.yaml").write_text(space)
    main(["sweep", "--space", "grid.yaml", "--sampler", "grid", "--startup_trials", "1", "--seed", "3",
          "--study", "grid", *TRIAL, "--trainer.max_epochs", "3"])  # fmt: skip
    study = load_study(tmp_path / "runs/grid/study.db", "grid")
    assert sorted(t.params["model.init_args.lr"] for t in study.trials) == [0.0, 0.00001, 0.1]  # the grid
    states = {t.params["model.init_args.lr"]: t.state.name for t in study.trials}
    assert states == {0.1: "COMPLETE", 0.00001: "PRUNED", 0.0: "PRUNED"}, states
    pruned = [t for t in study.trials if t.state.name == "PRUNED"]
    good = next(t for t in study.trials if t.params["model.init_args.lr"] == 0.1)
    for trial in pruned:  # stopped early: fewer reported epochs than the complete one, and worse there
        last_epoch = max(trial.intermediate_values)
        assert last_epoch < 2 and trial.intermediate_values[last_epoch] > good.intermediate_values[last_epoch]
    rows = json.loads((tmp_path / "runs/grid/summary.json").read_text())
    assert (rows[0]["model.init_args.lr"], rows[0]["state"]) == (0.1, "complete")
    assert [row["state"] for row in rows[1:]] == ["pruned", "pruned"]


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ("model.init_args.lr: [0.1, 0.2\n", "space.yaml: not valid YAML at line 2"),
        ("- 0.1\n", "space.yaml: expected a mapping of recipe keys to distributions"),
        ("model.init_args.lr: {type: normal}\n", "model.init_args.lr: type 'normal': expected one of"),
        ("model.init_args.lr: {type: float, low: 0.1, high: 0.01}\n", "expected low < high; found low 0.1"),
        ("model.init_args.lr: {type: float, low: 0, high: 1, log: true}\n", "a log scale needs low > 0"),
        ("model.init_args.lr: {type: float, lo: 0, high: 1}\n", "unknown field(s) ['lo']"),
        ("model.init_args.hidden: {type: categorical, choices: []}\n", "`choices` must be a non-empty list"),
        ("model.init_args.lr: {type: float, low: 0.1, high: 0.2}\n", "the grid sampler needs a `step`"),
        (
            "model.init_args.width: {type: int, low: 1, high: 4}\n",
            "model.init_args.width: value 1 refused by the recipe",
        ),
        (
            "model.init_args.hidden: {type: categorical, choices: [4, wide]}\n",
            "value 'wide' refused by the recipe",
        ),
    ],
)
def test_malformed_search_space_is_one_error_line_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, space: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.yaml").write_text(space)
    sampler = ["--sampler", "grid"] if "grid sampler" in message else []
    with pytest.raises(SystemExit) as stopped:
        main(["sweep", "--space", "space.yaml", *sampler, "--trials", "2", *TRIAL])
    error = capsys.readouterr().err
    assert stopped.value.code == 1 and error.startswith("mtl: error: ") and error.count("\n") == 1, error
    assert message in error, error
    assert not (tmp_path / "runs").exists()  # nothing trained, no study created


def sweep_task(tmp_path: Path, task: int) -> subprocess.Popen:
    """One task of scripts/slurm/sweep.sbatch's job array, as SLURM would start it (`srun` a pass-through)."""
    shims = tmp_path / "bin"
    shims.mkdir(exist_ok=True)
    (shims / "srun").write_text('#!/bin/sh\nexec "$@"\n')
    (shims / "mtl").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m common.cli "$@"\n')
    for shim in shims.iterdir():
        shim.chmod(0o755)
    env = {
        **os.environ, "PATH": f"{shims}:{os.environ['PATH']}", "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1",
        "SLURM_JOB_ID": "77", "SLURM_ARRAY_JOB_ID": "77", "SLURM_ARRAY_TASK_ID": str(task),
        "MTL_SWEEP_STUDY": "sweep", "MTL_SWEEP_TRIALS": "3",
    }  # fmt: skip
    slow = [
        "--model.init_args.step_seconds",
        "0.05",
        "--trainer.max_epochs",
        "3",
        "--checkpoint_every_n_steps",
        "4",
    ]
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("trainer:\n  accelerator: cpu\n")
    command = ["bash", str(REPO / "scripts/slurm/sweep.sbatch"), str(recipe), "space.yaml", "--heartbeat_s", "1",
               *TRIAL, *slow]  # fmt: skip
    log = (tmp_path / f"task{task}.log").open("w")
    # A session of its own, so the whole task (bash, srun, python) can be killed as SLURM would.
    return subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def trial_runs(log: Path) -> set[str]:
    """Run directories a sweep process started trials in, from its "== trial N: RUN_DIR ..." lines."""
    return {
        line.split()[3]
        for line in log.read_text().splitlines()
        if line.startswith("== trial ") and " runs/" in line
    }


@pytest.mark.slow  # two `mtl sweep` processes: 25 s on an idle 2-core machine, 80 s under load 8
def test_two_slurm_array_tasks_share_one_study_and_a_killed_trial_is_resumed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.yaml").write_text(SPACE)
    first = sweep_task(tmp_path, 0)
    second = sweep_task(tmp_path, 1)  # sleeps 1 s: the script staggers the tasks' starts
    try:
        # Kill the first process in the middle of its first trial, once that trial has a checkpoint.
        deadline = time.monotonic() + 240
        killed_run = None
        while killed_run is None and time.monotonic() < deadline and first.poll() is None:
            for run in trial_runs(tmp_path / "task0.log"):
                if list((tmp_path / run / "checkpoints").glob("step*.ckpt")):
                    killed_run = tmp_path / run
            time.sleep(0.1)
        assert killed_run is not None, (tmp_path / "task0.log").read_text()[-3000:]
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        assert second.wait(timeout=300) == 0, (tmp_path / "task1.log").read_text()[-3000:]
    finally:
        for process in (first, second):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    study = load_study(tmp_path / "runs/sweep/study.db")
    origins = {t.user_attrs.get("origin", t.number) for t in study.trials if t.state.name == "COMPLETE"}
    assert len(origins) == 3  # three trials done between the two processes
    ran_first, ran_second = trial_runs(tmp_path / "task0.log"), trial_runs(tmp_path / "task1.log")
    assert ran_first and ran_second  # both processes took trials
    # The killed trial was failed (stale heartbeat), enqueued again, and its retry continued the same run.
    states = sorted(t.state.name for t in study.trials)
    assert states.count("FAIL") == 1 and states.count("COMPLETE") == 3
    assert str(killed_run.relative_to(tmp_path)) in ran_second
    assert len(list(killed_run.glob("events.out.tfevents.*"))) == 2  # resumed into the same directory
    rows = json.loads((tmp_path / "runs/sweep/summary.json").read_text())
    assert [row["state"] for row in rows] == ["complete"] * 3

    # Running the command once more after everything finished trains nothing.
    main(["sweep", "--space", "space.yaml", "--trials", "3", *TRIAL])
    assert len(load_study(tmp_path / "runs/sweep/study.db").trials) == 4
    assert "task 1 done: runs/sweep/summary.md" in (tmp_path / "task1.log").read_text()
