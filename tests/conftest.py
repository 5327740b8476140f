"""Shared test fixtures: run the real `mtl` command line, in a subprocess or in this process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow tests are opt-in: `pytest -m slow` or MTL_SLOW=1."""
    if os.environ.get("MTL_SLOW") == "1" or "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with `make test-slow` (pytest -m slow) or MTL_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def one_math_thread(monkeypatch: pytest.MonkeyPatch):
    """One intra-op thread, in this process and in the `mtl` subprocesses tests start.

    The suite's models are tiny and the machine has 2 cores shared by pytest, the CLI subprocess and
    its DataLoader workers: competing OpenMP threads made steps 5-20x slower than a single thread.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def mtl(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    """Run `mtl ARGS` as a user would, in a subprocess whose working directory is `tmp_path`.

    Returns the completed process (stdout and stderr merged in `.stdout`); fails the test with the
    output when the exit status is not the expected one.
    """

    def run(args: Sequence[str], expect_ok: bool = True, cwd: Path | None = None, timeout: float = 300):
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}
        process = subprocess.run(
            [sys.executable, "-m", "common.cli", *map(str, args)],
            cwd=cwd or tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
        if expect_ok and process.returncode != 0:
            pytest.fail(
                f"mtl {' '.join(map(str, args))} exited {process.returncode}:\n{process.stdout[-6000:]}"
            )
        if not expect_ok and process.returncode == 0:
            pytest.fail(
                f"mtl {' '.join(map(str, args))} succeeded but should have failed:\n{process.stdout[-3000:]}"
            )
        return process

    return run
