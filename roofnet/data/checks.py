"""What `mtl roofnet check` reports about a dataset folder before any training.

Per dataset: dtypes, value ranges and the dominant mask value (background should dominate: a
segments folder whose masks look like superstructure masks, or the other way round, means the two
folders were swapped), every split; for AIRS the raster profile of each tile (block layout,
compression, pixel size, nodata share), since striped, compressed tiles make window reads slow.
Every check raises `RoofDataError` naming the file on the first problem that would break training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from roofnet.data.formats import (
    RID_IMAGES,
    RID_SEGMENTS,
    RID_SPLIT_NAMES,
    RID_SUPERSTRUCTURES,
    RoofDataError,
    RooflineFile,
    airs_pairs,
    airs_split_labelled,
    raster_pixel_size,
    read_raster,
    read_rid_split,
    rid_dataset_root,
    rid_split_dir,
    single_band_label,
)
from roofnet.data.scenes import SEGMENT_BACKGROUND, SUPERSTRUCTURE_BACKGROUND

STRIPED_RECOMMENDATION = (
    "rewrite striped tiles once as tiled GeoTIFFs, e.g. `gdal_translate -co TILED=YES -co BLOCKXSIZE=512 "
    "-co BLOCKYSIZE=512 -co COMPRESS=DEFLATE in.tif out.tif` (a window read of a striped tile decodes "
    "whole rows of the tile)"
)


@dataclass
class Report:
    """Lines for the user (`lines`), warnings among them, and figures for tests (`facts`)."""

    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    facts: dict = field(default_factory=dict)

    def say(self, line: str) -> None:
        self.lines.append(line)

    def warn(self, line: str) -> None:
        self.warnings.append(line)
        self.lines.append(f"WARNING: {line}")


@dataclass
class ValueSummary:
    """dtype, min, max and a histogram of integer values (masks), accumulated over files."""

    dtypes: set = field(default_factory=set)
    low: float = float("inf")
    high: float = float("-inf")
    counts: np.ndarray = field(default_factory=lambda: np.zeros(256, np.int64))

    def add(self, array: np.ndarray) -> None:
        self.dtypes.add(array.dtype.name)
        if array.size:
            self.low, self.high = min(self.low, float(array.min())), max(self.high, float(array.max()))
        if np.issubdtype(array.dtype, np.integer) and array.size and array.min() >= 0 and array.max() < 256:
            self.counts += np.bincount(array.ravel(), minlength=256)

    @property
    def dominant(self) -> int:
        return int(self.counts.argmax())

    @property
    def dominant_share(self) -> float:
        return float(self.counts.max() / max(self.counts.sum(), 1))

    def describe(self) -> str:
        return f"{'/'.join(sorted(self.dtypes))} {self.low:g}..{self.high:g}"


def check_rid(root: Path, split_index: int, report: Report) -> list[str]:
    """RID: the three splits of `split_index`, image dtypes and pixel sizes, mask values; returns the
    image ids of all three splits."""
    rid = rid_dataset_root(root)
    report.say(f"rid: {rid} (splits in {rid_split_dir(rid)})")
    ids = {split: read_rid_split(rid, split, split_index) for split in RID_SPLIT_NAMES}
    report.say(
        "rid: split "
        + ", ".join(f"{s} {len(v)}" for s, v in ids.items())
        + f" (split file set {split_index})"
    )
    if set(ids["train"]) & set(ids["test"]) or set(ids["val"]) & set(ids["test"]):
        report.warn("rid: images in both the test split and train/val")
    images, segments, supers = ValueSummary(), ValueSummary(), ValueSummary()
    pixel_sizes, crs_names = [], set()
    for name in sorted({i for v in ids.values() for i in v}):
        image_path = rid / RID_IMAGES / f"{name}.tif"
        images.add(read_raster(image_path, None, None))
        size = raster_pixel_size(image_path)
        if size is not None:
            pixel_sizes.append(size)
        crs_names.add(_crs_name(image_path))
        segments.add(
            single_band_label(
                rid / RID_SEGMENTS / f"{name}.png",
                read_raster(rid / RID_SEGMENTS / f"{name}.png", None, None),
            )
        )
        path = rid / RID_SUPERSTRUCTURES / f"{name}.png"
        supers.add(single_band_label(path, read_raster(path, None, None)))
    swapped = f"are {RID_SEGMENTS}/ and {RID_SUPERSTRUCTURES}/ swapped?"
    if segments.high <= SUPERSTRUCTURE_BACKGROUND and segments.dominant == SUPERSTRUCTURE_BACKGROUND:
        raise RoofDataError(
            f"{rid / RID_SEGMENTS}: masks hold 0..{segments.high:g} with {segments.dominant} dominant "
            f"(superstructure background); expected 0..17 with background 17 dominant: {swapped}"
        )
    if supers.high > SUPERSTRUCTURE_BACKGROUND and supers.dominant == SEGMENT_BACKGROUND:
        raise RoofDataError(
            f"{rid / RID_SUPERSTRUCTURES}: masks hold 0..{supers.high:g} with 17 dominant (segment "
            f"background); expected 0..8 with background 8 dominant: {swapped}"
        )
    for label, summary, background in (
        ("segments", segments, SEGMENT_BACKGROUND),
        ("superstructures", supers, SUPERSTRUCTURE_BACKGROUND),
    ):
        report.say(
            f"rid: {label} masks {summary.describe()}, dominant {summary.dominant} "
            f"({summary.dominant_share:.0%} of pixels)"
        )
        if summary.dominant != background:
            report.warn(
                f"rid: {label} masks are dominated by {summary.dominant}, not background {background}"
            )
    sizes = f"{min(pixel_sizes):.3f}..{max(pixel_sizes):.3f} m" if pixel_sizes else "unknown"
    report.say(f"rid: images {images.describe()}, CRS {', '.join(sorted(crs_names))}, pixel {sizes}")
    report.facts["rid"] = {
        "splits": {s: len(v) for s, v in ids.items()},
        "segments_dominant": segments.dominant,
        "superstructures_dominant": supers.dominant,
        "pixel_size_m": (min(pixel_sizes), max(pixel_sizes)) if pixel_sizes else None,
        "image_dtypes": sorted(images.dtypes),
    }
    return [i for v in ids.values() for i in v]


def check_roofline(root: Path, report: Report) -> RooflineFile:
    """Roofline: where the arrays are, their axis order, dtypes, raw value ranges; every instance is
    converted once as training would (float images in [0, 1], elements 0/1 or 0/255)."""
    path = Path(root)
    file = RooflineFile(path if path.suffix == ".mat" else path / "imdb.mat")
    raw = {key: ValueSummary() for key in ("images", "depths", "elements")}
    for index in range(len(file)):
        for key in raw:
            raw[key].add(file._array(key, index))
        file.image(index), file.elements(index)
    report.say(
        f"roofline: {file.path} arrays in {file.group} ({file.layout}), {len(file)} instances of "
        f"{file.size[0]}x{file.size[1]}, {file.line_channels} line channels"
    )
    element_values = sorted(int(v) for v in np.nonzero(raw["elements"].counts)[0])
    report.say(
        f"roofline: images {raw['images'].describe()}, depths {raw['depths'].describe()} m, "
        f"elements {'/'.join(sorted(raw['elements'].dtypes))} values {element_values}"
    )
    if raw["depths"].low < -1:
        report.warn(f"roofline: depths go down to {raw['depths'].low:g} m; an nDSM should be >= 0")
    report.facts["roofline"] = {
        "group": file.group,
        "instances": len(file),
        "line_channels": file.line_channels,
        "image_dtypes": sorted(raw["images"].dtypes),
        "element_values": element_values,
    }
    return file


def raster_profile(path: Path, sample_side: int = 1024) -> dict:
    """Block layout, compression, pixel size and nodata share (on a decimated read) of one raster."""
    import rasterio

    with rasterio.open(path) as src:
        block_height, block_width = src.block_shapes[0]
        striped = block_width >= src.width and src.height > block_height  # rows of strips, not tiles
        scale = max(src.height, src.width) / sample_side
        shape = (
            (src.count, max(int(src.height / scale), 1), max(int(src.width / scale), 1))
            if scale > 1
            else None
        )
        data = src.read(out_shape=shape) if shape else src.read()
        nodata = src.nodata
        empty = np.all(data == (0 if nodata is None else nodata), axis=0)
        return {
            "size": (src.height, src.width),
            "bands": src.count,
            "dtype": src.dtypes[0],
            "block": (block_height, block_width),
            "striped": striped,
            "compression": src.compression.value.lower() if src.compression else "none",
            "pixel_size_m": raster_pixel_size(path),
            "nodata": nodata,
            "nodata_share": float(empty.mean()),
        }


def check_airs(root: Path, report: Report) -> None:
    """AIRS: tiles per split and whether labelled; each image tile's profile; label values and the
    dominant one (background 0 should dominate), read decimated."""
    root = Path(root)
    facts = {}
    striped = []
    for split in ("train", "val", "test"):
        if not (root / split / "image").is_dir():
            report.warn(f"airs: no {split}/image/")
            continue
        labelled = split != "test" or airs_split_labelled(root, split)
        pairs = airs_pairs(root, split, labelled=split != "test")
        labels = ValueSummary()
        for image, label in pairs:
            profile = raster_profile(image)
            facts.setdefault("profiles", {})[image.name] = profile
            if profile["striped"]:
                striped.append(image.name)
            if profile["bands"] < 3 or profile["dtype"] != "uint8":
                raise RoofDataError(
                    f"{image}: expected 3-band uint8 RGB, found {profile['bands']} bands of {profile['dtype']}"
                )
            if label is not None:
                import rasterio

                with rasterio.open(label) as src:
                    scale = max(src.height, src.width) / 1024
                    shape = (
                        (src.count, int(src.height / scale), int(src.width / scale)) if scale > 1 else None
                    )
                    data = (
                        src.read(out_shape=shape, resampling=rasterio.enums.Resampling.nearest)
                        if shape
                        else src.read()
                    )
                labels.add(single_band_label(label, np.moveaxis(data, 0, -1)))
        block = {facts["profiles"][i.name]["block"] for i, _ in pairs}
        compression = {facts["profiles"][i.name]["compression"] for i, _ in pairs}
        sizes = [facts["profiles"][i.name]["pixel_size_m"] for i, _ in pairs]
        nodata = max(facts["profiles"][i.name]["nodata_share"] for i, _ in pairs)
        known = [s for s in sizes if s is not None]
        pixel = f"{min(known):.3f}..{max(known):.3f} m" if known else "unknown (no CRS)"
        report.say(
            f"airs/{split}: {len(pairs)} tiles ({'labelled' if labelled else 'no labels'}), blocks "
            f"{sorted(block)}, compression {sorted(compression)}, pixel {pixel}, nodata up to {nodata:.1%}"
        )
        if labels.dtypes:
            report.say(
                f"airs/{split}: labels {labels.describe()}, dominant {labels.dominant} ({labels.dominant_share:.0%})"
            )
            if labels.high > 1:
                raise RoofDataError(
                    f"{root / split / 'label'}: label values up to {labels.high:g}; expected 0/1 "
                    "(0/255 files are the *_vis.tif visual copies)"
                )
            if labels.dominant != 0:
                report.warn(
                    f"airs/{split}: labels are mostly 1 (building); are image and label swapped or inverted?"
                )
        facts[split] = {"tiles": len(pairs), "labelled": labelled}
    if striped:
        report.warn(f"airs: {len(striped)} striped tile(s) ({striped[0]}, ...): {STRIPED_RECOMMENDATION}")
    report.facts["airs"] = facts


def _crs_name(path: Path) -> str:
    import rasterio

    with rasterio.open(path) as src:
        if src.crs is None:
            return "none"
        epsg = src.crs.to_epsg()
        return f"EPSG:{epsg}" if epsg else src.crs.to_string()
