"""`mtl serve` against real servers (subprocesses on 127.0.0.1) with a real HTTP client (httpx).

What a client notices: the endpoints answer with the right shapes and units, georeferencing survives,
dynamic batching gives the same numbers as one at a time, limits answer 413/503/504, every request is
a JSON log line with its latency, and bad requests get a 4xx naming the field while the server stays up.
"""

from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from tests.serving.conftest import Server


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def geotiff_bytes(height: int, width: int, seed: int = 0) -> bytes:
    import rasterio
    from rasterio.io import MemoryFile
    from rasterio.transform import from_origin

    pixels = np.random.default_rng(seed).integers(0, 255, (3, height, width), dtype=np.uint8)
    transform = from_origin(691000.0, 5336000.0, 0.1, 0.1)
    with MemoryFile() as memory:
        profile = {"driver": "GTiff", "height": height, "width": width, "count": 3, "dtype": "uint8"}
        with memory.open(**profile, crs=rasterio.CRS.from_epsg(25832), transform=transform) as dataset:
            dataset.write(pixels)
        return memory.read()


def patch(seed: int = 0, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 0.4, (6, size, size)).astype(np.float32)


def seismic(batch: int | None = None, seed: int = 0) -> np.ndarray:
    shape = (5, 1000, 70) if batch is None else (batch, 5, 1000, 70)
    return np.random.default_rng(seed).normal(0, 1, shape).astype(np.float32)


def post_file(
    server: Server, data: bytes, field: str = "file", path: str = "/v1/predict", **kwargs
) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", files={field: ("upload", data)}, timeout=60, **kwargs)


def log_events(server: Server) -> list[dict]:
    events = []
    for line in server.log.read_text().splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
    return events


def test_landcover_endpoints_batching_and_logs(landcover_server: Server) -> None:
    server = landcover_server
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{server.url}/readyz").json()["status"] == "ready"
    model = httpx.get(f"{server.url}/v1/model").json()
    assert (
        model["domain"] == "landcover" and model["manifest"]["class_path"] == "landcover.task.LandCoverTask"
    )
    assert model["bands"] == ["B02", "B03", "B04", "B08", "B11", "B12"] and len(model["classes"]) == 8
    schema = httpx.get(f"{server.url}/openapi.json").json()
    assert "multipart/form-data" in schema["paths"]["/v1/predict"]["post"]["requestBody"]["content"]

    single = post_file(server, npz_bytes(image=patch(1)))
    assert single.status_code == 200, single.text
    [prediction] = single.json()["predictions"]
    assert prediction["label"] in model["classes"]
    assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)

    batch = post_file(server, npz_bytes(images=np.stack([patch(1), patch(2), patch(3)])))
    assert batch.status_code == 200, batch.text
    predictions = batch.json()["predictions"]
    assert len(predictions) == 3
    for name, value in prediction["probabilities"].items():
        assert predictions[0]["probabilities"][name] == pytest.approx(value, abs=1e-5)

    # Concurrent clients: their patches share forward passes, and each gets its own answer back.
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda s: post_file(server, npz_bytes(image=patch(s))), range(24)))
    assert [a.status_code for a in answers] == [200] * 24
    alone = post_file(server, npz_bytes(image=patch(5))).json()["predictions"][0]["probabilities"]
    together = answers[5].json()["predictions"][0]["probabilities"]
    assert together == pytest.approx(alone, abs=1e-5)
    batches = httpx.get(f"{server.url}/v1/model").json()["batches_run"]
    assert max(int(size) for size in batches) > 1, batches

    requests = [e for e in log_events(server) if e.get("event") == "request" and e["path"] == "/v1/predict"]
    assert len(requests) >= 27
    assert all(isinstance(e["latency_ms"], float) and e["status"] == 200 for e in requests)


def test_fwi_velocity_in_metres_per_second(fwi_server: Server) -> None:
    one = post_file(fwi_server, npy_bytes(seismic()))
    assert one.status_code == 200, one.text
    body = one.json()
    velocity = np.array(body["velocity"])
    assert body["units"] == "m/s" and velocity.shape == (1, 70, 70)
    assert velocity.min() >= 1500 and velocity.max() <= 4500  # OpenFWI's velocity range

    two = post_file(fwi_server, npy_bytes(seismic(2)), params={"format": "npy"})
    assert two.headers["content-type"] == "application/x-npy"
    array = np.load(io.BytesIO(two.content), allow_pickle=False)
    assert array.shape == (2, 70, 70) and array.dtype == np.float32

    half = post_file(fwi_server, npy_bytes(seismic().astype(np.float16)))
    assert half.status_code == 200, half.text


def test_roofnet_rasters_keep_the_georeference(roofnet_server: Server) -> None:
    from rasterio.io import MemoryFile

    image = geotiff_bytes(200, 300)
    answer = post_file(roofnet_server, image, field="image", params={"window": 128, "overlap": 32})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["height"], body["width"], body["windows"]) == (200, 300, 6)
    assert set(body["rasters"]) == {"segments", "superstructures", "building", "lines", "height", "pitch"}
    polygons = body["polygons"]  # the vector export of the rasters: areas need the projected input's metres
    assert polygons["type"] == "FeatureCollection"
    layers = {"buildings", "roof_segments", "superstructures", "roof_lines"}
    assert all(feature["properties"]["layer"] in layers for feature in polygons["features"])
    buildings = [f for f in polygons["features"] if f["properties"]["layer"] == "buildings"]
    assert all(f["properties"]["area_m2"] > 0 for f in buildings)
    with MemoryFile(image) as source_file, source_file.open() as source:
        for name, count in (("building", 1), ("lines", 4), ("height", 1)):
            import base64

            with MemoryFile(base64.b64decode(body["rasters"][name])) as memory, memory.open() as raster:
                assert (raster.height, raster.width, raster.count) == (200, 300, count)
                assert raster.crs == source.crs and raster.transform == source.transform
                if name == "building":
                    assert set(np.unique(raster.read(1)).tolist()) <= {0, 1}


BATTERY = [
    # (server, path, request, status, the field the message must name)
    (
        "landcover",
        "/v1/predict",
        {"content": b'{"image": [1, 2', "headers": {"content-type": "application/json"}},
        415,
        "content-type",
    ),
    (
        "landcover",
        "/v1/predict",
        {"files": {"file": ("x.npz", b"PK\x03\x04 truncated zip")}},
        400,
        "form.file",
    ),
    (
        "landcover",
        "/v1/predict",
        {"files": {"file": ("x.npz", npz_bytes(image=patch()[:4]))}},
        422,
        "'image' expected (6, H, W)",
    ),
    (
        "landcover",
        "/v1/predict",
        {"files": {"file": ("x.npz", npz_bytes(picture=patch()))}},
        422,
        "form.file",
    ),
    ("landcover", "/v1/predict", {"files": {"other": ("x.npz", npz_bytes(image=patch()))}}, 422, "form.file"),
    (
        "landcover",
        "/v1/predict",
        {"files": {"file": ("x.npz", npz_bytes(image=np.full((6, 8, 8), np.nan, np.float32)))}},
        422,
        "form.file: image",
    ),
    (
        "landcover",
        "/v1/predict",
        {"files": {"file": ("x.npz", npz_bytes(image=patch()))}, "params": {"units": "kelvin"}},
        400,
        "query.units",
    ),
    (
        "landcover",
        "/v1/predict",
        {"files": {"file": ("x.npz", npz_bytes(image=np.array([object()] * 3)))}},
        422,
        "form.file",
    ),
    (
        "fwi",
        "/v1/predict",
        {"files": {"file": ("x.npy", npy_bytes(seismic()[:, :999]))}},
        422,
        "shape (5, 999, 70)",
    ),
    (
        "fwi",
        "/v1/predict",
        {"files": {"file": ("x.npy", npy_bytes(seismic().astype(np.float64)))}},
        422,
        "dtype float64",
    ),
    (
        "fwi",
        "/v1/predict",
        {"files": {"file": ("x.npy", npy_bytes(np.where(seismic() > 3, np.nan, seismic())))}},
        422,
        "NaN",
    ),
    ("fwi", "/v1/predict", {"files": {"file": ("x.npy", npy_bytes(seismic())[:4000])}}, 400, "truncated"),
    (
        "fwi",
        "/v1/predict",
        {"content": b"\x00" * 100, "headers": {"content-type": "text/plain"}},
        415,
        "content-type",
    ),
    (
        "fwi",
        "/v1/predict",
        {"files": {"file": ("x.npy", npy_bytes(seismic()))}, "params": {"format": "csv"}},
        400,
        "query.format",
    ),
    (
        "roofnet",
        "/v1/predict",
        {"files": {"image": ("x.png", b"\x89PNG\r\n\x1a\n not really")}},
        400,
        "form.image",
    ),
    ("roofnet", "/v1/predict", {"files": {"image": ("x.txt", b"hello")}}, 400, "form.image"),
    (
        "roofnet",
        "/v1/predict",
        {"files": {"image": ("x.tif", geotiff_bytes(64, 64))}, "params": {"window": 100}},
        400,
        "query.window",
    ),
]


def test_bad_requests_get_4xx_naming_the_field_and_the_server_stays_up(servers: dict[str, Server]) -> None:
    for name in ("landcover", "fwi", "roofnet"):
        servers[name].wait_ready()
    for name, path, request, status, named in BATTERY:
        answer = httpx.post(f"{servers[name].url}{path}", timeout=30, **request)
        assert answer.status_code == status, (name, request, answer.text)
        assert named in answer.json()["error"], (name, answer.json())
    for name in ("landcover", "fwi", "roofnet"):
        assert httpx.get(f"{servers[name].url}/healthz").status_code == 200
    assert post_file(servers["landcover"], npz_bytes(image=patch())).status_code == 200
    assert post_file(servers["fwi"], npy_bytes(seismic())).status_code == 200
    assert post_file(servers["roofnet"], geotiff_bytes(64, 64), field="image").status_code == 200


def test_limits_answer_413_503_504_and_the_server_recovers(
    fwi_server: Server, roofnet_server: Server
) -> None:
    too_large = post_file(fwi_server, npy_bytes(seismic(4)))  # 5.6 MB over the 4 MiB limit
    assert too_large.status_code == 413 and too_large.json()["field"] == "body"

    # Two requests in progress at most: of twelve concurrent ones, those beyond two are refused with 503.
    image = geotiff_bytes(128, 128, seed=1)
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: post_file(roofnet_server, image, field="image"), range(12)))
    statuses = sorted(a.status_code for a in answers)
    assert 503 in statuses and 200 in statuses, statuses
    busy = next(a for a in answers if a.status_code == 503)
    assert busy.headers["retry-after"] == "1" and "busy" in busy.json()["error"]

    # A 2048 x 2048 image in 32-pixel windows is 4096 forward passes one by one: past the 5 s timeout.
    slow = post_file(
        roofnet_server, geotiff_bytes(2048, 2048), field="image", params={"window": 32, "overlap": 0}
    )
    assert slow.status_code == 504 and "timeout" in slow.json()["error"]

    assert httpx.get(f"{roofnet_server.url}/healthz").status_code == 200
    again = post_file(roofnet_server, image, field="image")
    assert again.status_code == 200, again.text
