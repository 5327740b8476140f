"""`mtl runs status|compare` on real run directories: a live run, the same run killed, a finished run,
a failed run, by path and by file:// URL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest

from common.cli import main
from common.run_files import read_scalars
from tests.common.logging_models import LOGGING_FIT
from tests.conftest import REPO


def status_json(capsys: pytest.CaptureFixture, *args: str) -> dict[str, dict]:
    capsys.readouterr()
    main(["runs", "status", *args, "--json"])
    return {row["run"]: row for row in json.loads(capsys.readouterr().out)}


def test_a_live_run_is_alive_with_progress_and_eta_then_stalled_once_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs/live").mkdir(parents=True)
    command = [sys.executable, "-m", "common.cli", "fit", *LOGGING_FIT, "--name", "live",
               "--trainer.max_steps", "400", "--trainer.max_epochs", "-1", "--model.init_args.step_seconds", "0.05",
               "--checkpoint_every_n_steps", "10"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with (tmp_path / "runs/live/train.log").open("w") as log:  # as a launcher logs into the run directory
        training = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while not list((tmp_path / "runs/live/checkpoints").glob("step*.ckpt")):
            assert training.poll() is None and time.monotonic() < deadline, (
                tmp_path / "runs/live/train.log"
            ).read_text()
            time.sleep(0.2)
        time.sleep(1.0)  # a few more logged steps for the speed
        live = status_json(capsys, "runs")["live"]
        assert live["state"] == "alive", live
        assert 10 <= live["step"] < 400 and live["total_steps"] == 400
        # BoringDataModule takes no batch_size, so the config cannot turn steps/s into samples/s.
        assert live["steps_per_s"] > 0 and live["samples_per_s"] is None
        assert live["eta_s"] > 0 and live["checkpoint_age_s"] < 60 and live["train_loss"] is not None
        assert live["best_checkpoint"].startswith("checkpoints/")
    finally:
        training.kill()
        training.wait()
    time.sleep(1.2)
    killed = status_json(capsys, "runs", "--stall_after", "1")["live"]
    assert killed["state"] == "stalled" and killed["reason"].startswith("nothing written for"), killed
    assert killed["eta_s"] is None


def test_finished_and_failed_runs_status_and_compare_by_path_and_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    main(
        [
            "fit",
            *LOGGING_FIT,
            "--name",
            "team/done",
            "--trainer.max_steps",
            "40",
            "--checkpoint_every_n_steps",
            "10",
        ]
    )
    try:
        main(["fit", *LOGGING_FIT, "--name", "team/broken", "--trainer.max_steps", "40",
              "--model.init_args.fail_at_step", "25", "--checkpoint_every_n_steps", "10"])  # fmt: skip
    except RuntimeError:
        (tmp_path / "runs/team/broken/train.log").write_text(traceback.format_exc())
    else:
        pytest.fail("the run with fail_at_step did not fail")

    rows = status_json(capsys, "runs/team", f"file://{tmp_path}/runs/team/done")
    assert set(rows) == {"done", "broken"}  # the URL names the same run as the folder: one row per name
    done, broken = rows["done"], rows["broken"]
    assert done["state"] == "finished" and done["step"] == done["total_steps"] == 40
    assert broken["state"] == "failed" and broken["step"] <= 26
    assert broken["reason"] == "train.log: RuntimeError: bad batch at step 25"
    val = read_scalars("runs/team/done")["val/loss"]
    assert done["val_metric"] == "val/loss" and done["val_value"] == pytest.approx(val[-1].value)
    best = min((p for p in val if p.step < 40), key=lambda p: p.value)
    assert done["best_value"] == pytest.approx(best.value)

    capsys.readouterr()
    main(["runs", "status", "runs", "--watch", "0.05", "--refreshes", "2"])
    table = capsys.readouterr().out
    assert "team/done" in table and "finished" in table and "failed" in table

    main(["runs", "compare", f"file://{tmp_path}/runs/team/done", "runs/team/broken", "--json"])
    compared = {row["run"]: row for row in json.loads(capsys.readouterr().out)}
    assert compared["done"]["last_values"]["val/loss"] == pytest.approx(val[-1].value)
    main(["runs", "compare", "runs/team"])
    text = capsys.readouterr().out
    assert "val/loss" in text and "best checkpoint" in text and "broken" in text


@pytest.mark.parametrize(
    ("location", "message"),
    [("nowhere", "nowhere: no such run directory or folder of runs"), (".", ": no run directory here")],
)
def test_no_runs_is_one_error_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    location: str,
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        main(["runs", "status", location])
    error = capsys.readouterr().err
    assert (
        stopped.value.code == 1
        and error.startswith("mtl: error: ")
        and message in error
        and error.count("\n") == 1
    )
