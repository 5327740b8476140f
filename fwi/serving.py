"""`mtl serve` for an fwi bundle: `POST /v1/predict` with shot gathers -> the velocity map in m/s.

The body is a `.npy` (NumPy's format, read without pickle) holding one sample `(5, 1000, 70)` (five
sources, 1000 time steps, 70 receivers, as OpenFWI and the Kaggle test files) or a batch
`(N, 5, 1000, 70)`, float32 or float16. The answer is JSON `velocity` `(N, 70, 70)` in m/s (depth,
offset), or with `?format=npy` the float32 array as a `.npy`. `?tta=true` averages with the
mirrored survey as `mtl fwi submit --tta` does. Samples of concurrent requests share forward passes.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import torch

from common.serving import Endpoint, Payload, RequestError, ServingHandler, Work
from common.serving.decoding import check_dtype, check_finite, read_npy

SAMPLE_SHAPE = (5, 1000, 70)
NPY_TYPES = ("application/octet-stream", "application/x-npy")


class VelocityHandler(ServingHandler):
    domain = "fwi"

    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint(
                "/v1/predict",
                "Velocity map (70 x 70, m/s) from seismic shot gathers",
                body="file",
                media_types=NPY_TYPES,
                decode=self.decode,
                description="A .npy of shape (5, 1000, 70) or (N, 5, 1000, 70), float32 or float16.",
                query_parameters=(
                    ("tta", "boolean", "average with the mirrored survey (default false)"),
                    ("format", "string", "json (default) or npy"),
                ),
            )
        ]

    def metadata(self) -> dict[str, Any]:
        return {"input_shape": list(SAMPLE_SHAPE), "output_shape": [70, 70], "units": "m/s"}

    def batch_key(self, item: tuple[np.ndarray, bool]) -> Any:
        return item[1]  # mirrored-TTA requests are batched with each other only

    def predict_batch(self, items: list[tuple[np.ndarray, bool]]) -> list[np.ndarray]:
        from fwi.submission import predict_velocity

        seismic = torch.from_numpy(np.stack([sample for sample, _ in items]))
        return list(predict_velocity(self.module, seismic, tta=items[0][1]).numpy())

    def decode(self, payload: Payload) -> Work:
        tta = payload.query_value("tta", bool, False)
        answer = payload.query_value("format", str, "json")
        if answer not in ("json", "npy"):
            raise RequestError("query.format", "json or npy", repr(answer), 400)
        seismic = read_npy(payload, "(5, 1000, 70) or (N, 5, 1000, 70) float32")
        check_dtype(seismic, payload.field, ("float32", "float16"))
        if seismic.shape == SAMPLE_SHAPE:
            seismic = seismic[None]
        if seismic.ndim != 4 or seismic.shape[1:] != SAMPLE_SHAPE or seismic.shape[0] == 0:
            raise RequestError(
                payload.field, "shape (5, 1000, 70) or (N, 5, 1000, 70)", f"shape {seismic.shape}"
            )
        check_finite(seismic, payload.field)
        samples = [(np.ascontiguousarray(sample, dtype=np.float32), tta) for sample in seismic]

        def finish(outputs: list[np.ndarray]) -> Any:
            velocity = np.stack(outputs).astype(np.float32)
            if answer == "npy":
                from fastapi.responses import Response

                buffer = io.BytesIO()
                np.save(buffer, velocity, allow_pickle=False)
                return Response(buffer.getvalue(), media_type="application/x-npy")
            return {
                "units": "m/s",
                "shape": list(velocity.shape),
                "velocity": np.round(velocity.astype(np.float64), 2).tolist(),
            }

        return Work(samples, finish)
