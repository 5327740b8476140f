"""Checkpoints are read with weights_only=True and written atomically."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from common.checkpoint import CheckpointError, read_checkpoint, save_checkpoint_atomically


class Payload:
    """Not a tensor or plain container: weights_only loading must refuse it."""

    def __reduce__(self):
        return (print, ("this code would run on load",))


def test_round_trip(tmp_path):
    path = tmp_path / "a.ckpt"
    save_checkpoint_atomically({"state_dict": {"w": torch.ones(3)}, "global_step": 7}, path)
    assert read_checkpoint(path)["global_step"] == 7


def test_objects_that_could_run_code_are_refused(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": Payload()}, path)
    with pytest.raises(CheckpointError, match=r"evil\.ckpt: refused to load"):
        read_checkpoint(path)


def test_plain_pickle_is_refused(tmp_path):
    path = tmp_path / "pickled.ckpt"
    path.write_bytes(pickle.dumps({"w": [1, 2, 3]}))
    with pytest.raises(CheckpointError, match=r"pickled\.ckpt"):
        read_checkpoint(path)


@pytest.mark.parametrize("size", [0, 100])
def test_truncated_files_name_the_file(tmp_path, size):
    full = tmp_path / "full.ckpt"
    save_checkpoint_atomically({"w": torch.randn(1000)}, full)
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(full.read_bytes()[:size])
    with pytest.raises(CheckpointError, match=r"cut\.ckpt"):
        read_checkpoint(cut)


def test_an_interrupted_save_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    save_checkpoint_atomically({"global_step": 1, "w": torch.zeros(10)}, path)

    def power_cut(fd):
        raise OSError("simulated power cut during fsync")

    monkeypatch.setattr(os, "fsync", power_cut)
    with pytest.raises(OSError, match="power cut"):
        save_checkpoint_atomically({"global_step": 2, "w": torch.ones(10)}, path)
    monkeypatch.undo()
    assert read_checkpoint(path)["global_step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no temporary file left behind
