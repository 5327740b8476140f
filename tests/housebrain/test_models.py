"""Offline model loading: clear errors for bad paths, and a tiny model that regenerates identically."""

from __future__ import annotations

from pathlib import Path

import pytest

from housebrain.models.causal_lm import ModelSourceError, ensure_tiny_llama, load_causal_lm


def test_bad_model_paths_say_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(
        ModelSourceError, match=r"missing: expected a local Hugging Face model directory or a \.gguf"
    ):
        load_causal_lm(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelSourceError, match=r"empty: a model directory needs config\.json"):
        load_causal_lm(tmp_path / "empty")


def test_tiny_model_regenerates_identically(tmp_path: Path, tiny_model: Path) -> None:
    # a bundle trained on the quickstart's tiny model, loaded on another machine, gets the same base
    again = ensure_tiny_llama(tmp_path / "again", samples=80)
    for name in ("model.safetensors", "tokenizer.json"):
        assert (again / name).read_bytes() == (tiny_model / name).read_bytes()
