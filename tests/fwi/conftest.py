"""Small generated OpenFWI-layout datasets shared by the fwi tests (written once per session)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fwi.data.generator import generate


@pytest.fixture(scope="session")
def openfwi_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """FlatVel-A: 12 samples in 3 files of 4; CurveFault-A: 8 samples in 2 files of 4 (real shapes)."""
    root = tmp_path_factory.mktemp("openfwi")
    generate("FlatVel-A", 12, root, seed=1, samples_per_file=4, batch_size=4, threads=1)
    generate("CurveFault-A", 8, root, seed=1, samples_per_file=4, batch_size=4, threads=1)
    return root


def copy_tree(source: Path, target: Path) -> Path:
    """A writable copy (tests that corrupt files must not touch the shared dataset)."""
    import shutil

    shutil.copytree(source, target)
    return target


def save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, array)
    return path
