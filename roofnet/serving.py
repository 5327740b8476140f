"""`mtl serve` for a roofnet bundle: `POST /v1/predict` with an aerial image -> the prediction rasters.

The image (GeoTIFF, PNG or JPEG; multipart field `image` or the raw body) is cut into the same
overlapping windows as `mtl predict` (`PredictionWindows`), the windows of all concurrent requests
go through the dynamic batcher, and `PredictionRasterWriter` stitches them into GeoTIFFs carrying
the input's CRS and transform. The response is JSON: one base64 GeoTIFF per output (segments,
superstructures, building, lines, height, pitch) and `polygons`, the GeoJSON of `mtl roofnet vectorize`
(buildings, roof segments with azimuth, pitch and area, superstructures, lines), or null with a note when
the upload has no metric pixel size (a PNG or JPEG).
"""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.serving import Endpoint, Payload, RequestError, ServingHandler, Work
from roofnet.data.formats import RoofDataError

IMAGE_TYPES = ("image/tiff", "image/png", "image/jpeg", "application/octet-stream")
SUFFIXES = {b"II*\x00": ".tif", b"MM\x00*": ".tif", b"\x89PNG": ".png", b"\xff\xd8\xff": ".jpg"}


class RoofHandler(ServingHandler):
    domain = "roofnet"

    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint(
                "/v1/predict",
                "Roof segments, superstructures, footprint, lines and height of an aerial image",
                body="file",
                file_field="image",
                media_types=IMAGE_TYPES,
                decode=self.decode,
                description=(
                    "8-bit RGB GeoTIFF, PNG or JPEG. Returns base64 GeoTIFFs georeferenced like the input "
                    "(PNG/JPEG inputs: pixel coordinates). Large images are cut into `window`-pixel "
                    "windows sharing `overlap` pixels, as `mtl predict` does."
                ),
                query_parameters=(
                    ("window", "integer", "window side in pixels, a multiple of 32 (default 512)"),
                    ("overlap", "integer", "pixels shared by neighbouring windows (default 64)"),
                ),
            )
        ]

    def metadata(self) -> dict[str, Any]:
        return {
            "outputs": ["segments", "superstructures", "building", "lines", "height", "pitch"],
            "polygons": "GeoJSON (EPSG:4326) of buildings, roof_segments, superstructures, roof_lines",
        }

    def predict_batch(self, items: list[torch.Tensor]) -> list[dict[str, np.ndarray]]:
        from roofnet.task import prediction_arrays

        with torch.no_grad():
            arrays = {
                k: v.cpu().numpy() for k, v in prediction_arrays(self.module(torch.stack(items))).items()
            }
        return [{name: array[i] for name, array in arrays.items()} for i in range(len(items))]

    def decode(self, payload: Payload) -> Work:
        from rasterio.errors import RasterioError

        from roofnet.data.datasets import PredictionWindows

        window = payload.query_value("window", int, 512)
        overlap = payload.query_value("overlap", int, 64)
        if window % 32 or not 32 <= window <= 2048:
            raise RequestError("query.window", "a multiple of 32 in [32, 2048]", str(window), 400)
        if not 0 <= overlap < window:
            raise RequestError("query.overlap", f"an integer in [0, {window})", str(overlap), 400)
        suffix = next((s for sig, s in SUFFIXES.items() if payload.data.startswith(sig)), None)
        if suffix is None:
            raise RequestError(payload.field, "a GeoTIFF, PNG or JPEG image", _describe(payload.data), 400)
        directory = tempfile.TemporaryDirectory(prefix="mtl-roofnet-")
        source = Path(directory.name) / f"{Path(payload.filename or 'image').stem or 'image'}{suffix}"
        source.write_bytes(payload.data)
        try:
            windows = PredictionWindows([source], window, overlap)
            items = [windows[i] for i in range(len(windows))]
        except (RoofDataError, RasterioError, OSError) as error:
            directory.cleanup()
            found = str(error).replace(str(source), "the upload")
            raise RequestError(payload.field, "an 8-bit RGB GeoTIFF, PNG or JPEG", found, 400) from None

        def finish(outputs: list[dict[str, np.ndarray]]) -> dict[str, Any]:
            try:
                return self._rasters(windows, items, outputs, Path(directory.name) / "out", window)
            finally:
                directory.cleanup()

        return Work([item["image"] for item in items], finish)

    @staticmethod
    def _rasters(windows, items, outputs, out: Path, window: int) -> dict[str, Any]:
        from torch.utils.data import default_collate

        from roofnet.data.writers import PredictionRasterWriter

        writer = PredictionRasterWriter(out)
        try:
            for item, output in zip(items, outputs, strict=True):
                batch = default_collate([{k: v for k, v in item.items() if k != "image"}])
                writer.write(batch, {name: array[None] for name, array in output.items()})
        finally:
            writer.close()
        height, width = windows.sizes[0]
        rasters = {
            path.stem.rsplit("_", 1)[-1]: base64.b64encode(path.read_bytes()).decode("ascii")
            for path in writer.written
        }
        return {
            "height": height,
            "width": width,
            "windows": len(items),
            "window": window,
            "format": "GeoTIFF, base64",
            "rasters": rasters,
            **_polygons(out, [path.stem for path in writer.sources]),
        }


def _polygons(folder: Path, stems: list[str]) -> dict[str, Any]:
    """The vector export of the rasters as GeoJSON (EPSG:4326, a `layer` field per feature), or why not:
    areas need a metric pixel size, which a PNG or JPEG upload does not have."""
    import json

    from roofnet.data.vectors import VectorOptions, vectorize_folder

    target = folder / "roofs.geojson"
    try:
        vectorize_folder(folder, target, VectorOptions(), stems=stems)
    except RoofDataError as error:
        return {"polygons": None, "note": f"no polygons: {str(error).replace(str(folder), 'the upload')}"}
    return {"polygons": json.loads(target.read_text())}


def _describe(data: bytes) -> str:
    return "an empty body" if not data else f"{len(data)} bytes starting {data[:8]!r}"
