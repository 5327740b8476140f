"""Prediction rasters -> GIS vectors: building outlines, roof segments, superstructures, roof lines.

Reads the rasters `PredictionRasterWriter` writes (`<stem>_building.tif`, `_segments.tif`,
`_superstructures.tif`, `_lines.tif`) and writes one GeoPackage (a layer each: `buildings`,
`roof_segments`, `superstructures`, `roof_lines`) or one GeoJSON file (all features, a `layer` field).

- Polygons come from `rasterio.features.shapes` (4-connected regions of one class), lines from the
  skeleton of the thresholded line probabilities (scikit-image), merged into LineStrings by shapely.
- Areas (m^2) and lengths (m) are computed in a projected CRS: the raster's own when it is projected,
  else (RID's EPSG:4326) the UTM zone of the raster's centre, to which the geometries are reprojected.
  Simplification (`simplify_m`, Douglas-Peucker, topology kept) works in that CRS, in metres.
- The GeoPackage is written in that projected CRS; GeoJSON in EPSG:4326 (RFC 7946 allows no other).
- Roof segments carry their pitch (degrees, from `_pitch.tif` where present) and their azimuth class twice: compass (0 = north, clockwise, RID's class order
  N, NNE, ... NNW) and the PVGIS convention RID's `segments_reviewed.csv` uses (0 = south, -90 = east,
  90 = west; TUMFTM/RID `utils.azimuth_to_label_class` adds 180 to get the compass bearing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from roofnet.data.formats import RoofDataError, pixel_size_metres
from roofnet.data.scenes import (
    LINE_NAMES,
    SEGMENT_BACKGROUND,
    SEGMENT_FLAT,
    SUPERSTRUCTURE_BACKGROUND,
    SUPERSTRUCTURE_NAMES,
)

AZIMUTH_NAMES = (
    "N",
    "NNE",
    "NE",
    "ENE",
    "E",
    "ESE",
    "SE",
    "SSE",
    "S",
    "SSW",
    "SW",
    "WSW",
    "W",
    "WNW",
    "NW",
    "NNW",
)
LAYERS = ("buildings", "roof_segments", "superstructures", "roof_lines")
RASTER_SUFFIXES = {
    "building": "_building.tif",
    "segments": "_segments.tif",
    "superstructures": "_superstructures.tif",
    "lines": "_lines.tif",
    "pitch": "_pitch.tif",
}


def compass_degrees(azimuth_class: int) -> float:
    """Centre bearing of an azimuth class, degrees clockwise from north (NaN for flat)."""
    return azimuth_class * 22.5 if 0 <= azimuth_class < SEGMENT_FLAT else float("nan")


def pvgis_azimuth(azimuth_class: int) -> float:
    """The PVGIS / RID azimuth of a class: 0 = south, -90 = east, 90 = west, 180 = north (NaN for flat)."""
    compass = compass_degrees(azimuth_class)
    if math.isnan(compass):
        return compass
    value = compass - 180.0
    return 180.0 if value == -180.0 else value


def utm_crs(lon: float, lat: float) -> str:
    """EPSG code of the UTM zone holding (lon, lat): 326zz north of the equator, 327zz south."""
    zone = min(int((lon + 180.0) // 6) + 1, 60)
    return f"EPSG:{32600 + zone if lat >= 0 else 32700 + zone}"


@dataclass
class VectorOptions:
    """How rasters become vectors.

    simplify_m: Douglas-Peucker tolerance in metres (0: keep every pixel corner).
    min_area_m2: polygons smaller than this are dropped (speckle).
    line_threshold: line probability above which a pixel is a line (rasters hold probability * 255).
    min_length_m: lines shorter than this are dropped.
    """

    simplify_m: float = 0.2
    min_area_m2: float = 1.0
    line_threshold: float = 0.5
    min_length_m: float = 0.5


class Georeference:
    """A raster's CRS and transform, and the projected CRS areas are computed in."""

    def __init__(self, path: Path, crs, transform, height: int, width: int) -> None:
        from rasterio.crs import CRS

        if crs is None:
            raise RoofDataError(
                f"{path}: no CRS; areas in m^2 need a georeferenced raster (predict on a GeoTIFF)"
            )
        self.path, self.crs, self.transform = path, crs, transform
        from roofnet.data.datasets import PLAUSIBLE_PIXEL_METRES

        size = pixel_size_metres(crs, transform, height, width)
        low, high = PLAUSIBLE_PIXEL_METRES
        if size is None or not low <= size <= high:
            found = "none" if size is None else f"{size:.3g} m"
            raise RoofDataError(
                f"{path}: pixel size in metres {found}, expected {low}..{high} m; the CRS {crs} and transform "
                "give no usable scale for areas (was the image georeferenced?)"
            )
        if crs.is_projected:
            factor = crs.linear_units_factor[1] if crs.linear_units_factor else 1.0
            if abs(factor - 1.0) > 1e-9:
                raise RoofDataError(
                    f"{path}: CRS units are {crs.linear_units}, not metres; reproject it first"
                )
            self.metric_crs = crs
        elif crs.is_geographic:
            from rasterio.warp import transform as warp

            x, y = transform * (width / 2, height / 2)
            lon, lat = warp(crs, CRS.from_epsg(4326), [x], [y])
            self.metric_crs = CRS.from_string(utm_crs(lon[0], lat[0]))
        else:
            raise RoofDataError(f"{path}: CRS {crs} is neither projected nor geographic")

    def to_metric(self, geometry: dict) -> dict:
        if self.metric_crs == self.crs:
            return geometry
        from rasterio.warp import transform_geom

        return transform_geom(self.crs, self.metric_crs, geometry)

    def points_to_metric(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.metric_crs == self.crs:
            return xs, ys
        from rasterio.warp import transform

        x, y = transform(self.crs, self.metric_crs, xs, ys)
        return np.asarray(x), np.asarray(y)


def _read(path: Path) -> tuple[np.ndarray, object, object]:
    import rasterio

    try:
        with rasterio.open(path) as src:
            return src.read(), src.crs, src.transform
    except rasterio.errors.RasterioIOError as error:
        raise RoofDataError(f"{path}: unreadable raster ({error})") from error


def _polygons(
    classes: np.ndarray, skip: int, where: Georeference, options: VectorOptions
) -> list[tuple[object, int]]:
    """(shapely polygon in the metric CRS, class id) of every 4-connected region whose class is not `skip`
    (`classes` uint8, or int32 for combined keys)."""
    import shapely
    from rasterio.features import shapes

    out = []
    mask = classes != skip
    dtype = np.uint8 if classes.max(initial=0) < 256 else np.int32
    for geometry, value in shapes(classes.astype(dtype), mask=mask, transform=where.transform):
        polygon = shapely.geometry.shape(where.to_metric(geometry))
        if options.simplify_m > 0:
            polygon = polygon.simplify(options.simplify_m, preserve_topology=True)
        if polygon.is_empty or polygon.area < options.min_area_m2:
            continue
        out.append((shapely.make_valid(polygon) if not polygon.is_valid else polygon, int(value)))
    return out


def _lines(probability: np.ndarray, where: Georeference, options: VectorOptions) -> list[object]:
    """LineStrings (metric CRS) along the skeleton of `probability` `(H, W)` in [0, 1] above the threshold."""
    import shapely
    from skimage.morphology import skeletonize

    skeleton = skeletonize(probability > options.line_threshold)
    rows, cols = np.nonzero(skeleton)
    if rows.size == 0:
        return []
    index = -np.ones(skeleton.shape, np.int64)
    index[rows, cols] = np.arange(rows.size)
    xs, ys = where.transform * (cols + 0.5, rows + 0.5)  # pixel centres
    xs, ys = where.points_to_metric(np.asarray(xs, float), np.asarray(ys, float))
    points = np.stack([xs, ys], axis=1)
    height, width = skeleton.shape
    edges = []
    for d_row, d_col in ((0, 1), (1, 0), (1, 1), (1, -1)):  # each 8-neighbour pair once
        r2, c2 = rows + d_row, cols + d_col
        inside = (r2 < height) & (c2 >= 0) & (c2 < width)
        neighbour = np.full(rows.shape, -1)
        neighbour[inside] = index[r2[inside], c2[inside]]
        linked = neighbour >= 0
        edges.append(np.stack([np.arange(rows.size)[linked], neighbour[linked]], axis=1))
    pairs = np.concatenate(edges)
    if pairs.size == 0:
        return []
    merged = shapely.line_merge(shapely.multilinestrings(shapely.linestrings(points[pairs])))
    parts = list(merged.geoms) if hasattr(merged, "geoms") else [merged]
    out = []
    for line in parts:
        if options.simplify_m > 0:
            line = line.simplify(options.simplify_m, preserve_topology=False)
        if line.length >= options.min_length_m:
            out.append(line)
    return out


def prediction_stems(folder: Path) -> list[str]:
    """Input stems of a prediction folder (one per `<stem>_building.tif`)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RoofDataError(f"{folder}: no such folder of prediction rasters")
    stems = sorted(p.name.removesuffix("_building.tif") for p in folder.glob("*_building.tif"))
    if not stems:
        raise RoofDataError(f"{folder}: no *_building.tif; expected the rasters `mtl predict` writes")
    return stems


def vectorize_stem(
    folder: Path, stem: str, options: VectorOptions
) -> tuple[dict[str, list[dict]], Georeference]:
    """Features of one predicted input, per layer: dicts with `geometry` (shapely, metric CRS) and fields."""
    import shapely

    paths = {key: Path(folder) / f"{stem}{suffix}" for key, suffix in RASTER_SUFFIXES.items()}
    building, crs, transform = _read(paths["building"])
    where = Georeference(paths["building"], crs, transform, *building.shape[1:])
    layers: dict[str, list[dict]] = {name: [] for name in LAYERS}
    for polygon, _ in _polygons(building[0], 0, where, options):
        layers["buildings"].append({"geometry": polygon, "source": stem, "area_m2": polygon.area})
    if paths["segments"].is_file():
        segments = _read(paths["segments"])[0][0].astype(np.int32)
        # one polygon per region of one azimuth class and one pitch (a roof plane has one pitch)
        pitch = _read(paths["pitch"])[0][0].astype(np.int32) if paths["pitch"].is_file() else None
        key = segments * 100 + (pitch if pitch is not None else 0)
        background = SEGMENT_BACKGROUND * 100
        key[segments == SEGMENT_BACKGROUND] = background
        for polygon, value in _polygons(key, background, where, options):
            azimuth_class, degrees = divmod(value, 100)
            name = AZIMUTH_NAMES[azimuth_class] if azimuth_class < SEGMENT_FLAT else "flat"
            layers["roof_segments"].append(
                {
                    "geometry": polygon,
                    "source": stem,
                    "azimuth_class": azimuth_class,
                    "azimuth_name": name,
                    "compass_deg": compass_degrees(azimuth_class),
                    "pvgis_azimuth_deg": pvgis_azimuth(azimuth_class),
                    "pitch_deg": float(degrees) if pitch is not None else float("nan"),
                    "area_m2": polygon.area,
                }
            )
    if paths["superstructures"].is_file():
        supers = _read(paths["superstructures"])[0][0]
        for polygon, value in _polygons(supers, SUPERSTRUCTURE_BACKGROUND, where, options):
            layers["superstructures"].append(
                {
                    "geometry": polygon,
                    "source": stem,
                    "class_id": value,
                    "class_name": SUPERSTRUCTURE_NAMES[value],
                    "area_m2": polygon.area,
                }
            )
    if paths["lines"].is_file():
        lines = _read(paths["lines"])[0]
        for channel in range(min(lines.shape[0], len(LINE_NAMES))):
            for line in _lines(lines[channel] / 255.0, where, options):
                layers["roof_lines"].append(
                    {
                        "geometry": line,
                        "source": stem,
                        "line_class": LINE_NAMES[channel],
                        "length_m": line.length,
                    }
                )
    for features in layers.values():  # MultiPolygons from make_valid stay; empty ones go
        features[:] = [f for f in features if not shapely.is_empty(f["geometry"])]
    return layers, where


# Fields of each layer and their types (every layer is written, empty or not, with this schema).
LAYER_FIELDS: dict[str, dict[str, type]] = {
    "buildings": {"source": str, "area_m2": float},
    "roof_segments": {
        "source": str,
        "azimuth_class": int,
        "azimuth_name": str,
        "compass_deg": float,
        "pvgis_azimuth_deg": float,
        "pitch_deg": float,
        "area_m2": float,
    },
    "superstructures": {"source": str, "class_id": int, "class_name": str, "area_m2": float},
    "roof_lines": {"source": str, "line_class": str, "length_m": float},
}
FIELD_DTYPES = {str: object, int: np.int32, float: np.float64}


def _field_arrays(features: list[dict], schema: dict[str, type]) -> list[np.ndarray]:
    """One array per field of `schema` (missing values: NaN for floats, -1 for ints, None for text)."""
    missing = {str: None, int: -1, float: np.nan}
    return [
        np.array([f.get(name, missing[kind]) for f in features], dtype=FIELD_DTYPES[kind])
        for name, kind in schema.items()
    ]


def write_vectors(
    out: Path, layers: dict[str, list[dict]], metric_crs, overwrite: bool = False
) -> dict[str, int]:
    """Write the layers to `out` (.gpkg: one layer each, in `metric_crs`; .geojson: one file in EPSG:4326
    with a `layer` field). Returns the feature count per layer. An existing `out` is kept unless
    `overwrite`."""
    import pyogrio.raw
    import shapely
    from rasterio.crs import CRS
    from rasterio.warp import transform_geom

    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".gpkg", ".geojson", ".json"):
        raise RoofDataError(f"{out}: expected a .gpkg or .geojson output file")
    if out.exists():
        if not overwrite:
            raise RoofDataError(f"{out}: exists; pass --overwrite true to replace it")
        out.unlink()
    out.parent.mkdir(parents=True, exist_ok=True)
    counts = {name: len(features) for name, features in layers.items()}
    if suffix == ".gpkg":
        for name, features in layers.items():
            schema = LAYER_FIELDS[name]
            kind = "LineString" if name == "roof_lines" else "Polygon"
            geometries = [f["geometry"] for f in features]
            if kind == "Polygon" and any(g.geom_type != "Polygon" for g in geometries):
                kind = "MultiPolygon"
                geometries = [
                    shapely.MultiPolygon([g]) if g.geom_type == "Polygon" else g for g in geometries
                ]
            pyogrio.raw.write(
                out,
                geometry=shapely.to_wkb(np.array(geometries, dtype=object)),
                field_data=_field_arrays(features, schema),
                fields=list(schema),
                layer=name,
                driver="GPKG",
                geometry_type=kind,
                crs=metric_crs.to_wkt(),
                append=out.exists(),
            )
        return counts
    wgs84 = CRS.from_epsg(4326)
    features = [
        {
            **f,
            "layer": name,
            "geometry": shapely.geometry.shape(
                transform_geom(metric_crs, wgs84, shapely.geometry.mapping(f["geometry"]))
            ),
        }
        for name, layer in layers.items()
        for f in layer
    ]
    schema = {"layer": str, **{k: v for fields in LAYER_FIELDS.values() for k, v in fields.items()}}
    pyogrio.raw.write(
        out,
        geometry=shapely.to_wkb(np.array([f["geometry"] for f in features], dtype=object)),
        field_data=_field_arrays(features, schema),
        fields=list(schema),
        driver="GeoJSON",
        geometry_type="Unknown",
        crs="EPSG:4326",
    )
    return counts


def vectorize_folder(
    folder: Path,
    out: Path,
    options: VectorOptions | None = None,
    overwrite: bool = False,
    stems: list[str] | None = None,
) -> dict[str, int]:
    """Vectorize the predictions in `folder` (all, or those of `stems`) into `out`; all inputs must
    share one metric CRS."""
    options = options or VectorOptions()
    merged: dict[str, list[dict]] = {name: [] for name in LAYERS}
    metric_crs = None
    for stem in stems if stems is not None else prediction_stems(folder):
        layers, where = vectorize_stem(folder, stem, options)
        if metric_crs is not None and where.metric_crs != metric_crs:
            raise RoofDataError(
                f"{where.path}: its projected CRS {where.metric_crs} differs from the other inputs' {metric_crs}; "
                "vectorize them into separate files"
            )
        metric_crs = where.metric_crs
        for name, features in layers.items():
            merged[name] += features
    return write_vectors(out, merged, metric_crs, overwrite)
