"""`mtl serve` for a landcover bundle: `POST /v1/predict` with an NPZ patch or batch -> class probabilities.

The body is the lab's NPZ format (`landcover.data.formats`): `image` (C, H, W) for one patch or
`images` (N, C, H, W) for several, optionally `bands`, checked against the bundle's band list.
Reflectance (float, NaN for no data) by default; `?units=dn&dn_offset=1000` for L2A digital numbers.
Patches of concurrent requests with the same shape share one forward pass.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from common.serving import Endpoint, Payload, RequestError, ServingHandler, Work
from common.serving.decoding import read_npz

NPZ_TYPES = ("application/octet-stream", "application/zip", "application/x-npz")


class LandCoverHandler(ServingHandler):
    domain = "landcover"

    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint(
                "/v1/predict",
                "Land-cover class probabilities and label of Sentinel-2 patches",
                body="file",
                media_types=NPZ_TYPES,
                decode=self.decode,
                description=(
                    "An .npz with `image` (C, H, W) or `images` (N, C, H, W), bands in the bundle's order "
                    "(see GET /v1/model), reflectance with NaN for no data, or DN with ?units=dn."
                ),
                query_parameters=(
                    ("units", "string", "reflectance (default) or dn"),
                    ("dn_offset", "integer", "DN offset, 1000 for processing baseline 04.00 and later"),
                ),
            )
        ]

    def metadata(self) -> dict[str, Any]:
        return {"bands": list(self.module.bands), "classes": list(self.module.class_names)}

    def predict_batch(self, items: list[np.ndarray]) -> list[np.ndarray]:
        with torch.no_grad():
            probabilities = torch.softmax(self.module(torch.from_numpy(np.stack(items))), dim=1)
        return list(probabilities.numpy())

    def decode(self, payload: Payload) -> Work:
        from landcover.data.datasets import PixelConversion
        from landcover.data.formats import check_bands, check_image

        units = payload.query_value("units", str, "reflectance")
        if units not in ("reflectance", "dn"):
            raise RequestError("query.units", "reflectance or dn", repr(units), 400)
        conversion = PixelConversion(units=units, dn_offset=payload.query_value("dn_offset", int, 0))
        arrays = read_npz(payload, ("image", "images"), "image (C, H, W) or images (N, C, H, W)")
        batched = "images" in arrays
        stored = arrays["images"] if batched else arrays["image"]
        check_image(stored, payload.field, self.module.bands, batched=batched)
        check_bands(arrays.get("bands"), payload.field, self.module.bands)
        patches = [conversion(patch, payload.field) for patch in (stored if batched else [stored])]
        for index, patch in enumerate(patches):
            if np.isnan(patch).all():
                where = f"{payload.field}: images[{index}]" if batched else f"{payload.field}: image"
                raise RequestError(where, "some valid pixels (NaN marks no data)", "only no-data pixels")
        classes = list(self.module.class_names)

        def finish(outputs: list[np.ndarray]) -> dict[str, Any]:
            predictions = [
                {
                    "label": classes[int(p.argmax())],
                    "index": int(p.argmax()),
                    "probabilities": {name: round(float(v), 6) for name, v in zip(classes, p, strict=True)},
                }
                for p in outputs
            ]
            return {"classes": classes, "predictions": predictions}

        return Work(patches, finish)
