#!/bin/sh
# Every step the container images run to install mtl, kept out of the Dockerfiles so that a test can
# run them on a plain machine (tests/serving/test_docker_scripts.py). One step per call:
#
#   docker/install.sh system    OS packages the images need (python3 and venv on the CUDA base; as root)
#   docker/install.sh user      the unprivileged account `mtl` the server runs as (as root)
#   docker/install.sh deps      the dependencies listed in pyproject.toml, before the source is copied,
#                               so that a code change does not reinstall torch (Docker layer cache)
#   docker/install.sh project   the project itself (non-editable) and a smoke check of `mtl`
#
# Settings (environment):
#   MTL_SRC          source tree holding pyproject.toml (default: this script's parent directory)
#   MTL_VENV         virtual environment to install into, created when missing (default /opt/mtl/venv)
#   PYTHON           interpreter that creates the environment (default python3)
#   MTL_TORCH_INDEX  extra package index for torch wheels, e.g. https://download.pytorch.org/whl/cpu
#                    for a CPU-only image (default: none, the registry's torch with its CUDA libraries)
#   MTL_INSTALL_DEPS 0 makes `project` install with --no-deps (the dependencies are already there)
set -eu

SRC=${MTL_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
VENV=${MTL_VENV:-/opt/mtl/venv}
PYTHON=${PYTHON:-python3}
step=${1:-}

die() {
    echo "docker/install.sh: error: $*" >&2
    exit 2
}

ensure_venv() {
    if [ ! -x "$VENV/bin/python" ]; then
        "$PYTHON" -m venv "$VENV" || die "$PYTHON -m venv $VENV failed (is the venv module installed?)"
    fi
}

pip_install() {
    "$VENV/bin/python" -m pip install --no-cache-dir --disable-pip-version-check "$@"
}

case "$step" in
system)
    if command -v apt-get >/dev/null 2>&1; then
        apt-get update
        apt-get install -y --no-install-recommends python3 python3-venv python3-pip ca-certificates
        rm -rf /var/lib/apt/lists/*
    else
        command -v "$PYTHON" >/dev/null 2>&1 || die "no apt-get and no $PYTHON: install Python 3.10+ first"
    fi
    ;;
user)
    if ! id mtl >/dev/null 2>&1; then
        useradd --system --uid 10001 --create-home --shell /usr/sbin/nologin mtl
    fi
    ;;
deps)
    [ -f "$SRC/pyproject.toml" ] || die "$SRC/pyproject.toml: not found (set MTL_SRC)"
    ensure_venv
    pip_install --upgrade pip
    if [ -n "${MTL_TORCH_INDEX:-}" ]; then
        pip_install --index-url "$MTL_TORCH_INDEX" torch torchvision
    fi
    # The dependency list of pyproject.toml, read with tomllib (standard library from Python 3.11).
    "$VENV/bin/python" -c "import tomllib" 2>/dev/null || pip_install tomli
    "$VENV/bin/python" - "$SRC/pyproject.toml" >"$VENV/mtl-requirements.txt" <<'PY'
import sys
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
with open(sys.argv[1], "rb") as handle:
    project = tomllib.load(handle)
# The build backend too: `project` installs with --no-build-isolation when the dependencies are here.
print("\n".join(project["build-system"]["requires"] + project["project"]["dependencies"]))
PY
    pip_install -r "$VENV/mtl-requirements.txt"
    ;;
project)
    [ -f "$SRC/pyproject.toml" ] || die "$SRC/pyproject.toml: not found (set MTL_SRC)"
    ensure_venv
    if [ "${MTL_INSTALL_DEPS:-1}" = "0" ]; then
        pip_install --no-deps --no-build-isolation "$SRC"
    else
        pip_install "$SRC"
    fi
    "$VENV/bin/mtl" serve --help >/dev/null || die "$VENV/bin/mtl serve --help failed after the install"
    echo "docker/install.sh: mtl installed in $VENV"
    ;;
*)
    die "expected one step: system, user, deps or project; got '${step}'"
    ;;
esac
