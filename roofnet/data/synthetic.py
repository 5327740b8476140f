"""Write synthetic roof scenes in the real RID, Roofline and AIRS layouts, so the real loaders read them.

    <out>/rid/       RID layout (roof-centred GeoTIFF images in EPSG:4326 at about 0.10 m per pixel, near
                     Wartenberg, Bavaria, as RID's; segment and superstructure PNGs; 5 splits)
    <out>/roofline/  imdb.mat (MATLAB v7.3 / HDF5): the struct /imdb with images, depths (nDSM) and
                     elements (eave, ridge, hip: 3 channels, as the real file)
    <out>/airs/      train/val/test tiles (tiled GeoTIFF, 7.5 cm) with 0/1 labels (test too) and
                     *_vis.tif copies

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
RID_METRES_PER_PIXEL = 0.10
RID_ORIGIN_LON_LAT = (11.99, 48.40)  # Wartenberg (Bavaria), where RID's images are (TUMFTM/RID segments CSV)
METRES_PER_DEGREE_LATITUDE = 111_320.0


def rid_transform(index: int, metres_per_pixel: float = RID_METRES_PER_PIXEL):
    """EPSG:4326 transform of synthetic RID image `index`: ~`metres_per_pixel` square pixels (degrees of
    longitude shrink with cos(latitude)), images 100 m apart on a grid."""
    import math

    from rasterio.transform import from_origin

    lon0, lat0 = RID_ORIGIN_LON_LAT
    lat = lat0 + (index // 50) * 100 / METRES_PER_DEGREE_LATITUDE
    lon_degree = METRES_PER_DEGREE_LATITUDE * math.cos(math.radians(lat))
    lon = lon0 + (index % 50) * 100 / lon_degree
    return from_origin(lon, lat, metres_per_pixel / lon_degree, metres_per_pixel / METRES_PER_DEGREE_LATITUDE)


@dataclass
class SyntheticLayout:
    """How much synthetic data to write and at which sizes."""

    samples: int = 32
    rid_size: int = 128
    roofline_size: int = 128
    airs_tiles: tuple[int, int, int] = (2, 1, 1)
    airs_tile_size: int = 1024
    airs_cell: int = 112
    valley_channel: bool = False
    roofline_struct: bool = True
    rid_crs: str = "EPSG:4326"
    airs_test_labels: bool = True
    seed: int = 0


def write_rid(out: Path, layout: SyntheticLayout, rng: np.random.Generator) -> None:
    names = [f"{index:05d}" for index in range(layout.samples)]
    from rasterio.transform import from_origin

    for index, name in enumerate(names):
        scene = render_scene(layout.rid_size, layout.rid_size, rng, centred=True)
        if layout.rid_crs == "EPSG:4326":
            transform = rid_transform(index)
        else:  # a projected variant (metres), kept for tests
            transform = from_origin(
                690000.0 + index * 100, 5365000.0, RID_METRES_PER_PIXEL, RID_METRES_PER_PIXEL
            )
        write_rid_sample(
            out, name, scene.image, scene.segments, scene.superstructures, transform, layout.rid_crs
        )
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
        struct="imdb" if layout.roofline_struct else None,
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
            if split != "test" or layout.airs_test_labels:
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
