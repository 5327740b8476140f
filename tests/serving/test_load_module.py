"""`common.export.load_module`: one loader for a bundle directory or a `.ckpt`, giving the same model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from common.errors import CheckpointError, ExportError
from common.export import export_bundle, load_module


def tiny_task():
    from landcover.task import LandCoverTask

    torch.manual_seed(0)
    return LandCoverTask(model="baseline_cnn", width=4, depth=1, example_size=16)


def test_bundle_and_checkpoint_give_the_same_module_in_eval_mode(tmp_path: Path) -> None:
    task = tiny_task().eval()
    images = torch.rand(2, 6, 16, 16)
    expected = task(images)

    bundle = export_bundle(task, tmp_path / "bundle")
    # What LightningCLI writes: hyperparameters with the class path, the run's config beside the checkpoints.
    hparams = {"_class_path": "landcover.task.LandCoverTask", **dict(task.hparams)}
    checkpoint = tmp_path / "run" / "checkpoints" / "last.ckpt"
    checkpoint.parent.mkdir(parents=True)
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": hparams, "global_step": 3}, checkpoint)
    bare = tmp_path / "bare.ckpt"
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": hparams}, bare)
    config = {"model": {"class_path": "landcover.task.LandCoverTask", "init_args": dict(task.hparams)}}
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump(config))

    for source in (bundle, checkpoint, bare):
        module = load_module(source)
        assert not module.training
        torch.testing.assert_close(module(images), expected)


def test_what_is_not_a_model_is_named(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="not found"):
        load_module(tmp_path / "missing.ckpt")
    with pytest.raises(ExportError, match=r"no bundle\.json"):
        load_module(tmp_path)
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match=r"garbage\.ckpt"):
        load_module(garbage)
    nameless = tmp_path / "nameless.ckpt"
    torch.save({"state_dict": {}}, nameless)
    with pytest.raises(ExportError, match="cannot tell which LightningModule"):
        load_module(nameless)
