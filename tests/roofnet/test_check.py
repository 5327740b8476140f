"""`mtl roofnet check` on the layouts as they ship, and on the mistakes users make with them."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio

from common.cli import main
from roofnet.data.formats import RID_SEGMENTS, RID_SUPERSTRUCTURES, RoofDataError, write_geotiff
from roofnet.tools import check


@pytest.fixture
def unpacked(synthetic_root: Path, tmp_path: Path) -> Path:
    """The synthetic datasets arranged as downloads unpack: RID inside RID_dataset/."""
    shutil.copytree(synthetic_root / "rid", tmp_path / "rid" / "RID_dataset")
    shutil.copytree(synthetic_root / "roofline", tmp_path / "roofline")
    shutil.copytree(synthetic_root / "airs", tmp_path / "airs")
    return tmp_path


def test_check_reports_dtypes_ranges_dominant_values_splits_and_tile_profiles(unpacked: Path, capsys) -> None:
    result = check(unpacked, image_size=256)
    out = capsys.readouterr().out
    rid = result["rid"]
    assert set(rid["splits"]) == {"train", "val", "test"} and all(rid["splits"].values())
    assert (rid["segments_dominant"], rid["superstructures_dominant"]) == (17, 8)
    assert 0.099 < rid["pixel_size_m"][0] <= rid["pixel_size_m"][1] < 0.101  # from EPSG:4326 degrees
    assert "CRS EPSG:4326" in out and "dominant 17" in out
    assert result["roofline"]["group"] == "/imdb" and result["roofline"]["element_values"] == [0, 1]
    profile = next(iter(result["airs"]["profiles"].values()))
    assert profile["block"] == (256, 256) and not profile["striped"] and profile["compression"] == "none"
    assert profile["pixel_size_m"] == pytest.approx(0.075)
    assert result["airs"]["test"]["labelled"] and result["counts"]["airs/test"] == 16
    assert result["counts"]["rid/test"] == rid["splits"]["test"]
    assert not result["warnings"]


def test_swapped_segment_and_superstructure_folders_are_refused(unpacked: Path) -> None:
    rid = unpacked / "rid" / "RID_dataset"
    (rid / RID_SEGMENTS).rename(rid / "swap")
    (rid / RID_SUPERSTRUCTURES).rename(rid / RID_SEGMENTS)
    (rid / "swap").rename(rid / RID_SUPERSTRUCTURES)
    with pytest.raises(
        RoofDataError, match=r"masks_segments_reviewed: masks hold 0\.\.[0-8] with 8 dominant.*swapped\?"
    ):
        check(unpacked)


def test_striped_compressed_airs_tiles_get_a_recommendation(unpacked: Path, capsys) -> None:
    tile = unpacked / "airs" / "val" / "image" / "christchurch_val_000.tif"
    with rasterio.open(tile) as src:
        profile, data = src.profile, src.read()
    profile.update(tiled=False, blockxsize=None, blockysize=None, compress="lzw")
    profile = {k: v for k, v in profile.items() if v is not None}
    profile["blockysize"] = 1
    with rasterio.open(tile, "w", **profile) as dst:
        dst.write(data)
    result = check(unpacked, image_size=256)
    striped = result["airs"]["profiles"]["christchurch_val_000.tif"]
    assert striped["striped"] and striped["block"] == (1, 1024) and striped["compression"] == "lzw"
    assert any("striped tile" in w and "gdal_translate -co TILED=YES" in w for w in result["warnings"])
    assert "WARNING: airs: 1 striped tile(s)" in capsys.readouterr().out


def test_airs_labels_in_0_255_are_named_in_one_line(unpacked: Path, capsys) -> None:
    label = unpacked / "airs" / "train" / "label" / "christchurch_train_000.tif"
    with rasterio.open(label) as src:
        data, transform = src.read(1), src.transform
    write_geotiff(label, (data * 255).astype(np.uint8), transform, "EPSG:2193", tiled=True)
    with pytest.raises(SystemExit) as exit_info:
        main(["roofnet", "check", "--root", str(unpacked)])
    assert exit_info.value.code == 1
    message = capsys.readouterr().err
    assert message.startswith("mtl: error: ")
    assert "train/label: label values up to 255; expected 0/1" in message
    assert message.count("\n") == 1 and "Traceback" not in message
