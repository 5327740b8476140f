"""`mtl serve BUNDLE`: run the HTTP app of `common.serving.app` under uvicorn.

FastAPI + uvicorn rather than LitServe: a domain needs several routes with their own request schemas
in one server (housebrain's /v1/designs and /v1/validate), a 503 when the queue is full and 4xx
bodies naming the field, which FastAPI's routing and OpenAPI give directly; the dynamic batching
LitServe would add is a small asyncio loop here (`common.serving.batching`). `--workers N` is
uvicorn's own multi-process mode, each worker loading the model once.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Literal

from jsonargparse.typing import NonNegativeFloat, PositiveFloat, PositiveInt

from common.serving.app import ServerSettings, handler_class_for, read_manifest


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger and the message (itself JSON when it is)."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
        }
        try:
            parsed = json.loads(message)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            entry.update(parsed)
        else:
            entry["message"] = message
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def log_config(level: str = "info") -> dict[str, Any]:
    """uvicorn's `log_config`: its own loggers and `mtl.serve` as JSON lines on stderr."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    logger = {"handlers": ["json"], "level": level.upper(), "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonLogFormatter}},
        "handlers": {"json": handler},
        "loggers": {"uvicorn": logger, "uvicorn.error": logger, "mtl.serve": logger},
    }


def serve(
    bundle: Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: PositiveInt = 1,
    max_batch_size: PositiveInt = 16,
    batch_wait_ms: NonNegativeFloat = 0.0,
    timeout: PositiveFloat = 30.0,
    max_queue: PositiveInt = 64,
    max_request_mb: PositiveFloat = 32.0,
    log_level: Literal["debug", "info", "warning", "error"] = "info",
) -> None:
    """Serve an export bundle over HTTP (OpenAPI schema at /docs; /healthz, /readyz, /v1/model).

    Args:
        bundle: export bundle directory (e.g. runs/landcover/quickstart/export).
        host: interface to listen on; 0.0.0.0 to accept connections from other machines.
        port: TCP port.
        workers: server processes, each with its own copy of the model.
        max_batch_size: items (patches, windows, shot gathers) per forward pass; 1 turns dynamic batching off.
        batch_wait_ms: how long the first item of a batch waits for others (0: take what is queued).
        timeout: seconds a request may take before it is answered 504.
        max_queue: requests in progress per worker before new ones are answered 503.
        max_request_mb: largest request body in MiB (413 above it).
        log_level: debug, info, warning or error.
    """
    import uvicorn

    settings = ServerSettings(
        bundle=str(bundle),
        max_batch_size=max_batch_size,
        batch_wait_ms=batch_wait_ms,
        timeout_s=timeout,
        max_queue=max_queue,
        max_request_bytes=int(max_request_mb * 1024 * 1024),
    )
    # Refuse a wrong bundle here, with one line, rather than in every worker.
    handler_class_for(read_manifest(bundle), bundle)
    os.environ["MTL_SERVE_SETTINGS"] = settings.to_json()
    print(f"mtl serve: {bundle} on http://{host}:{port} ({workers} worker(s))", file=sys.stderr)
    uvicorn.run(
        "common.serving.app:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=log_config(log_level),
        access_log=False,  # one JSON line per request comes from the app, with its latency
        timeout_graceful_shutdown=5,
    )
