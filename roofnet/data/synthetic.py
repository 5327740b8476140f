"""Write synthetic roof scenes in the real RID, Roofline and AIRS layouts, so the real loaders read them.

    <out>/rid/       RID layout (roof-centred GeoTIFF images, segment and superstructure PNGs, 5 splits)
    <out>/roofline/  imdb.mat (MATLAB v7.3 / HDF5) with images, depths (nDSM) and line elements
    <out>/airs/      train/val/test tiles (tiled GeoTIFF, 7.5 cm) with 0/1 labels and *_vis.tif copies

All three come from the same renderer (`scenes.py`), so a roof's segments, lines, footprint and
height agree wherever they appear.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from roofnet.data.formats import write_geotiff, write_imdb, write_rid_sample, write_rid_splits
from roofnet.data.scenes import render_scene

AIRS_METRES_PER_PIXEL = 0.075


@dataclass
class SyntheticLayout:
    """How much synthetic data to write and at which sizes."""

    samples: int = 32
    rid_size: int = 128
    roofline_size: int = 128
    airs_tiles: tuple[int, int, int] = (2, 1, 1)
    airs_tile_size: int = 1024
    airs_cell: int = 112
    valley_channel: bool = True
    seed: int = 0


def write_rid(out: Path, layout: SyntheticLayout, rng: np.random.Generator) -> None:
    names = [f"{index:05d}" for index in range(layout.samples)]
    for name in names:
        scene = render_scene(layout.rid_size, layout.rid_size, rng, centred=True)
        write_rid_sample(out, name, scene.image, scene.segments, scene.superstructures)
    write_rid_splits(out, names, seed=layout.seed)


def write_roofline(out: Path, layout: SyntheticLayout, rng: np.random.Generator) -> None:
    size = layout.roofline_size
    scenes = [render_scene(size, size, rng, centred=True) for _ in range(layout.samples)]
    channels = 4 if layout.valley_channel else 3
    write_imdb(
        out / "imdb.mat",
        images=np.stack([s.image for s in scenes]),
        depths=np.stack([s.height for s in scenes]),
        elements=np.stack([s.lines[:channels].transpose(1, 2, 0) for s in scenes]),
    )


def write_airs(out: Path, layout: SyntheticLayout, rng: np.random.Generator) -> None:
    from rasterio.transform import from_origin

    size = layout.airs_tile_size
    for split, count in zip(("train", "val", "test"), layout.airs_tiles, strict=True):
        for index in range(count):
            scene = render_scene(size, size, rng, cell=layout.airs_cell)
            name = f"christchurch_{split}_{index:03d}.tif"
            # Christchurch in NZGD2000 / NZTM (EPSG:2193); neighbouring tiles side by side.
            transform = from_origin(1570000.0 + index * size * AIRS_METRES_PER_PIXEL, 5180000.0, 0.075, 0.075)
            write_geotiff(out / split / "image" / name, scene.image, transform, "EPSG:2193", tiled=True)
            if split != "test":
                write_geotiff(
                    out / split / "label" / name, scene.building, transform, "EPSG:2193", tiled=True
                )
                vis = (scene.building * 255).astype(np.uint8)
                write_geotiff(
                    out / split / "label" / name.replace(".tif", "_vis.tif"), vis, transform, "EPSG:2193"
                )


def write_synthetic(out: str | Path, layout: SyntheticLayout | None = None) -> Path:
    """Write all three layouts under `out` (rid/, roofline/, airs/) and return `out`."""
    layout = layout or SyntheticLayout()
    out = Path(out)
    rng = np.random.default_rng(layout.seed)
    write_rid(out / "rid", layout, rng)
    write_roofline(out / "roofline", layout, rng)
    write_airs(out / "airs", layout, rng)
    return out
