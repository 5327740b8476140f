"""Pixel size at prediction: read from the input, resampled to the training GSD and back, refused or
warned about when no metric size can be derived."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin
from torch.utils.data import default_collate

from roofnet.data.datasets import PredictionWindows
from roofnet.data.formats import RoofDataError, write_geotiff, write_png
from roofnet.data.writers import PredictionRasterWriter
from roofnet.task import prediction_arrays, resize_outputs


def _stripes(height: int, width: int) -> np.ndarray:
    """Vertical stripes 8 px wide: resampling by 2 keeps them recognisable."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, (np.arange(width) // 8) % 2 == 1] = 200
    return pixels


def test_windows_cover_the_training_gsd_in_input_pixels(tmp_path: Path) -> None:
    source = tmp_path / "fine.tif"  # 5 cm pixels, model trained at 10 cm
    write_geotiff(source, _stripes(300, 400), from_origin(1570000.0, 5180000.0, 0.05, 0.05), "EPSG:2193")
    windows = PredictionWindows([source], window=64, overlap=16, predict_gsd=0.10)
    assert windows.pixel_sizes == [pytest.approx(0.05)]
    item = windows[0]
    assert item["image"].shape == (3, 64, 64) and item["source_window"] == 128  # 6.4 m either way
    native = PredictionWindows([source], window=64, overlap=16)
    assert native[0]["source_window"] == 64 and len(native) > len(windows)


def test_geographic_input_gets_its_size_from_degrees(tmp_path: Path) -> None:
    lat = 48.4
    transform = from_origin(11.99, lat, 0.1 / (111_320 * math.cos(math.radians(lat))), 0.1 / 111_320)
    write_geotiff(tmp_path / "rid.tif", _stripes(64, 64), transform, "EPSG:4326")
    windows = PredictionWindows([tmp_path / "rid.tif"], window=32, overlap=0, predict_gsd=0.05)
    assert windows.pixel_sizes[0] == pytest.approx(0.1, rel=0.01) and windows[0]["source_window"] == 16


def test_no_metric_size_is_refused_with_predict_gsd_and_warned_about_without(tmp_path: Path) -> None:
    placeholder = tmp_path / "never_georeferenced.tif"  # EPSG:4326 with one-degree pixels
    write_geotiff(placeholder, _stripes(64, 64), from_origin(0, 64, 1.0, 1.0), "EPSG:4326")
    write_png(tmp_path / "photo.png", _stripes(64, 64))
    for path in (placeholder, tmp_path / "photo.png"):
        with pytest.raises(
            RoofDataError, match=rf"{path.name}: no metric pixel size.*predict_gsd 0\.1 needs it"
        ):
            PredictionWindows([path], window=32, overlap=0, predict_gsd=0.1)
        with pytest.warns(UserWarning, match=rf"{path.name}: no metric pixel size.*no areas can be computed"):
            PredictionWindows([path], window=32, overlap=0)


def test_outputs_resampled_back_are_written_on_the_input_grid(tmp_path: Path) -> None:
    """Model pixels at 10 cm, input at 5 cm: every written raster has the input's size and transform,
    and a pass-through 'model' (red channel as height) gives back the input's stripes."""
    pixels = _stripes(200, 264)
    source = tmp_path / "fine.tif"
    transform = from_origin(1570000.0, 5180000.0, 0.05, 0.05)
    write_geotiff(source, pixels, transform, "EPSG:2193")
    windows = PredictionWindows([source], window=64, overlap=16, predict_gsd=0.10)
    writer = PredictionRasterWriter(tmp_path / "out")
    for start in range(0, len(windows), 2):
        batch = default_collate([windows[i] for i in range(start, min(start + 2, len(windows)))])
        red = batch["image"][:, 0]
        outputs = {
            "segments": torch.stack([red, 1 - red], 1),
            "superstructures": torch.stack([red, 1 - red], 1),
            "building": red * 2 - 1,
            "boundary": red,
            "lines": red[:, None].repeat(1, 4, 1, 1),
            "height": red * 10,
            "pitch": torch.stack([red] * 7, 1),
        }
        sides = [int(s) for s in batch["source_window"]]
        per_item = [
            prediction_arrays(resize_outputs({k: v[i : i + 1] for k, v in outputs.items()}, s))
            for i, s in enumerate(sides)
        ]
        writer.write(batch, {k: [item[k][0].numpy() for item in per_item] for k in per_item[0]})
    assert not writer.open
    with rasterio.open(tmp_path / "out" / "fine_height.tif") as result:
        assert (result.height, result.width) == (200, 264) and result.transform == transform
        height = result.read(1)
    expected = pixels[..., 0] / 255 * 10
    assert np.mean(np.abs(height - expected) < 2.5) > 0.9  # stripes 8 px wide survive 2x down and up
