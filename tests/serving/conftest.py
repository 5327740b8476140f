"""Real servers for the serving tests: `mtl serve BUNDLE` in subprocesses on 127.0.0.1, free ports.

All servers of a session start together (each pays the interpreter and torch start-up once, in
parallel) and stop at the end of the session; tests talk to them with httpx.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.serving.bundles import fwi_bundle, housebrain_bundle, landcover_bundle, roofnet_bundle


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """One `mtl serve` subprocess; `url` is its base address, `log` its JSON log file."""

    bundle: Path
    args: Sequence[str]
    log: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, "-m", "common.cli", "serve", str(self.bundle), "--port", str(self.port)]
        self.process = subprocess.Popen(
            [*command, *self.args],
            cwd=REPO,
            env=env,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )
        return self

    def wait_ready(self, timeout: float = 180) -> Server:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"mtl serve exited {self.process.returncode}:\n{self.log.read_text()[-4000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        pytest.fail(f"mtl serve not ready after {timeout} s:\n{self.log.read_text()[-4000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    """landcover (batches of 8, waiting 20 ms for company so that concurrent requests share them), fwi (4 MiB body limit), roofnet (2 requests in progress at most, 5 s
    timeout, no batching so that a large image is reliably slow), started together."""
    root = tmp_path_factory.mktemp("serving")
    started = {
        "landcover": Server(
            landcover_bundle(root / "landcover"),
            ["--max_batch_size", "8", "--batch_wait_ms", "20"],
            root / "landcover.log",
        ),
        "fwi": Server(fwi_bundle(root / "fwi"), ["--max_request_mb", "4"], root / "fwi.log"),
        "roofnet": Server(
            roofnet_bundle(root / "roofnet"),
            ["--max_queue", "2", "--timeout", "5", "--max_batch_size", "1"],
            root / "roofnet.log",
        ),
    }
    for server in started.values():
        server.start()
    try:
        yield started
    finally:
        for server in started.values():
            server.stop()


@pytest.fixture(scope="session")
def landcover_server(servers: dict[str, Server]) -> Server:
    return servers["landcover"].wait_ready()


@pytest.fixture(scope="session")
def fwi_server(servers: dict[str, Server]) -> Server:
    return servers["fwi"].wait_ready()


@pytest.fixture(scope="session")
def roofnet_server(servers: dict[str, Server]) -> Server:
    return servers["roofnet"].wait_ready()


@pytest.fixture(scope="session")
def housebrain_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("serving-housebrain")
    bundle = housebrain_bundle(root / "bundle", root / "tiny-llama")
    server = Server(bundle, ["--timeout", "60"], root / "housebrain.log").start()
    try:
        yield server.wait_ready()
    finally:
        server.stop()
