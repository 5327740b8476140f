"""`mtl` end to end: fit, resume in a new invocation, TensorBoard, config, export, DDP, domain verbs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from common.cli import domain_command_groups, run_commands
from common.export import load_bundle

BORING = [
    "--model",
    "tests.common.models.AdamBoringModel",
    "--data",
    "lightning.pytorch.demos.boring_classes.BoringDataModule",
    "--name",
    "boring",
    "--trainer.log_every_n_steps",
    "1",
    "--checkpoint_every_n_steps",
    "7",
]


def scalar_steps(run_dir: Path, tag: str) -> list[int]:
    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    return [event.step for event in accumulator.Scalars(tag)]


def test_fit_then_resume_in_a_new_invocation_continues_at_the_same_step(mtl, tmp_path):
    mtl(["fit", *BORING, "--trainer.max_steps", "20"])
    run = tmp_path / "runs" / "boring"
    first = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert first["global_step"] == 20
    adam_steps = [s["step"].item() for s in first["optimizer_states"][0]["state"].values()]
    assert adam_steps and all(step == 20 for step in adam_steps)

    output = mtl(["fit", *BORING, "--trainer.max_steps", "40", "--ckpt_path", "last"]).stdout
    assert "Restored all states" in output
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 40
    # The optimizer continued: Adam's step count went on from 20 rather than restarting at 0.
    assert all(s["step"].item() == 40 for s in last["optimizer_states"][0]["state"].values())

    # One TensorBoard run: both invocations wrote into the same directory, steps continue past 20.
    assert [p for p in (tmp_path / "runs").iterdir()] == [run]
    steps = scalar_steps(run, "memory/tree_rss_gib")
    assert max(steps) >= 39 and min(steps) <= 1
    assert len(list(run.glob("events.out.tfevents.*"))) == 2
    # Numbered periodic checkpoints beside last.ckpt, newest kept.
    numbered = sorted(p.name for p in (run / "checkpoints").glob("step*.ckpt"))
    assert numbered[-1] == "step00000035.ckpt" and len(numbered) == 3

    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"]["class_path"] == "tests.common.models.AdamBoringModel"
    assert config["trainer"]["max_steps"] == 40


def test_ckpt_path_last_without_a_checkpoint_starts_fresh(mtl, tmp_path):
    output = mtl(["fit", *BORING, "--trainer.max_steps", "3", "--ckpt_path", "last"]).stdout
    assert "last" in output.lower()
    assert torch.load(tmp_path / "runs/boring/checkpoints/last.ckpt", weights_only=True)["global_step"] == 3


def test_fit_exports_a_bundle_that_loads_and_predicts(mtl, tmp_path):
    mtl(["fit", *BORING, "--trainer.max_steps", "5", "--export.fp16", "true", "--export.onnx", "true"])
    bundle = tmp_path / "runs" / "boring" / "export"
    for name in ("model.safetensors", "model.fp16.safetensors", "model.onnx", "config.yaml", "metrics.json"):
        assert (bundle / name).is_file(), name
    manifest = yaml.safe_load((bundle / "bundle.json").read_text())
    assert manifest["checks"]["onnx"]["max_abs_difference"] <= 1e-4

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    model = load_bundle(bundle)
    checkpoint = torch.load(tmp_path / "runs/boring/checkpoints/last.ckpt", weights_only=True)
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, checkpoint["state_dict"][name])
    half = load_bundle(bundle, dtype="fp16")
    assert next(half.parameters()).dtype == torch.float16
    x = torch.randn(3, 32)
    torch.testing.assert_close(half(x.half()).float(), model(x), atol=2e-2, rtol=2e-2)


def test_mtl_export_turns_a_checkpoint_into_a_bundle(mtl, tmp_path):
    mtl(["fit", *BORING, "--trainer.max_steps", "3", "--export.enabled", "false"])
    assert not (tmp_path / "runs/boring/export").exists()
    mtl(["export", "runs/boring/checkpoints/last.ckpt", "--out", "bundle", "--bf16", "true"])
    assert (tmp_path / "bundle" / "model.bf16.safetensors").is_file()
    assert load_bundle(tmp_path / "bundle").hparams.hidden == 32


def test_a_truncated_checkpoint_is_refused_with_its_name(mtl, tmp_path):
    mtl(["fit", *BORING, "--trainer.max_steps", "2"])
    good = tmp_path / "runs/boring/checkpoints/last.ckpt"
    bad = tmp_path / "cut.ckpt"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    output = mtl(
        ["fit", *BORING, "--trainer.max_steps", "4", "--ckpt_path", str(bad)], expect_ok=False
    ).stdout
    assert f"{bad}: not a readable PyTorch checkpoint" in output
    output = mtl(["export", str(bad), "--out", "b"], expect_ok=False).stdout
    assert "cut.ckpt" in output and "truncated or corrupted" in output


@pytest.mark.ddp
def test_ddp_with_two_cpu_processes(mtl, tmp_path):
    output = mtl(
        [
            "fit",
            *BORING,
            "--trainer.accelerator",
            "cpu",
            "--trainer.devices",
            "2",
            "--trainer.strategy",
            "ddp",
            "--trainer.max_steps",
            "6",
        ]
    ).stdout
    assert "distributed_backend=gloo" in output
    assert "All distributed processes registered. Starting with 2 processes" in output
    checkpoint = torch.load(tmp_path / "runs/boring/checkpoints/last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 6


def test_domain_verbs_are_discovered_through_entry_points():
    assert {"fwi", "roofnet", "housebrain", "landcover"} <= set(domain_command_groups())


def test_run_commands_builds_options_and_help_from_signatures(capsys):
    def scale(value: int, *, factor: float = 2.0) -> float:
        """Multiply a value.

        Args:
            value: the number to scale.
            factor: how much.
        """
        return value * factor

    assert (
        run_commands({"scale": scale}, ["scale", "--value", "3", "--factor", "1.5"], prog="mtl demo") == 4.5
    )
    with pytest.raises(SystemExit):
        run_commands({"scale": scale}, ["scale", "--help"], prog="mtl demo")
    assert "the number to scale" in capsys.readouterr().out


def test_a_newer_slurm_preemption_checkpoint_wins_over_last(mtl, tmp_path):
    mtl(["fit", *BORING, "--trainer.max_steps", "6"])
    run = tmp_path / "runs" / "boring"
    # What Lightning's SLURM handler leaves on SIGUSR1 before requeueing: hpc_ckpt_N.ckpt in the run dir.
    preempted = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    preempted["global_step"] = 9
    preempted["loops"]["fit_loop"]["epoch_loop.batch_progress"]["total"]["completed"] = 9
    torch.save(preempted, run / "hpc_ckpt_1.ckpt")
    output = mtl(["fit", *BORING, "--trainer.max_steps", "12", "--ckpt_path", "last"]).stdout
    assert "hpc_ckpt_1.ckpt" in output
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 12


def test_domain_verb_options_accept_dashes():
    def submit(test_dir: str, tta: bool = False) -> str:
        """Args:
        test_dir: a directory.
        tta: mirror test-time augmentation.
        """
        return f"{test_dir}:{tta}"

    assert (
        run_commands({"submit": submit}, ["submit", "--test-dir", "t", "--tta=true"], prog="mtl x")
        == "t:True"
    )


def test_a_recipe_can_add_a_best_checkpoint_beside_the_run_checkpoint(mtl, tmp_path):
    best = '[{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": {"monitor": "valid_loss", "filename": "best", "save_top_k": 1}}]'
    mtl(
        [
            "fit",
            *BORING,
            "--trainer.max_steps",
            "4",
            "--trainer.limit_val_batches",
            "2",
            "--trainer.val_check_interval",
            "2",
            "--trainer.callbacks",
            best,
        ]
    )
    names = {p.name for p in (tmp_path / "runs/boring/checkpoints").iterdir()}
    assert {"best.ckpt", "last.ckpt"} <= names


def test_onnx_check_is_relative_to_the_output_scale(tmp_path):
    from common.export import ExportError, export_onnx
    from tests.common.models import AdamBoringModel

    class MetresPerSecond(AdamBoringModel):
        """Outputs around 3000 (m/s): float32 rounding alone is ~1e-4 there."""

        def forward(self, x):
            return 3000.0 + 1000.0 * super().forward(x)

    report = export_onnx(MetresPerSecond(), tmp_path / "a.onnx")
    assert report["max_relative_difference"] <= 1e-4

    class Broken(AdamBoringModel):
        """Differs between eager and traced export: a Python-side random offset at every call."""

        def forward(self, x):
            import random

            return super().forward(x) + random.random()

    with pytest.raises(ExportError, match="of the output scale"):
        export_onnx(Broken(), tmp_path / "b.onnx")


def test_model_arguments_on_the_command_line_win_over_a_checkpoints_hyperparameters(tmp_path, monkeypatch):
    from common.training_cli import MtlCLI, split_model_arguments

    assert split_model_arguments(
        ["fit", "--model", "M", "--model.lr=1", "--x", "2", "--model.hidden", "8"]
    ) == (
        ["fit", "--x", "2"],
        ["--model", "M", "--model.lr=1", "--model.hidden", "8"],
    )
    monkeypatch.chdir(tmp_path)
    quiet = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    MtlCLI(
        args=[
            "fit",
            *BORING,
            *quiet,
            "--trainer.max_steps",
            "2",
            "--model.hidden",
            "16",
            "--model.lr",
            "0.02",
        ]
    )
    checkpoint = str(tmp_path / "runs/boring/checkpoints/last.ckpt")

    def validate(*extra: str):
        cli = MtlCLI(args=["validate", *BORING, *quiet, "--ckpt_path", checkpoint, *extra])
        return cli.model.hparams

    # the checkpoint's values beat the defaults (hidden 32, lr 0.01): the weights fit this model
    assert (validate().hidden, validate().lr) == (16, 0.02)
    # what the user typed beats the checkpoint (Lightning alone would silently keep lr 0.02)
    overridden = validate("--model.lr", "0.5")
    assert (overridden.hidden, overridden.lr) == (16, 0.5)
    assert validate("--model.init_args.lr=0.25").lr == 0.25
