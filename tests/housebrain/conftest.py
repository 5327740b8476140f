"""Shared fixtures: one tiny random Llama (tokenizer trained offline) and one small generated dataset."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from housebrain.models.causal_lm import ensure_tiny_llama

    return ensure_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny-llama", samples=80)


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from housebrain.data.generator import write_dataset

    root = tmp_path_factory.mktemp("data") / "designs"
    write_dataset(root, 48, eval_fraction=0.125, seed=3)
    return root


@pytest.fixture
def housebrain_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Run `mtl housebrain ARGS` in this process (same jsonargparse parser, no interpreter start-up)."""
    from common.cli import run_commands
    from housebrain.tools import commands

    monkeypatch.chdir(tmp_path)

    def run(args: list[str]):
        return run_commands(commands(), [str(a) for a in args], prog="mtl housebrain")

    return run
