"""Readers and writers for the on-disk layouts of RID, Roofline and AIRS (sources in docs/roofnet.md).

    RID       <root>/images_roof_centered_geotiff/<id>.tif            RGB GeoTIFF, EPSG:4326, ~0.10 m pixels
              <root>/masks_segments_reviewed/<id>.png                 uint8 0..15 azimuth, 16 flat, 17 background
              <root>/masks_superstructures_reviewed/<id>.png          uint8 0..7, 8 background
              <root>/filenames_train_val_test_split/{train,val,test}_filenames_{1..5}_rev.txt
              <root> may be the unpacked download's `RID_dataset/` or `m1655470/RID_dataset/` (mediaTUM
              record 1655470), or the TUMFTM/RID repository's `data/`; the split folder may also sit in
              `segmentation_model_data/`, where the repository's README tells users to copy it.
    Roofline  <root>/imdb.mat   MATLAB v7.3 (HDF5) holding the struct `imdb` (README of
              loosgagnet/Roofline-Extraction: "a MATLAB structure ... three fields of images, depths, and
              elements"): /imdb/images, /imdb/depths, /imdb/elements (eave, ridge, hip); a scalar struct
              is an HDF5 group with attribute MATLAB_class = "struct" and one dataset per field
              (hdf5storage's notes on MATLAB's attributes). Arrays at the file root are read too.
    AIRS      <root>/{train,val,test}/image/<tile>.tif, <root>/{train,val,test}/label/<tile>.tif (0/1,
              one band or three equal bands), `*_vis.tif` visual copies are ignored

MATLAB stores arrays column-major, so a `224x224x3xN` MATLAB array reads from HDF5 as `(N, 3, 224, 224)`
with the two spatial axes swapped; `write_imdb` writes it that way, `RooflineFile` undoes it and also
reads the other axis orders a file can have (`ROOFLINE_LAYOUTS`), telling them apart by their sizes.
Every reader raises `RoofDataError` naming the file and what it expected.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from common.errors import UserInputError

RID_IMAGES = "images_roof_centered_geotiff"
RID_SEGMENTS = "masks_segments_reviewed"
RID_SUPERSTRUCTURES = "masks_superstructures_reviewed"
RID_SPLITS = "filenames_train_val_test_split"
# Where the RID folders sit below the folder a user points at, in the order tried: as given, the unpacked
# mediaTUM download (`RID_dataset/`, or `m1655470/RID_dataset/` with the record folder kept), the
# TUMFTM/RID repository's `data/` (its README: "copy all other data folders into the data folder").
RID_NESTINGS = ("", "RID_dataset", "m1655470/RID_dataset", "data")
# Where the split folder may be, relative to the RID folder: beside the images (the download), or in
# `segmentation_model_data/` beside it or beside its parent (the TUMFTM/RID README's instructions).
RID_SPLIT_LOCATIONS = (
    RID_SPLITS,
    f"segmentation_model_data/{RID_SPLITS}",
    f"../segmentation_model_data/{RID_SPLITS}",
)
RID_SPLIT_NAMES = ("train", "val", "test")
ROOFLINE_FILE = "imdb.mat"
MATLAB_HEADER = (
    b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
)
IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")


class RoofDataError(UserInputError):
    """A dataset file that cannot be used; the message names the file and what was expected."""


# -- rasters ---------------------------------------------------------------------------------------------
def write_geotiff(
    path: Path,
    array: np.ndarray,
    transform=None,
    crs: str | None = "EPSG:25832",
    tiled: bool = False,
    nodata: float | None = None,
) -> None:
    """Write `(H, W)` or `(H, W, C)` as a GeoTIFF; tiled files (256 px blocks) allow fast window reads."""
    import rasterio
    from rasterio.transform import from_origin

    bands = array[..., None] if array.ndim == 2 else array
    profile = {
        "driver": "GTiff",
        "height": bands.shape[0],
        "width": bands.shape[1],
        "count": bands.shape[2],
        "dtype": bands.dtype.name,
        "transform": transform if transform is not None else from_origin(500000.0, 5400000.0, 0.1, 0.1),
    }
    if crs:
        profile["crs"] = crs
    if nodata is not None:
        profile["nodata"] = nodata
    if tiled:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.moveaxis(bands, -1, 0))


METRES_PER_DEGREE = 111_320.0  # one degree of latitude (and of longitude at the equator), WGS84 mean


def pixel_size_metres(crs, transform, height: int, width: int) -> float | None:
    """Side of a pixel in metres (the mean of x and y), or None when no metric size can be derived.

    Projected CRS: the transform's pixel size times the unit's metres. Geographic CRS (RID's EPSG:4326):
    degrees converted at the raster centre's latitude (longitude degrees shrink with cos(latitude)),
    good to a fraction of a percent over one image. No CRS, or a rotated transform: None.
    """
    import math

    if crs is None or transform is None or transform.b or transform.d:
        return None
    x, y = abs(transform.a), abs(transform.e)
    if crs.is_geographic:
        centre_lat = transform.f + transform.e * height / 2
        if not -90 <= centre_lat <= 90:
            return None
        x *= METRES_PER_DEGREE * math.cos(math.radians(centre_lat))
        y *= METRES_PER_DEGREE
    elif crs.is_projected:
        factor = crs.linear_units_factor[1] if crs.linear_units_factor else 1.0
        x, y = x * factor, y * factor
    else:
        return None
    return (x + y) / 2


def raster_pixel_size(path: Path) -> float | None:
    """`pixel_size_metres` of a raster file (None for PNG/JPEG or a raster without a usable CRS)."""
    import rasterio

    try:
        with rasterio.open(path) as src:
            return pixel_size_metres(src.crs, src.transform, src.height, src.width)
    except rasterio.errors.RasterioIOError as error:
        raise RoofDataError(f"{path}: unreadable raster ({error})") from error


def raster_size(path: Path) -> tuple[int, int]:
    """(height, width) of a raster without reading its pixels."""
    import rasterio

    try:
        with rasterio.open(path) as src:
            return src.height, src.width
    except rasterio.errors.RasterioIOError as error:
        raise RoofDataError(f"{path}: unreadable raster ({error})") from error


def read_image(path: Path, window: tuple[int, int, int, int] | None = None, handle=None) -> np.ndarray:
    """RGB pixels `(H, W, 3)` uint8 of a GeoTIFF/PNG/JPEG; `window` = (row, col, height, width).

    Windows past the raster's edge are padded with zeros (boundless read), so every window of a
    sliding grid has the same shape. `handle`: an open rasterio dataset to reuse.
    """
    array = read_raster(path, window, handle)
    if array.ndim != 3 or array.shape[2] < 3:
        raise RoofDataError(f"{path}: expected an RGB image with 3 bands, got shape {array.shape}")
    if array.dtype != np.uint8:
        raise RoofDataError(f"{path}: expected 8-bit RGB (uint8), got {array.dtype}")
    return np.ascontiguousarray(array[..., :3])


def read_label(
    path: Path,
    allowed: Iterable[int],
    shape: tuple[int, int] | None = None,
    window: tuple[int, int, int, int] | None = None,
    handle=None,
) -> np.ndarray:
    """Single-band class ids `(H, W)` uint8, checked against `allowed` values and the image `shape`."""
    array = single_band_label(path, read_raster(path, window, handle))
    if shape is not None and array.shape != tuple(shape):
        raise RoofDataError(
            f"{path}: mask is {array.shape[0]}x{array.shape[1]}, its image is {shape[0]}x{shape[1]}"
        )
    allowed = np.asarray(sorted(allowed))
    values = np.unique(array)
    unknown = values[~np.isin(values, allowed)]
    if unknown.size:
        raise RoofDataError(
            f"{path}: unknown mask values {unknown[:10].tolist()}; expected values in "
            f"{allowed.min()}..{allowed.max()}"
        )
    return array.astype(np.uint8)


def single_band_label(path: Path, array: np.ndarray) -> np.ndarray:
    """`(H, W)` from a label read as `(H, W)` or `(H, W, C)`: one band, or several equal bands (AIRS
    labels are found saved as RGB with the value repeated); bands that differ are refused."""
    if array.ndim == 2:
        return array
    if array.shape[2] == 1:
        return array[..., 0]
    if all(np.array_equal(array[..., 0], array[..., band]) for band in range(1, array.shape[2])):
        return array[..., 0]
    raise RoofDataError(
        f"{path}: expected a single-band mask (or equal bands), got {array.shape[2]} bands that differ"
    )


def read_raster(path: Path, window: tuple[int, int, int, int] | None, handle) -> np.ndarray:
    """(H, W, C) array from rasterio (GeoTIFF) or Pillow (PNG/JPEG without a window)."""
    path = Path(path)
    if not path.is_file():
        raise RoofDataError(f"{path}: file not found")
    if path.suffix.lower() in (".png", ".jpg", ".jpeg") and window is None and handle is None:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as image:
                return np.asarray(image)[..., None] if image.mode in ("L", "P", "I") else np.asarray(image)
        except (UnidentifiedImageError, OSError) as error:
            raise RoofDataError(f"{path}: unreadable image ({error})") from error
    import rasterio
    from rasterio.windows import Window

    try:
        src = handle if handle is not None else rasterio.open(path)
    except rasterio.errors.RasterioIOError as error:
        raise RoofDataError(f"{path}: unreadable raster ({error})") from error
    try:
        if window is None:
            data = src.read()
        else:
            row, col, height, width = window
            inside = row >= 0 and col >= 0 and row + height <= src.height and col + width <= src.width
            # Boundless reads go through a VRT: much slower, so only for windows that cross the edge.
            data = src.read(window=Window(col, row, width, height), boundless=not inside, fill_value=0)
    except rasterio.errors.RasterioIOError as error:
        raise RoofDataError(f"{path}: unreadable raster data ({error})") from error
    finally:
        if handle is None:
            src.close()
    return np.moveaxis(data, 0, -1)


def write_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def image_files(directory: Path) -> list[Path]:
    """Image files of a directory, sorted, without AIRS's `*_vis.tif` visual copies."""
    return sorted(
        p
        for p in Path(directory).iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.stem.endswith("_vis")
    )


# -- RID -------------------------------------------------------------------------------------------------
def rid_dataset_root(root: Path) -> Path:
    """The folder holding RID's image and mask folders: `root` itself or one of `RID_NESTINGS` below it."""
    root = Path(root)
    for nesting in RID_NESTINGS:
        candidate = root / nesting if nesting else root
        if (candidate / RID_IMAGES).is_dir():
            return candidate
    tried = ", ".join(f"{n}/" if n else "./" for n in RID_NESTINGS)
    raise RoofDataError(f"{root}: no {RID_IMAGES}/ folder (looked in {tried}); is this RID's download?")


def rid_split_dir(root: Path) -> Path:
    """RID's split folder for the RID folder `root` (see `RID_SPLIT_LOCATIONS`)."""
    root = Path(root)
    for location in RID_SPLIT_LOCATIONS:
        if (root / location).is_dir():
            return (root / location).resolve()
    raise RoofDataError(
        f"{root}: no {RID_SPLITS}/ folder; expected it beside {RID_IMAGES}/ or in segmentation_model_data/"
    )


def rid_split_file(root: Path, split: str, index: int) -> Path:
    return rid_split_dir(root) / f"{split}_filenames_{index}_rev.txt"


def read_rid_split(root: Path, split: str, index: int) -> list[str]:
    """Image ids (file stems) listed in one of RID's split files (`root`: the RID folder)."""
    path = rid_split_file(root, split, index)
    if not path.is_file():
        available = sorted(p.name for p in path.parent.glob("*.txt"))
        raise RoofDataError(
            f"{path}: missing split file; expected {split}_filenames_{index}_rev.txt in {RID_SPLITS}/ "
            f"(found {available or 'none'})"
        )
    ids = [Path(line.strip()).stem for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise RoofDataError(f"{path}: split file lists no image names")
    return ids


def write_rid_sample(
    root: Path,
    name: str,
    image: np.ndarray,
    segments: np.ndarray,
    superstructures: np.ndarray,
    transform=None,
    crs: str = "EPSG:4326",
):
    """One RID image (GeoTIFF, EPSG:4326 like the real ones unless `crs` says otherwise) and its masks."""
    write_geotiff(Path(root) / RID_IMAGES / f"{name}.tif", image, transform, crs)
    write_png(Path(root) / RID_SEGMENTS / f"{name}.png", segments)
    write_png(Path(root) / RID_SUPERSTRUCTURES / f"{name}.png", superstructures)


def write_rid_splits(root: Path, names: Sequence[str], splits: int = 5, seed: int = 0) -> None:
    """RID's five alternative train/val splits sharing one test set (about 70/15/15 %)."""
    rng = np.random.default_rng(seed)
    names = list(names)
    test_count = max(len(names) * 15 // 100, 1)
    test, rest = names[:test_count], names[test_count:]
    folder = Path(root) / RID_SPLITS
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(1, splits + 1):
        shuffled = list(rng.permutation(rest))
        val_count = max(len(names) * 15 // 100, 1)
        parts = {"train": sorted(shuffled[val_count:]), "val": sorted(shuffled[:val_count]), "test": test}
        for split, members in parts.items():
            (folder / f"{split}_filenames_{index}_rev.txt").write_text("".join(f"{m}.png\n" for m in members))


# RID's vector labels (TUMFTM/RID data/segments_reviewed.csv): one row per roof segment with its
# polygon as WKT in (lat lon) order (the repository's mask_generation swaps it with
# utils.switch_coordinates before use), an azimuth in the PVGIS convention (0 = south; empty = flat)
# and a slope, set by the annotators from presets: 0, 15, 25, 30, 35, 45 or 60 degrees (a handful of
# rows hold other values, e.g. 33, and some none).
RID_SEGMENTS_CSV = "segments_reviewed.csv"
RID_SEGMENTS_CSV_COLUMNS = ("segment", "azimuth", "slope")
PITCH_PRESETS = (0, 15, 25, 30, 35, 45, 60)
PITCH_IGNORE = 255  # pixels with no slope label (outside RID's segments, or a segment without slope)


def pitch_preset_index(slope: float) -> int:
    """Index into `PITCH_PRESETS` of the preset nearest to `slope` degrees (NaN: `PITCH_IGNORE`)."""
    if slope != slope:  # NaN
        return PITCH_IGNORE
    return int(np.argmin([abs(slope - preset) for preset in PITCH_PRESETS]))


def read_rid_segments_csv(path: Path) -> list[tuple[object, int]]:
    """(polygon in lon/lat, pitch preset index) of every segment of RID's segments CSV."""
    import csv

    import shapely
    import shapely.wkt

    path = Path(path)
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as error:
        raise RoofDataError(f"{path}: unreadable segments CSV ({error})") from error
    if not rows or not set(RID_SEGMENTS_CSV_COLUMNS) <= set(rows[0]):
        found = sorted(rows[0]) if rows else "no rows"
        raise RoofDataError(
            f"{path}: expected RID's segment columns {list(RID_SEGMENTS_CSV_COLUMNS)}, found {found}"
        )
    segments = []
    for number, row in enumerate(rows, start=2):
        try:
            latlon = shapely.wkt.loads(row["segment"])
            slope = float(row["slope"]) if row["slope"].strip() else float("nan")
        except (shapely.errors.ShapelyError, ValueError) as error:
            raise RoofDataError(f"{path}: line {number}: unreadable segment or slope ({error})") from error
        lonlat = shapely.transform(latlon, lambda coords: coords[:, ::-1])
        segments.append((lonlat, pitch_preset_index(slope)))
    return segments


def write_rid_segments_csv(path: Path, segments: Sequence[tuple[object, float, float]]) -> None:
    """Write (polygon in lon/lat, PVGIS azimuth or NaN, slope degrees) rows as RID's CSV does
    (WKT MULTIPOLYGON in lat lon order, azimuth empty for flat roofs)."""
    import csv

    import shapely

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["", "id", "segment", "azimuth", "slope"])
        for index, (polygon, azimuth, slope) in enumerate(segments):
            multi = polygon if polygon.geom_type == "MultiPolygon" else shapely.MultiPolygon([polygon])
            latlon = shapely.transform(multi, lambda coords: coords[:, ::-1])
            writer.writerow([index, index + 1, latlon.wkt, "" if azimuth != azimuth else azimuth, slope])


class RIDPitch:
    """RID's segment slopes, rasterised onto any image: `raster(path, shape)` -> (H, W) uint8 preset
    index (`PITCH_PRESETS`), `PITCH_IGNORE` where no segment with a slope covers the pixel."""

    def __init__(self, csv_path: Path) -> None:
        self.csv_path = Path(csv_path)
        labelled = [(g, v) for g, v in read_rid_segments_csv(self.csv_path) if v != PITCH_IGNORE]
        self.geometries = [g for g, _ in labelled]
        self.values = [v for _, v in labelled]
        self._tree = None

    @property
    def tree(self):
        """Spatial index of the segments, built on first use in each process (not pickled)."""
        import shapely

        if self._tree is None:
            self._tree = shapely.STRtree(self.geometries)
        return self._tree

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_tree": None}

    def raster(self, image_path: Path, shape: tuple[int, int]) -> np.ndarray:
        import rasterio
        import shapely
        from rasterio.features import rasterize
        from rasterio.warp import transform_bounds, transform_geom

        with rasterio.open(image_path) as src:
            crs, transform = src.crs, src.transform
            if crs is None:
                raise RoofDataError(f"{image_path}: no CRS; RID's segment polygons cannot be placed on it")
            bounds = transform_bounds(crs, "EPSG:4326", *src.bounds)
        out = np.full(shape, PITCH_IGNORE, np.uint8)
        hits = self.tree.query(shapely.box(*bounds))
        if len(hits) == 0:
            return out
        shapes = []
        for index in sorted(int(i) for i in hits):
            geometry = shapely.geometry.mapping(self.geometries[index])
            if crs.to_epsg() != 4326:
                geometry = transform_geom("EPSG:4326", crs, geometry)
            shapes.append((geometry, self.values[index]))
        return rasterize(shapes, out_shape=shape, transform=transform, fill=PITCH_IGNORE, dtype="uint8")


# -- Roofline --------------------------------------------------------------------------------------------
# The axis orders an `imdb.mat` can have, as h5py sees them (letters: N instance, C channel, H image row,
# W image column). MATLAB is column-major: HDF5 lists a MATLAB array's dimensions in reverse, so MATLAB's
# `[224 224 3 N]` images read as (N, 3, 224, 224) with W before H. Roofline's file is expected in MATLAB's
# `[H W 3 N]`; `[N H W 3]` is what MATLAB writes for arrays built instance-first (e.g. saved from numpy
# by hdf5storage), row-major is a file written by h5py from numpy without MATLAB's reversal, and MATLAB
# drops the trailing singleton of a file with one instance. A channels-first (N, 3, H, W) file written
# from numpy reads as MATLAB [H W C N] with H and W swapped in all three arrays alike, which no size
# can tell; the labels stay aligned with the image (a transposed roof is still a roof).
ROOFLINE_LAYOUTS: dict[str, dict[str, str]] = {
    "MATLAB [H W C N]": {"images": "NCWH", "depths": "NWH", "elements": "NCWH"},
    "MATLAB [H W C] (one instance)": {"images": "CWH", "depths": "WH", "elements": "CWH"},
    "MATLAB [N H W C]": {"images": "CWHN", "depths": "WHN", "elements": "CWHN"},
    "row-major (N, H, W, C)": {"images": "NHWC", "depths": "NHW", "elements": "NHWC"},
}
ROOFLINE_ARRAYS = ("images", "depths", "elements")
MIN_IMAGE_SIDE = 8  # pixels; where sizes fit several orders, readings with a thinner image are dropped
ROOFLINE_CHANNELS = {"images": (3,), "depths": (), "elements": (3, 4)}  # elements: eave, ridge, hip[, valley]
ROOFLINE_OUTPUT_AXES = {"images": "HWC", "depths": "HW", "elements": "CHW"}


def _layout_sizes(layout: dict[str, str], shapes: dict[str, tuple[int, ...]]) -> dict[str, int] | None:
    """Sizes of N, H, W and each array's channels (`C_<array>`) if `shapes` fit `layout`, else None."""
    sizes: dict[str, int] = {}
    for key in ROOFLINE_ARRAYS:
        axes, shape = layout[key], shapes[key]
        if len(axes) != len(shape):
            return None
        for letter, size in zip(axes, shape, strict=True):
            if letter == "C":
                if size not in ROOFLINE_CHANNELS[key]:
                    return None
                letter = f"C_{key}"
            if sizes.setdefault(letter, size) != size:
                return None
    sizes.setdefault("N", 1)
    return sizes


def roofline_layout(path: Path, shapes: dict[str, tuple[int, ...]]) -> tuple[str, dict[str, int]]:
    """Which of `ROOFLINE_LAYOUTS` the `images`, `depths` and `elements` shapes of `path` are in, decided
    by their sizes (channels: 3 for images, 3 or 4 for elements; N, H and W shared by all three).

    Where several layouts fit (3 instances and 3 line channels), the ones that would make images
    thinner than `MIN_IMAGE_SIDE` pixels are dropped. Raises RoofDataError naming the file and the
    array that does not fit the images, or the layouts that all fit when the sizes cannot tell them
    apart (e.g. 3 instances of 3 x 3 pixels).
    """
    fitting = {}
    for name, layout in ROOFLINE_LAYOUTS.items():
        sizes = _layout_sizes(layout, shapes)
        if sizes is not None:
            fitting[name] = sizes
    if len(fitting) > 1:  # an image a few pixels wide is no roof image: keep the plausible reading
        plausible = {
            name: sizes for name, sizes in fitting.items() if min(sizes["H"], sizes["W"]) >= MIN_IMAGE_SIDE
        }
        fitting = plausible if len(plausible) == 1 else fitting
    if len(fitting) == 1:
        return next(iter(fitting.items()))
    if fitting:
        described = ", ".join(f"{key} {shapes[key]}" for key in ROOFLINE_ARRAYS)
        raise RoofDataError(
            f"{path}: ambiguous axis order: {described} fit {' and '.join(fitting)}; "
            "the sizes cannot tell instances, channels and pixels apart"
        )
    for name, layout in ROOFLINE_LAYOUTS.items():  # the first layout the images fit names the culprit
        image_axes = layout["images"]
        if len(image_axes) != len(shapes["images"]):
            continue
        sizes = dict(zip(image_axes, shapes["images"], strict=True))
        if sizes["C"] not in ROOFLINE_CHANNELS["images"]:
            continue
        for key in ("depths", "elements"):
            axes, shape, channels = layout[key], shapes[key], ROOFLINE_CHANNELS[key]
            if len(axes) != len(shape) or any(
                size not in channels if a == "C" else size != sizes[a]
                for a, size in zip(axes, shape, strict=True)
            ):
                expected = ", ".join("3 or 4" if a == "C" else str(sizes[a]) for a in axes)
                raise RoofDataError(
                    f"{path}: {key} has shape {shape}; expected ({expected}) to match images "
                    f"{shapes['images']} (read as {name}, h5py axes {image_axes})"
                )
    raise RoofDataError(
        f"{path}: images has shape {shapes['images']}; expected MATLAB's [H W 3 N] (h5py: (N, 3, W, H)), "
        "[N H W 3] (h5py: (3, W, H, N)) or a row-major (N, H, W, 3)"
    )


ROOFLINE_STRUCT = "imdb"


def write_imdb(
    path: Path,
    images: np.ndarray,
    depths: np.ndarray,
    elements: np.ndarray,
    struct: str | None = ROOFLINE_STRUCT,
) -> None:
    """Write Roofline's `imdb.mat` as MATLAB v7.3 does (HDF5 with a 512-byte MATLAB header).

    Args are in row-major numpy order: images `(N, H, W, 3)` (uint8, or float in [0, 1]), depths
    `(N, H, W)` float32 metres, elements `(N, H, W, C)` (0/1 or 0/255) with C = 3 (eave, ridge, hip,
    as the real file) or 4 (+ valley). In MATLAB they are Roofline's `[H W 3 N]`, `[H W N]` and
    `[H W C N]`; MATLAB stores an array column-major, so HDF5 holds it with every axis reversed:
    images (N, 3, W, H), depths (N, W, H), elements (N, C, W, H).
    `struct`: the name of the MATLAB struct holding the three fields (the real file's `imdb`: an HDF5
    group with MATLAB_class "struct" and MATLAB_fields), or None for three variables at the root.
    """
    import h5py

    matlab = {
        "images": images.transpose(1, 2, 3, 0),
        "depths": depths.transpose(1, 2, 0),
        "elements": elements.transpose(1, 2, 3, 0),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w", userblock_size=512) as f:
        parent = f
        if struct:
            parent = f.create_group(struct)
            parent.attrs["MATLAB_class"] = np.bytes_("struct")
            names = np.empty(len(matlab), dtype=object)
            names[:] = [np.array(list(name), dtype="S1") for name in matlab]
            parent.attrs.create("MATLAB_fields", names, dtype=h5py.vlen_dtype(np.dtype("S1")))
        for name, array in matlab.items():
            stored = np.ascontiguousarray(array.T)
            chunks = (1, *stored.shape[1:])  # one instance per chunk
            dataset = parent.create_dataset(name, data=stored, chunks=chunks)
            matlab_class = {"uint8": "uint8", "float64": "double"}.get(array.dtype.name, "single")
            dataset.attrs["MATLAB_class"] = np.bytes_(matlab_class)
    with open(path, "r+b") as f:
        f.write(MATLAB_HEADER.ljust(116) + b"\x00" * 8 + b"\x00\x02IM")


def roofline_arrays_group(path: Path, f) -> str:
    """HDF5 path of the group holding images, depths and elements: the MATLAB struct (a group whose
    MATLAB_class is "struct", `imdb` in the real file) or the file root."""
    import h5py

    if all(key in f for key in ROOFLINE_ARRAYS):
        return "/"
    groups = [name for name, item in f.items() if isinstance(item, h5py.Group)]
    groups.sort(key=lambda name: (name != ROOFLINE_STRUCT, name))
    for name in groups:
        if all(key in f[name] for key in ROOFLINE_ARRAYS):
            return f"/{name}"
    found = ", ".join(f"/{name}" + ("/" if name in groups else "") for name in f) or "nothing"
    raise RoofDataError(
        f"{path}: no images, depths and elements arrays, neither in the struct /{ROOFLINE_STRUCT} nor at the "
        f"root (found {found})"
    )


def image_as_uint8(source: str, array: np.ndarray) -> np.ndarray:
    """RGB pixels as uint8: uint8 as they are, floats in [0, 1] scaled by 255; anything else refused
    (a float image in 0..255 would otherwise be divided by 255 twice)."""
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.floating):
        low, high = float(np.nanmin(array, initial=0.0)), float(np.nanmax(array, initial=0.0))
        if low >= 0.0 and high <= 1.0:
            return np.round(np.nan_to_num(array) * 255).astype(np.uint8)
        raise RoofDataError(f"{source}: float image values must be in [0, 1], found {low:g}..{high:g}")
    raise RoofDataError(f"{source}: expected uint8 or float images in [0, 1], found {array.dtype}")


def binary_as_uint8(source: str, array: np.ndarray) -> np.ndarray:
    """A 0/1 or 0/255 mask as uint8 0/1; any other value refused, naming the values found."""
    values = np.unique(array)
    if np.isin(values, (0, 1)).all():
        return array.astype(np.uint8)
    if np.isin(values, (0, 255)).all():
        return (array == 255).astype(np.uint8)
    raise RoofDataError(
        f"{source}: expected 0/1 or 0/255 values, found {values[:8].tolist()}"
        + (" ..." if values.size > 8 else "")
    )


class RooflineFile:
    """Lazy, per-instance access to `imdb.mat` (the file is opened on first use in each process).

    `image(i)` -> (H, W, 3) uint8, `depth(i)` -> (H, W) float32 metres, `elements(i)` -> (C, H, W) uint8
    0/1, whichever of `ROOFLINE_LAYOUTS` the file is in (`self.layout`), with the arrays in the struct
    `/imdb` or at the root (`self.group`). Float images in [0, 1] and 0/255 elements are converted.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._file = None
        if not self.path.is_file():
            raise RoofDataError(f"{self.path}: missing; expected Roofline's imdb.mat (MATLAB v7.3 / HDF5)")
        with self._open() as f:
            self.group = roofline_arrays_group(self.path, f)
            shapes = {key: tuple(f[self.group][key].shape) for key in ROOFLINE_ARRAYS}
            self.dtypes = {key: f[self.group][key].dtype for key in ROOFLINE_ARRAYS}
        for key in ROOFLINE_ARRAYS:
            if not (
                np.issubdtype(self.dtypes[key], np.integer) or np.issubdtype(self.dtypes[key], np.floating)
            ):
                raise RoofDataError(f"{self.path}: {key} has dtype {self.dtypes[key]}; expected numbers")
        self.layout, sizes = roofline_layout(self.path, shapes)
        self.axes = ROOFLINE_LAYOUTS[self.layout]
        self.length, self.size, self.line_channels = sizes["N"], (sizes["H"], sizes["W"]), sizes["C_elements"]

    def _open(self):
        import h5py

        try:
            return h5py.File(self.path, "r")
        except OSError as error:
            raise RoofDataError(
                f"{self.path}: unreadable; expected a MATLAB v7.3 (HDF5) file ({error})"
            ) from error

    def __len__(self) -> int:
        return self.length

    def _array(self, key: str, index: int) -> np.ndarray:
        """Instance `index` of one array, its axes in `ROOFLINE_OUTPUT_AXES` order."""
        if self._file is None:
            self._file = self._open()
        axes = self.axes[key]
        dataset = self._file[self.group][key]
        if "N" in axes:
            selection = tuple(index if a == "N" else slice(None) for a in axes)
            array, axes = dataset[selection], axes.replace("N", "")
        else:
            array = dataset[()]
        target = ROOFLINE_OUTPUT_AXES[key]
        return np.ascontiguousarray(array.transpose([axes.index(a) for a in target]))

    def _name(self, key: str, index: int) -> str:
        return f"{self.path}: {self.group.rstrip('/')}/{key}[{index}]".replace(": /", ": ", 1)

    def image(self, index: int) -> np.ndarray:
        return image_as_uint8(self._name("images", index), self._array("images", index))

    def depth(self, index: int) -> np.ndarray:
        return self._array("depths", index).astype(np.float32)

    def elements(self, index: int) -> np.ndarray:
        return binary_as_uint8(self._name("elements", index), self._array("elements", index))

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_file": None}  # each DataLoader worker opens its own handle


# -- AIRS ------------------------------------------------------------------------------------------------
def airs_pairs(root: Path, split: str, labelled: bool = True) -> list[tuple[Path, Path | None]]:
    """(image, label) tile paths of one AIRS split; `*_vis.tif` ignored; label None when unlabelled."""
    image_dir = Path(root) / split / "image"
    if not image_dir.is_dir():
        raise RoofDataError(f"{image_dir}: missing; expected AIRS layout {split}/image/*.tif")
    pairs = []
    for image in image_files(image_dir):
        label = Path(root) / split / "label" / image.name
        if labelled and not label.is_file():
            raise RoofDataError(f"{label}: missing label tile for {image}")
        pairs.append((image, label if label.is_file() else None))
    if not pairs:
        raise RoofDataError(f"{image_dir}: no image tiles (*.tif)")
    return pairs


def airs_split_labelled(root: Path, split: str) -> bool:
    """Whether every image tile of an AIRS split has its label tile (the common distribution labels
    test/ too; some copies leave its labels out)."""
    image_dir = Path(root) / split / "image"
    if not image_dir.is_dir():
        return False
    images = image_files(image_dir)
    return bool(images) and all((Path(root) / split / "label" / image.name).is_file() for image in images)
