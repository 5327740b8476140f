"""Cut a Sentinel-2 scene (GeoTIFF) and its land-cover label raster into per-patch NPZ files.

The scene holds the bands as raster bands (named by their descriptions, or in the order given); the
label raster, on the same grid, holds a class index per pixel (its nodata value: unlabelled). Each
window of `size` x `size` pixels becomes `<out>/patches/<scene>_r<row>_c<col>.npz` with the image as
stored (e.g. uint16 DN), the majority label and the band names, when the majority class covers at
least `min_purity` of the labelled pixels; several scenes can share one `<out>`.
`mtl landcover split --source <out>` then makes the splits. `SceneWindows` reads a whole scene window
by window for `mtl landcover map`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from landcover.data.formats import (
    DEFAULT_BANDS,
    DEFAULT_CLASSES,
    DatasetMetadata,
    PatchFormatError,
    write_patch,
)


def scene_band_indexes(
    descriptions: Sequence[str | None], count: int, bands: Sequence[str], source: str
) -> list[int]:
    """1-based raster band indexes for `bands`: by description when the scene names its bands, else in order."""
    named = [d for d in descriptions if d]
    if len(named) == count and all(band in named for band in bands):
        return [list(descriptions).index(band) + 1 for band in bands]
    if count != len(bands):
        raise PatchFormatError(
            f"{source}: {count} raster bands (descriptions {list(descriptions)}) but {len(bands)} bands "
            f"{list(bands)} were asked for; name the scene's bands or pass them in order"
        )
    return list(range(1, count + 1))


def cut_patches(
    scene: str | Path,
    labels: str | Path,
    out: str | Path,
    size: int = 224,
    stride: int | None = None,
    min_purity: float = 0.6,
    bands: Sequence[str] = DEFAULT_BANDS,
    class_names: Sequence[str] = DEFAULT_CLASSES,
    units: str = "dn",
    dn_offset: int = 1000,
) -> dict[str, int]:
    """Write the patches of one scene; returns how many were written and skipped, per reason."""
    import rasterio

    out = Path(out)
    (out / "patches").mkdir(parents=True, exist_ok=True)
    stride = stride or size
    counts = {"written": 0, "skipped_impure": 0, "skipped_unlabelled": 0}
    with rasterio.open(scene) as image_file, rasterio.open(labels) as label_file:
        if (image_file.width, image_file.height) != (label_file.width, label_file.height) or (
            image_file.transform != label_file.transform
        ):
            raise PatchFormatError(
                f"{labels}: label raster grid {label_file.width}x{label_file.height} {label_file.transform} "
                f"differs from the scene {scene} ({image_file.width}x{image_file.height} {image_file.transform})"
            )
        indexes = scene_band_indexes(image_file.descriptions, image_file.count, bands, str(scene))
        label_nodata = label_file.nodata
        for row in range(0, image_file.height - size + 1, stride):
            for col in range(0, image_file.width - size + 1, stride):
                window = rasterio.windows.Window(col, row, size, size)
                label = label_file.read(1, window=window)
                valid = label != label_nodata if label_nodata is not None else np.ones_like(label, bool)
                valid &= (label >= 0) & (label < len(class_names))
                if not valid.any():
                    counts["skipped_unlabelled"] += 1
                    continue
                votes = np.bincount(label[valid].astype(np.int64), minlength=len(class_names))
                majority = int(votes.argmax())
                if votes[majority] < min_purity * valid.sum():
                    counts["skipped_impure"] += 1
                    continue
                image = image_file.read(indexes, window=window)
                write_patch(
                    out / "patches" / f"{Path(scene).stem}_r{row:05d}_c{col:05d}.npz", image, majority, bands
                )
                counts["written"] += 1
    DatasetMetadata(
        classes=list(class_names), bands=list(bands), units=units, dn_offset=dn_offset if units == "dn" else 0
    ).write(out)
    return counts


# Colours for the class map (RGB), in the order of DEFAULT_CLASSES.
CLASS_COLOURS = [
    (31, 120, 180),  # water
    (166, 206, 227),  # glacier ice
    (255, 255, 255),  # snow
    (99, 99, 99),  # bare rock / lava
    (178, 223, 138),  # moss and lichen
    (51, 160, 44),  # grassland
    (255, 217, 47),  # cropland
    (227, 26, 28),  # urban
]
MAP_NODATA = 255


class SceneWindows:
    """Windows of `size` px every `stride` px over a scene, read in `bands` order, batch by batch.

    The class map has one pixel per window: `grid` is its (rows, cols) and `transform` its georeference
    (each map pixel is centred on its window).
    """

    def __init__(self, scene: str | Path, size: int, stride: int | None, bands: Sequence[str]) -> None:
        import rasterio
        from rasterio.transform import Affine

        self.path, self.size, self.stride = Path(scene), size, stride or size
        with rasterio.open(self.path) as src:
            self.indexes = scene_band_indexes(src.descriptions, src.count, bands, str(self.path))
            self.profile = src.profile
            rows = (src.height - size) // self.stride + 1
            cols = (src.width - size) // self.stride + 1
            if rows < 1 or cols < 1:
                raise PatchFormatError(
                    f"{self.path}: {src.width}x{src.height} pixels, smaller than one {size} px window"
                )
            self.grid = (rows, cols)
            shift = (size - self.stride) / 2
            self.transform = src.transform * Affine.translation(shift, shift) * Affine.scale(self.stride)

    def batches(self, batch_size: int):
        """Yield (positions [(row, col)], stored images (B, C, size, size))."""
        import rasterio
        from rasterio.windows import Window

        positions = [(r, c) for r in range(self.grid[0]) for c in range(self.grid[1])]
        with rasterio.open(self.path) as src:
            for start in range(0, len(positions), batch_size):
                chunk = positions[start : start + batch_size]
                images = [
                    src.read(
                        self.indexes, window=Window(c * self.stride, r * self.stride, self.size, self.size)
                    )
                    for r, c in chunk
                ]
                yield chunk, np.stack(images)

    def write_map(self, out: str | Path, classes: np.ndarray, class_names: Sequence[str]) -> Path:
        """Write the (rows, cols) uint8 class map as a GeoTIFF with a colour table and the class names."""
        import rasterio

        profile = {
            "driver": "GTiff", "width": self.grid[1], "height": self.grid[0], "count": 1, "dtype": "uint8",
            "crs": self.profile.get("crs"), "transform": self.transform, "nodata": MAP_NODATA,
        }  # fmt: skip
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(out, "w", **profile) as dst:
            dst.write(classes.astype(np.uint8), 1)
            dst.write_colormap(
                1, {i: (*CLASS_COLOURS[i % len(CLASS_COLOURS)], 255) for i in range(len(class_names))}
            )
            dst.update_tags(**{f"class_{i}": name for i, name in enumerate(class_names)})
        return out
