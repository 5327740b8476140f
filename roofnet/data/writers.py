"""Prediction rasters: stitched by windowed writes, georeferenced like their input.

For each input `<stem>.<ext>` it writes into the output folder:

    <stem>_segments.tif         uint8 class ids 0..17 (17 background)
    <stem>_superstructures.tif  uint8 class ids 0..8 (8 background)
    <stem>_building.tif         uint8 0/1 footprint
    <stem>_lines.tif            4 bands uint8 probability * 255: eave, ridge, hip, valley
    <stem>_height.tif           float32 nDSM metres
    <stem>_pitch.tif            uint8 roof pitch in degrees (one of the presets 0/15/25/30/35/45/60)

Each window contributes only the part `PredictionWindows` told it to keep (the centre of the overlap
with its neighbours), so tiles of any size are written without holding them in memory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

OUTPUTS = {
    "segments": ("uint8", 1),
    "superstructures": ("uint8", 1),
    "building": ("uint8", 1),
    "lines": ("uint8", 4),
    "height": ("float32", 1),
    "pitch": ("uint8", 1),
}


class PredictionRasterWriter:
    """Writes prediction windows into per-input GeoTIFFs under `out_dir`.

    Everything it needs comes with each batch from `PredictionWindows`: the input's `path`, its
    `height` and `width`, and `windows` (how many windows the input has, so its files are closed
    after the last one).
    """

    def __init__(self, out_dir: str | Path) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.remaining: dict[str, int] = {}
        self.open: dict[str, dict[str, object]] = {}
        self.written: list[Path] = []
        self.sources: list[Path] = []

    def _outputs(self, source: Path, height: int, width: int, windows: int) -> dict[str, object]:
        key = str(source)
        if key not in self.open:
            import rasterio

            crs, transform = None, None
            if source.suffix.lower() in (".tif", ".tiff"):
                with rasterio.open(source) as src:
                    crs, transform = src.crs, src.transform
            handles = {}
            for name, (dtype, count) in OUTPUTS.items():
                path = self.out_dir / f"{source.stem}_{name}.tif"
                profile = {
                    "driver": "GTiff",
                    "height": height,
                    "width": width,
                    "count": count,
                    "dtype": dtype,
                }
                if transform is not None:
                    profile["transform"] = transform
                if crs is not None:
                    profile["crs"] = crs
                if height * width > 4096 * 4096:
                    profile.update(tiled=True, blockxsize=256, blockysize=256)
                handles[name] = rasterio.open(path, "w", **profile)
                self.written.append(path)
            self.open[key] = handles
            self.remaining[key] = windows
            self.sources.append(source)
        return self.open[key]

    def write(self, batch: dict, outputs: dict[str, np.ndarray]) -> None:
        """`outputs`: per item, segments/superstructures/building `(B, H, W)`, lines `(B, 4, H, W)` uint8,
        height `(B, H, W)` float32 (or per-item lists of them), each at its `source_window` size (the
        window in input pixels)."""
        from rasterio.windows import Window

        for i in range(len(batch["path"])):
            source = Path(batch["path"][i])
            row, col = int(batch["row"][i]), int(batch["col"][i])
            top, bottom, left, right = (int(v) for v in batch["keep"][i])
            size = int(batch["height"][i]), int(batch["width"][i])
            handles = self._outputs(source, *size, int(batch["windows"][i]))
            target = Window(left, top, right - left, bottom - top)
            rows, cols = slice(top - row, bottom - row), slice(left - col, right - col)
            for name, handle in handles.items():
                array = outputs[name][i]
                array = array[:, rows, cols] if array.ndim == 3 else array[None, rows, cols]
                handle.write(np.ascontiguousarray(array), window=target)
            self.remaining[str(source)] -= 1
            if self.remaining[str(source)] == 0:
                for handle in self.open.pop(str(source)).values():
                    handle.close()

    def close(self) -> None:
        for handles in self.open.values():
            for handle in handles.values():
                handle.close()
        self.open.clear()
