"""The HTTP application: one FastAPI app for any export bundle, the domain's routes from its handler.

    GET  /healthz      the process answers (always 200 while it runs)
    GET  /readyz       200 once the model is loaded, 503 before (or with the load error)
    GET  /v1/model     the bundle's manifest, metrics and the handler's metadata
    GET  /openapi.json the OpenAPI schema (FastAPI), /docs its browsable page
    POST <domain routes>

Every request is bounded: a body over `max_request_bytes` gets 413 before it is read in full, more
than `max_queue` requests in progress get 503 (with Retry-After), a request running longer than
`timeout_s` gets 504, a request the handler refuses gets its 4xx with `{"error", "field",
"expected", "found"}`, and an exception in the model gets 500 with the server still up. One JSON
line per request goes to the `mtl.serve` logger with method, path, status and latency.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from functools import partial
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from common.errors import ExportError
from common.serving.batching import DynamicBatcher
from common.serving.contract import (
    JSON_TYPES,
    Endpoint,
    Payload,
    RequestError,
    ServingHandler,
    bundle_metrics,
)

HANDLER_GROUP = "mtl.serving"
log = logging.getLogger("mtl.serve")


@dataclass(frozen=True)
class ServerSettings:
    """What `mtl serve` was asked for; the same in every worker process."""

    bundle: str
    max_batch_size: int = 16
    batch_wait_ms: float = 0.0
    timeout_s: float = 30.0
    max_queue: int = 64
    max_request_bytes: int = 32 * 1024 * 1024

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServerSettings:
        return cls(**json.loads(text))


def read_manifest(bundle: str | Path) -> dict[str, Any]:
    """The bundle's `bundle.json`; an `ExportError` naming the directory when it is not a bundle."""
    directory = Path(bundle)
    path = directory / "bundle.json"
    if not directory.is_dir():
        raise ExportError(f"{directory}: no such bundle directory (an `mtl export` or `<run>/export` folder)")
    if not path.is_file():
        raise ExportError(f"{directory}: not an export bundle (no bundle.json)")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as error:
        raise ExportError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("class_path"), str):
        raise ExportError(f"{path}: expected an object with 'class_path', got {str(manifest)[:80]}")
    return manifest


def handler_class_for(manifest: dict[str, Any], bundle: str | Path) -> type[ServingHandler]:
    """The handler registered (entry-point group `mtl.serving`) for the package of the bundle's module."""
    package = manifest["class_path"].split(".", 1)[0]
    handlers = {ep.name: ep for ep in entry_points(group=HANDLER_GROUP)}
    if package not in handlers:
        raise ExportError(
            f"{bundle}: its module {manifest['class_path']} belongs to '{package}', which has no serving "
            f"handler; handlers are registered for {sorted(handlers)} (entry points '{HANDLER_GROUP}')"
        )
    return handlers[package].load()


class ModelState:
    """The handler, whether it is loaded, and the bounded admission of requests."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        manifest = read_manifest(settings.bundle)
        self.handler = handler_class_for(manifest, settings.bundle)(Path(settings.bundle), manifest)
        self.handler.timeout_s = settings.timeout_s
        self.ready = threading.Event()
        self.load_error: str | None = None
        self.load_seconds: float | None = None
        self.in_progress = 0
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mtl-model")
        self.batcher: DynamicBatcher | None = None

    def load(self) -> None:
        start = time.perf_counter()
        try:
            self.handler.load()
        except Exception as error:  # reported by /readyz and the log; the process stays up to say so
            self.load_error = f"{type(error).__name__}: {error}"
            log.error(
                json.dumps({"event": "load_failed", "bundle": self.settings.bundle, "error": self.load_error})
            )
            return
        self.load_seconds = time.perf_counter() - start
        self.ready.set()
        log.info(
            json.dumps(
                {
                    "event": "model_loaded",
                    "bundle": self.settings.bundle,
                    "seconds": round(self.load_seconds, 3),
                }
            )
        )


def _error(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) as soon as it passes `limit` bytes, before it is all received."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError("body", f"at most {limit} bytes", f"Content-Length {declared}", 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError("body", f"at most {limit} bytes", f"more than {limit} bytes", 413)
        chunks.append(chunk)
    return b"".join(chunks)


def _media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


async def payload_of(request: Request, endpoint: Endpoint, limit: int) -> Payload:
    """The endpoint's payload: JSON parsed, a file from a multipart field or the raw body."""
    content_type = _media_type(request.headers.get("content-type"))
    query = dict(request.query_params)
    body = await read_body(request, limit)
    if endpoint.body == "json":
        if content_type not in JSON_TYPES:
            raise RequestError("content-type", "application/json", repr(content_type or "none"), 415)
        try:
            data = json.loads(body)
        except ValueError as error:
            raise RequestError("body", "valid JSON", f"{type(error).__name__}: {error}", 400) from None
        return Payload("body", content_type, data, query=query)
    if content_type == "multipart/form-data":
        return await _multipart_file(request, body, endpoint, query)
    if content_type in endpoint.media_types:
        return Payload("body", content_type, body, query=query)
    accepted = ", ".join(("multipart/form-data", *endpoint.media_types))
    raise RequestError("content-type", f"one of {accepted}", repr(content_type or "none"), 415)


async def _multipart_file(
    request: Request, body: bytes, endpoint: Endpoint, query: dict[str, str]
) -> Payload:
    from starlette.datastructures import UploadFile

    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=1, max_fields=16)
    except Exception as error:  # the multipart parser's errors (bad boundary, too many parts)
        raise RequestError(
            "body", "a multipart/form-data body", f"an unreadable one ({error})", 400
        ) from None
    try:
        upload = form.get(endpoint.file_field)
        if not isinstance(upload, UploadFile):
            fields = sorted(form.keys())
            raise RequestError(
                f"form.{endpoint.file_field}", "a file part", f"form fields {fields}" if fields else "no file"
            )
        data = await upload.read()
        part_type = _media_type(upload.content_type) or "application/octet-stream"
        for key, value in form.items():  # plain form fields act as query parameters
            if isinstance(value, str):
                query.setdefault(key, value)
        return Payload(f"form.{endpoint.file_field}", part_type, data, upload.filename, query)
    finally:
        await form.close()


def create_app(settings: ServerSettings) -> FastAPI:
    """The FastAPI app for one bundle; the model loads in a background thread at start-up."""
    state = ModelState(settings)
    handler = state.handler

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        threading.Thread(target=state.load, name="mtl-model-load", daemon=True).start()
        state.batcher = DynamicBatcher(
            handler.predict_batch,
            handler.batch_key,
            settings.max_batch_size,
            settings.batch_wait_ms / 1000,
            state.executor,
        )
        state.batcher.start()
        yield
        await state.batcher.stop()
        state.executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title=f"mtl serve: {handler.domain or 'model'}",
        version="1",
        description=f"Serves the export bundle {settings.bundle} ({handler.manifest['class_path']}).",
        lifespan=lifespan,
    )
    app.state.model = state

    @app.middleware("http")
    async def log_requests(request: Request, call_next):
        start = time.perf_counter()
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex[:16]
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            response.headers["x-request-id"] = request_id
            return response
        finally:
            log.info(
                json.dumps(
                    {
                        "event": "request",
                        "request_id": request_id,
                        "method": request.method,
                        "path": request.url.path,
                        "status": status,
                        "latency_ms": round((time.perf_counter() - start) * 1000, 2),
                        "in_progress": state.in_progress,
                    }
                )
            )

    @app.get("/healthz", summary="The process is up")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/readyz", summary="The model is loaded and requests are answered")
    async def readyz():
        if state.ready.is_set():
            return {"status": "ready", "load_seconds": state.load_seconds}
        if state.load_error:
            return _error(503, {"status": "failed", "error": state.load_error})
        return _error(503, {"status": "loading"})

    @app.get("/v1/model", summary="The bundle's manifest, metrics and what this server accepts")
    async def model_info() -> dict[str, Any]:
        return {
            "domain": handler.domain,
            "bundle": str(settings.bundle),
            "manifest": handler.manifest,
            "metrics": bundle_metrics(handler.bundle),
            "ready": state.ready.is_set(),
            "endpoints": [e.path for e in handler.endpoints()],
            "limits": {
                "max_request_bytes": settings.max_request_bytes,
                "timeout_s": settings.timeout_s,
                "max_queue": settings.max_queue,
                "max_batch_size": settings.max_batch_size,
            },
            "batches_run": dict(state.batcher.batch_sizes) if state.batcher else {},
            **(handler.metadata() if state.ready.is_set() else {}),
        }

    for endpoint in handler.endpoints():
        app.add_api_route(
            endpoint.path,
            _route(state, endpoint),
            methods=["POST"],
            summary=endpoint.summary,
            description=endpoint.description,
            openapi_extra=_openapi_request(endpoint),
        )
    return app


def _route(state: ModelState, endpoint: Endpoint):
    settings = state.settings

    async def route(request: Request):
        if not state.ready.is_set():
            message = state.load_error or "the model is still loading; see /readyz"
            return _error(503, {"error": message}, {"Retry-After": "5"})
        if state.in_progress >= settings.max_queue:
            return _error(
                503,
                {
                    "error": f"server busy: {state.in_progress} requests in progress (limit {settings.max_queue})"
                },
                {"Retry-After": "1"},
            )
        state.in_progress += 1
        try:
            return await asyncio.wait_for(_answer(state, endpoint, request), settings.timeout_s)
        except RequestError as error:
            return _error(error.status, error.to_dict())
        except asyncio.TimeoutError:
            return _error(
                504, {"error": f"the request took longer than the server's timeout ({settings.timeout_s} s)"}
            )
        except Refused as error:
            return _error(422, {"error": str(error)})
        except Exception as error:
            log.error(
                json.dumps({"event": "error", "path": endpoint.path, "traceback": traceback.format_exc()})
            )
            return _error(500, {"error": f"internal error: {type(error).__name__}: {error}"})
        finally:
            state.in_progress -= 1

    route.__name__ = "post_" + endpoint.path.strip("/").replace("/", "_")
    return route


async def _answer(state: ModelState, endpoint: Endpoint, request: Request) -> Response:
    payload = await payload_of(request, endpoint, state.settings.max_request_bytes)
    loop = asyncio.get_running_loop()
    if not endpoint.batched:
        return await loop.run_in_executor(
            state.executor, _respond, partial(refusing, endpoint.handle), payload
        )
    work = await asyncio.to_thread(
        refusing, endpoint.decode, payload
    )  # file parsing stays off the event loop
    if not work.items:
        raise RequestError(endpoint.file_field, "at least one item", "none")
    outputs = await state.batcher.submit(work.items)
    return await asyncio.to_thread(_respond, work.finish, outputs)


class Refused(Exception):
    """A domain's ValueError about a request (its format errors name the field or file): a 422."""


def refusing(function: Any, payload: Payload) -> Any:
    """`function(payload)`, with a domain's ValueError turned into `Refused`; errors after decoding
    (in the model, in encoding the answer) stay errors of the server (500)."""
    try:
        return function(payload)
    except RequestError:
        raise
    except ValueError as error:
        raise Refused(str(error)) from error


def _respond(build: Any, argument: Any) -> Response:
    """`build(argument)` as a response, JSON encoded here (off the event loop; plain `json.dumps`,
    which is much faster than FastAPI's field-by-field encoder for arrays of numbers)."""
    result = build(argument)
    return result if isinstance(result, Response) else JSONResponse(result)


def _openapi_request(endpoint: Endpoint) -> dict[str, Any]:
    parameters = [
        {"name": name, "in": "query", "required": False, "schema": {"type": kind}, "description": text}
        for name, kind, text in endpoint.query_parameters
    ]
    if endpoint.body == "json":
        content = {"application/json": {"schema": endpoint.request_schema or {"type": "object"}}}
    else:
        binary = {"type": "string", "format": "binary"}
        content = {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {endpoint.file_field: binary},
                    "required": [endpoint.file_field],
                }
            },
            **{media: {"schema": binary} for media in endpoint.media_types},
        }
    extra: dict[str, Any] = {"requestBody": {"required": True, "content": content}}
    if parameters:
        extra["parameters"] = parameters
    return extra


def app_from_environment() -> FastAPI:
    """The app factory uvicorn's worker processes call (`--workers N`); settings come from `mtl serve`."""
    import os

    return create_app(ServerSettings.from_json(os.environ["MTL_SERVE_SETTINGS"]))
