"""Remote run directories against a real S3-compatible server on 127.0.0.1 (moto's standalone server,
started here the way s3fs's own test suite starts it: `ThreadedMotoServer(ip_address="127.0.0.1")`,
s3fs/tests/test_s3fs.py), through s3fs, the client a user's `--runs_dir s3://...` uses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
import torch
from lightning.pytorch import Callback

pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

from common.export import load_bundle  # noqa: E402
from common.run_directory import RunDirectoryError  # noqa: E402
from common.storage import StorageError, abort_incomplete_uploads, check_writable  # noqa: E402
from common.training_cli import MtlCLI  # noqa: E402
from tests.conftest import REPO  # noqa: E402

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


@pytest.fixture(scope="module")
def endpoint() -> str:
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_env(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Credentials and endpoint as a user sets them for an S3-compatible store; fresh s3fs clients."""
    import s3fs

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    s3fs.S3FileSystem.clear_instance_cache()
    return endpoint


def client(endpoint: str):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


@pytest.fixture
def bucket(s3_env: str) -> str:
    name = f"runs-{uuid.uuid4().hex[:10]}"
    client(s3_env).create_bucket(Bucket=name)
    return name


def keys(endpoint: str, bucket: str, prefix: str = "") -> list[str]:
    listed = client(endpoint).list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return sorted(item["Key"] for item in listed)


def remote_step(endpoint: str, bucket: str, key: str) -> int:
    import io

    body = client(endpoint).get_object(Bucket=bucket, Key=key)["Body"].read()
    return torch.load(io.BytesIO(body), weights_only=True)["global_step"]


def boring(runs_dir: str, *extra: str) -> list[str]:
    return [
        "fit",
        "--model", "tests.common.models.AdamBoringModel",
        "--data", "lightning.pytorch.demos.boring_classes.BoringDataModule",
        "--name", "boring", "--runs_dir", runs_dir, "--checkpoint_every_n_steps", "3",
        "--trainer.limit_val_batches", "0", "--trainer.log_every_n_steps", "1", *QUIET, *extra,
    ]  # fmt: skip


def test_fit_resume_overwrite_and_export_on_s3(s3_env, bucket, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    runs = f"s3://{bucket}/team/runs"
    MtlCLI(args=boring(runs, "--trainer.max_steps", "6"))
    stored = keys(s3_env, bucket, "team/runs/boring/")
    run = "team/runs/boring/"
    assert {run + "checkpoints/last.ckpt", run + "checkpoints/step00000003.ckpt", run + "config.yaml"} <= set(
        stored
    )
    assert {run + "export/bundle.json", run + "export/model.safetensors"} <= set(stored)
    assert len([k for k in stored if "events.out.tfevents" in k]) == 1
    assert remote_step(s3_env, bucket, run + "checkpoints/last.ckpt") == 6
    assert not any(k.endswith(".tmp") or ".mtl-write-probe" in k for k in stored)

    # the bundle loads from the bucket and holds the trained weights
    model = load_bundle(f"{runs}/boring/export")
    import io

    last = client(s3_env).get_object(Bucket=bucket, Key=run + "checkpoints/last.ckpt")["Body"].read()
    weights = torch.load(io.BytesIO(last), weights_only=True)["state_dict"]
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, weights[name])

    # a fresh run of the same name is refused there too; nothing in the bucket changes
    with pytest.raises(RunDirectoryError, match="--ckpt_path last"):
        MtlCLI(args=boring(runs, "--trainer.max_steps", "2"))
    assert keys(s3_env, bucket, run) == stored

    # --overwrite moves the old run aside inside the bucket
    MtlCLI(args=boring(runs, "--trainer.max_steps", "2", "--overwrite", "true", "--export.enabled", "false"))
    archived = [k for k in keys(s3_env, bucket, "team/runs/") if k.startswith("team/runs/boring.archived-")]
    assert any(k.endswith("/checkpoints/last.ckpt") for k in archived)
    assert remote_step(s3_env, bucket, run + "checkpoints/last.ckpt") == 2
    assert len([k for k in keys(s3_env, bucket, run) if "events.out.tfevents" in k]) == 1
    assert not keys(s3_env, bucket, run + "export/")
    MtlCLI(args=boring(runs, "--trainer.max_steps", "6", "--overwrite", "true"))  # as before, for the rest
    stored = keys(s3_env, bucket, run)

    # another machine (empty local cache) resumes from the bucket
    machine_two = tmp_path / "machine-two"
    machine_two.mkdir()
    monkeypatch.chdir(machine_two)
    cli = MtlCLI(args=boring(runs, "--trainer.max_steps", "8", "--ckpt_path", "last"))
    assert cli.trainer.ckpt_path == f"{runs}/boring/checkpoints/last.ckpt"
    assert remote_step(s3_env, bucket, run + "checkpoints/last.ckpt") == 8
    events = [k for k in keys(s3_env, bucket, run) if "events.out.tfevents" in k]
    assert len(events) == 2  # one per session, side by side: TensorBoard shows one curve


class PreemptAt(Callback):
    """What SLURM does to a job near its time limit: SIGUSR1 at step `step`, SIGKILL one step later."""

    def __init__(self, step: int = 4) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGUSR1)  # Lightning saves hpc_ckpt_N.ckpt and requeues
        elif trainer.global_step > self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def test_a_slurm_preemption_checkpoint_goes_to_the_bucket_and_the_requeued_job_resumes_it(
    mtl, s3_env, bucket, tmp_path, monkeypatch
) -> None:
    runs = f"s3://{bucket}/runs"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"  # the requeue call Lightning makes, recorded
    scontrol.write_text(f'#!/bin/sh\necho "$@" > {tmp_path / "requeued.txt"}\n')
    scontrol.chmod(0o755)
    slurm = {"SLURM_JOB_ID": "4242", "SLURM_NTASKS": "1", "SLURM_JOB_NAME": "train", "SLURM_NODELIST": "n1"}
    for key, value in {**slurm, "PATH": f"{bin_dir}:{os.environ['PATH']}"}.items():
        monkeypatch.setenv(key, value)
    preempt = json.dumps([{"class_path": f"{__name__}.PreemptAt", "init_args": {"step": 4}}])
    process = mtl(boring(runs, "--trainer.max_steps", "12", "--trainer.callbacks", preempt), expect_ok=False)
    assert process.returncode == -signal.SIGKILL
    assert (tmp_path / "requeued.txt").read_text().split() == ["requeue", "4242"]
    assert remote_step(s3_env, bucket, "runs/boring/hpc_ckpt_1.ckpt") == 4
    assert remote_step(s3_env, bucket, "runs/boring/checkpoints/last.ckpt") == 3

    # the requeued job: same command with --ckpt_path last, resumes from the newer pre-emption checkpoint
    for key in slurm:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    cli = MtlCLI(args=boring(runs, "--trainer.max_steps", "6", "--ckpt_path", "last"))
    assert cli.trainer.ckpt_path == f"{runs}/boring/hpc_ckpt_1.ckpt"
    assert remote_step(s3_env, bucket, "runs/boring/checkpoints/last.ckpt") == 6


WRITER = """
import sys, torch
from common.checkpoint import SafeCheckpointIO
print("uploading", flush=True)
SafeCheckpointIO().save_checkpoint({"global_step": 2, "pad": torch.ones(12_000_000)}, sys.argv[1])
print("uploaded", flush=True)
"""


def test_a_kill_during_the_upload_of_last_leaves_the_previous_complete_checkpoint(s3_env, bucket) -> None:
    from common.checkpoint import SafeCheckpointIO, read_checkpoint

    url = f"s3://{bucket}/run/checkpoints/last.ckpt"
    SafeCheckpointIO().save_checkpoint({"global_step": 1, "pad": torch.zeros(10)}, url)
    s3 = client(s3_env)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for _attempt in range(3):
        # 48 MB: six 8 MiB parts, so the write is a multipart upload
        writer = subprocess.Popen([sys.executable, "-c", WRITER, url], env=env, stdout=subprocess.PIPE)
        assert writer.stdout.readline().strip() == b"uploading"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and writer.poll() is None:
            if s3.list_multipart_uploads(Bucket=bucket).get("Uploads"):
                break
            time.sleep(0.005)
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
        if s3.list_multipart_uploads(Bucket=bucket).get("Uploads"):
            break  # killed mid-upload, as intended
    else:
        pytest.fail("the upload finished before it could be killed, three times")
    checkpoint = read_checkpoint(url)
    assert checkpoint["global_step"] == 1 and checkpoint["pad"].shape == (10,)
    assert keys(s3_env, bucket) == ["run/checkpoints/last.ckpt"]
    # what the next run's start does with the killed upload's parts
    assert abort_incomplete_uploads(f"s3://{bucket}/run") == ["run/checkpoints/last.ckpt"]
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
    assert abort_incomplete_uploads(f"s3://{bucket}/elsewhere") == []


def test_unusable_urls_are_refused_before_training_with_what_is_wrong(
    s3_env, bucket, tmp_path, monkeypatch
) -> None:
    import s3fs

    read_only = f"readonly-{uuid.uuid4().hex[:8]}"
    s3 = client(s3_env)
    s3.create_bucket(Bucket=read_only)
    deny_writes = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": f"arn:aws:s3:::{read_only}/*",
            }
        ],
    }
    s3.put_bucket_policy(Bucket=read_only, Policy=json.dumps(deny_writes))
    with pytest.raises(StorageError, match="no permission to write"):
        check_writable(f"s3://{read_only}/runs")
    with pytest.raises(StorageError, match="bucket does not exist"):
        check_writable(f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/runs")

    # through the CLI: refused before the trainer exists, nothing written anywhere
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StorageError, match=f"--runs_dir s3://{read_only}/runs/boring: no permission"):
        MtlCLI(args=boring(f"s3://{read_only}/runs", "--trainer.max_steps", "2"))
    assert not (tmp_path / ".cache").exists() and not (tmp_path / "runs").exists()

    # during a run, a failed upload of the logs warns and is retried at the next sync
    from common.callbacks.remote_run_sync import RemoteRunSync

    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "events.out.tfevents.1.host").write_bytes(b"event")
    sync = RemoteRunSync(cache, f"s3://{read_only}/runs/x")
    with pytest.warns(UserWarning, match="could not upload events.out.tfevents.1.host"):
        assert sync.sync() == []
    sync.remote_dir = f"s3://{bucket}/runs/x"  # the store is back
    assert sync.sync() == ["events.out.tfevents.1.host"]
    assert sync.sync() == []  # nothing changed since
    assert keys(s3_env, bucket, "runs/x/") == ["runs/x/events.out.tfevents.1.host"]

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    s3fs.S3FileSystem.clear_instance_cache()
    started = time.monotonic()
    with pytest.raises(StorageError, match="cannot be reached"):
        check_writable(f"s3://{bucket}/runs")
    assert time.monotonic() - started < 30

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_env)
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    s3fs.S3FileSystem.clear_instance_cache()
    with pytest.raises(StorageError, match="no credentials found"):
        check_writable(f"s3://{bucket}/runs")


def test_runs_in_a_bucket_show_in_one_table(s3_env, bucket, tmp_path, monkeypatch) -> None:
    """Two runs trained into one bucket from two working directories (two machines), then read back by
    `mtl runs status` and `compare` from the bucket alone."""
    from common.runs import runs_command

    runs = f"s3://{bucket}/team/runs"
    for machine, name, steps in (("colab", "shard-1", "6"), ("kaggle", "shard-2", "3")):
        (tmp_path / machine).mkdir()
        monkeypatch.chdir(tmp_path / machine)
        args = boring(runs, "--trainer.max_steps", steps, "--export.enabled", "false")
        MtlCLI(args=[a if a != "boring" else name for a in args])
    monkeypatch.chdir(tmp_path)
    statuses = {s.run: s for s in runs_command(["status", runs, "--json"])}
    assert set(statuses) == {"shard-1", "shard-2"}
    assert (statuses["shard-1"].step, statuses["shard-2"].step) == (6, 3)
    assert all(s.state == "finished" and s.location.startswith("s3://") for s in statuses.values())
    compared = runs_command(["compare", runs, "--json"])
    assert {s.run for s in compared} == {"shard-1", "shard-2"}
