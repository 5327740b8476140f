"""Cutting a Sentinel-2 GeoTIFF and its label raster into NPZ patches, then splitting and loading them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from landcover.data import DEFAULT_BANDS, LandCoverDataModule, PatchFormatError
from landcover.tools import patches, split

TRANSFORM = from_origin(500000, 7100000, 10, 10)  # 10 m pixels, UTM-like


def write_tif(path: Path, data: np.ndarray, descriptions: list[str] | None = None, nodata=None) -> Path:
    profile = {"driver": "GTiff", "width": data.shape[2], "height": data.shape[1], "count": data.shape[0]}
    profile |= {"dtype": data.dtype.name, "transform": TRANSFORM, "crs": "EPSG:32627", "nodata": nodata}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for i, name in enumerate(descriptions or []):
            dst.set_band_description(i + 1, name)
    return path


def test_scene_is_cut_into_labelled_patches_and_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the statistics cache goes to ./.cache
    rng = np.random.default_rng(0)
    # 7 bands in the file, B01 first: the cutter picks the 6 default bands by description.
    names = ["B01", *DEFAULT_BANDS]
    scene = rng.integers(1100, 5000, size=(7, 64, 96), dtype=np.uint16)
    scene[0] = 7  # B01 must not end up in the patches
    label = np.zeros((1, 64, 96), np.uint8)
    label[:, :, 32:64] = 3  # middle column of patches: bare rock / lava
    label[:, :32, 64:] = 255  # top-right patch: unlabelled
    label[:, 32:, 64:] = np.tile([5, 6], (32, 16))  # bottom-right: half grassland, half cropland
    write_tif(tmp_path / "scene.tif", scene, names)
    write_tif(tmp_path / "labels.tif", label, nodata=255)

    counts = patches(
        scene=tmp_path / "scene.tif", labels=tmp_path / "labels.tif", out=tmp_path / "ds", size=32
    )
    assert counts == {"written": 4, "skipped_impure": 1, "skipped_unlabelled": 1}
    with np.load(tmp_path / "ds/patches/scene_r00000_c00032.npz", allow_pickle=False) as npz:
        assert (
            int(npz["label"]) == 3 and npz["image"].shape == (6, 32, 32) and npz["image"].dtype == np.uint16
        )
        assert npz["bands"].tolist() == list(DEFAULT_BANDS)
        np.testing.assert_array_equal(npz["image"], scene[1:, :32, 32:64])

    split(source=tmp_path / "ds", val_fraction=0.25, test_fraction=0.0)
    datamodule = LandCoverDataModule(root=str(tmp_path / "ds"))
    datamodule.setup("fit")
    assert len(datamodule.datasets["train"]) + len(datamodule.datasets["val"]) == 4
    assert datamodule.band_mean.min() > 0.01 and datamodule.band_mean.max() < 0.4  # DN - 1000, / 10000

    write_tif(tmp_path / "shifted.tif", label[:, :, :64], nodata=255)
    with pytest.raises(PatchFormatError, match=r"shifted\.tif: label raster grid 64x64"):
        patches(scene=tmp_path / "scene.tif", labels=tmp_path / "shifted.tif", out=tmp_path / "bad", size=32)
