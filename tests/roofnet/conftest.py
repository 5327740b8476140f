"""Small synthetic roof data in the real layouts, written once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from roofnet.data.synthetic import SyntheticLayout, write_synthetic


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """rid/ (12 images, 64 px), roofline/ (12 instances, 64 px), airs/ (1024 px tiles: 2 train, 1 val, 1 test)."""
    layout = SyntheticLayout(
        samples=12, rid_size=64, roofline_size=64, airs_tiles=(2, 1, 1), airs_tile_size=1024
    )
    return write_synthetic(tmp_path_factory.mktemp("roofnet") / "synthetic", layout)
