"""Write synthetic roof scenes in the real RID, Roofline and AIRS layouts, so the real loaders read them.

    <out>/rid/       RID layout (roof-centred GeoTIFF images in EPSG:4326 at about 0.10 m per pixel, near
                     Wartenberg, Bavaria, as RID's; segment and superstructure PNGs of the centre
                     building only, as RID labels only the buildings it annotates; 5 splits; and
                     segments_reviewed.csv with each labelled segment's polygon, azimuth and slope)
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

from roofnet.data.formats import (
    PITCH_PRESETS,
    RID_SEGMENTS_CSV,
    pitch_preset_index,
    write_geotiff,
    write_imdb,
    write_rid_sample,
    write_rid_segments_csv,
    write_rid_splits,
)
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
    rid_annotated_only: bool = True
    rid_segments_csv: bool = True
    seed: int = 0


def annotate_centre_building_only(scene) -> np.ndarray:
    """Background outside the building under the image centre, in segments and superstructures (RID
    labels the roof its image is centred on; the neighbours' roofs stay background). Returns the kept
    footprint `(H, W)` bool."""
    from scipy import ndimage

    from roofnet.data.scenes import SEGMENT_BACKGROUND, SUPERSTRUCTURE_BACKGROUND

    components, _ = ndimage.label(scene.building)
    height, width = scene.building.shape
    centre = components[height // 2, width // 2]
    kept = components == centre if centre else scene.building.astype(bool)
    scene.segments[~kept] = SEGMENT_BACKGROUND
    scene.superstructures[~kept] = SUPERSTRUCTURE_BACKGROUND
    return kept


def segment_rows(scene, transform, crs: str) -> list[tuple[object, float, float]]:
    """RID CSV rows (polygon in lon/lat, PVGIS azimuth or NaN, slope preset) of a scene's labelled
    roof segments: one per connected region of one azimuth class and pitch."""
    import shapely
    from rasterio.features import shapes
    from rasterio.warp import transform_geom

    from roofnet.data.scenes import SEGMENT_BACKGROUND
    from roofnet.data.vectors import pvgis_azimuth

    key = scene.segments.astype(np.int32) * 100 + np.round(scene.pitch).astype(np.int32)
    rows = []
    for geometry, value in shapes(key, mask=scene.segments != SEGMENT_BACKGROUND, transform=transform):
        azimuth_class, pitch = divmod(int(value), 100)
        if crs != "EPSG:4326":
            geometry = transform_geom(crs, "EPSG:4326", geometry)
        slope = float(PITCH_PRESETS[pitch_preset_index(float(pitch))])
        rows.append((shapely.geometry.shape(geometry), pvgis_azimuth(azimuth_class), slope))
    return rows


def write_rid(out: Path, layout: SyntheticLayout, rng: np.random.Generator) -> None:
    from rasterio.transform import from_origin

    names = [f"{index:05d}" for index in range(layout.samples)]
    rows = []
    for index, name in enumerate(names):
        scene = render_scene(layout.rid_size, layout.rid_size, rng, centred=True)
        if layout.rid_annotated_only:
            annotate_centre_building_only(scene)
        if layout.rid_crs == "EPSG:4326":
            transform = rid_transform(index)
        else:  # a projected variant (metres), kept for tests
            transform = from_origin(
                690000.0 + index * 100, 5365000.0, RID_METRES_PER_PIXEL, RID_METRES_PER_PIXEL
            )
        write_rid_sample(
            out, name, scene.image, scene.segments, scene.superstructures, transform, layout.rid_crs
        )
        rows += segment_rows(scene, transform, layout.rid_crs)
    write_rid_splits(out, names, seed=layout.seed)
    if layout.rid_segments_csv:
        write_rid_segments_csv(out / RID_SEGMENTS_CSV, rows)


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
