"""`mtl roofnet <verb>`: generate (synthetic data), check (a dataset), vectorize (predictions); heavy imports stay inside the functions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def generate(
    out: Path,
    samples: int = 32,
    image_size: int = 128,
    roofline_size: int | None = None,
    airs_tiles: tuple[int, int, int] = (2, 1, 1),
    airs_tile_size: int = 1024,
    valley_channel: bool = False,
    seed: int = 0,
) -> Path:
    """Render synthetic roof scenes and write them as RID, Roofline and AIRS layouts under OUT.

    Flat, gable, hip and L-shaped buildings with labels that agree for every task: azimuth segments,
    superstructures, eave/ridge/hip/valley lines, footprint and nDSM height.

    Args:
        out: output folder; gets rid/, roofline/ and airs/.
        samples: number of RID images and of Roofline instances.
        image_size: side of RID images in pixels (real RID: 512).
        roofline_size: side of Roofline images (real Roofline: 224); default image_size.
        airs_tiles: number of AIRS tiles for train, val and test.
        airs_tile_size: side of AIRS tiles in pixels (real AIRS: 10000).
        valley_channel: add valley as a 4th channel of Roofline's `elements` (the real file has 3:
            eave, ridge, hip, the default); the loader reads both.
        seed: random seed.
    """
    from roofnet.data.synthetic import SyntheticLayout, write_synthetic

    layout = SyntheticLayout(
        samples=samples,
        rid_size=image_size,
        roofline_size=roofline_size or image_size,
        airs_tiles=tuple(airs_tiles),
        airs_tile_size=airs_tile_size,
        valley_channel=valley_channel,
        seed=seed,
    )
    out = write_synthetic(out, layout)
    print(f"wrote synthetic RID, Roofline and AIRS layouts to {out}")
    return out


def check(root: Path, image_size: int = 512, rid_split: int = 1) -> dict:
    """Inspect the datasets under ROOT and read every sample with the real loaders.

    Reports per dataset the dtypes, value ranges and dominant mask value (a swapped segments /
    superstructures folder is refused), all three RID splits, Roofline's struct and axis order, and
    each AIRS tile's raster profile (blocks, compression, pixel size, nodata share), with a
    recommendation when tiles are striped. The first file that would break training ends the check
    with one line naming it (a `RoofDataError`, which `mtl` prints as `mtl: error: ...`).

    Args:
        root: folder holding rid/, roofline/ and/or airs/ as they unpack (rid/ may hold RID_dataset/).
        image_size: sample side used for the check (AIRS windows).
        rid_split: which of RID's five split files to check.
    """
    return _check(Path(root), image_size, rid_split)


def _check(root: Path, image_size: int, rid_split: int) -> dict:
    from roofnet.data.checks import Report, check_airs, check_rid, check_roofline
    from roofnet.data.datamodule import RoofDataModule

    phases = [name for name in ("rid", "roofline", "airs") if (root / name).exists()]
    if not phases:
        from roofnet.data.formats import RoofDataError

        raise RoofDataError(f"{root}: no rid/, roofline/ or airs/ folder")
    report = Report()
    checks = {
        "rid": lambda: check_rid(root / "rid", rid_split, report),
        "roofline": lambda: check_roofline(root / "roofline", report),
        "airs": lambda: check_airs(root / "airs", report),
    }
    for name in phases:
        checks[name]()
    datamodule = RoofDataModule(
        str(root),
        phases=phases,
        image_size=image_size,
        synthetic_samples=0,
        augment=False,
        rid_split=rid_split,
    )
    counts = {}
    for name in phases:
        stages = {"train": (True, False), "val": (False, False)}
        if name == "rid" or (name == "airs" and report.facts["airs"].get("test", {}).get("labelled")):
            stages["test"] = (False, True)
        for stage, (train, test) in stages.items():
            dataset = datamodule.dataset(name, train=train, test=test)
            for index in range(len(dataset)):
                dataset[index]
            counts[f"{name}/{stage}"] = len(dataset)
    report.lines += [f"{key}: {count} samples OK" for key, count in counts.items()]
    print("\n".join(report.lines))
    return {"counts": counts, "warnings": report.warnings, **report.facts}


def vectorize(
    rasters: Path,
    out: Path,
    simplify: float = 0.2,
    min_area: float = 1.0,
    line_threshold: float = 0.5,
    min_length: float = 0.5,
    overwrite: bool = False,
) -> dict[str, int]:
    """Turn the rasters `mtl predict` wrote into GIS vectors: building outlines, roof segments with their
    azimuth (compass and PVGIS/RID: 0 = south), superstructures, roof lines as LineStrings.

    Areas (area_m2) and lengths (length_m) are computed in a projected CRS: the rasters' own, or for
    geographic rasters (RID's EPSG:4326) the UTM zone of their centre. A .gpkg gets one layer per kind
    in that CRS; a .geojson one file in EPSG:4326 with a `layer` field.

    Args:
        rasters: folder of `<stem>_building.tif`, `_segments.tif`, `_superstructures.tif`, `_lines.tif`.
        out: output file, .gpkg or .geojson.
        simplify: simplification tolerance in metres (0 keeps every pixel corner).
        min_area: polygons below this many m^2 are dropped.
        line_threshold: line probability above which a pixel belongs to a line.
        min_length: lines shorter than this many metres are dropped.
        overwrite: replace an existing `out`.
    """
    from roofnet.data.vectors import VectorOptions, vectorize_folder

    options = VectorOptions(simplify, min_area, line_threshold, min_length)
    counts = vectorize_folder(Path(rasters), Path(out), options, overwrite)
    print(f"wrote {out}: " + ", ".join(f"{name}: {count}" for name, count in counts.items()))
    return counts


def commands() -> dict[str, Callable]:
    return {"generate": generate, "check": check, "vectorize": vectorize}
