"""The contract a domain fills to be served: decode a request, predict, encode the response.

A domain's handler (`<domain>/serving.py`) is found through the `mtl.serving` entry-point group, keyed
by the domain package that owns the bundle's LightningModule, so `common` never names a domain:

    [project.entry-points."mtl.serving"]
    landcover = "landcover.serving:LandCoverHandler"

A handler is built once per server process from the bundle directory, loads its model in `load()`
(called in a background thread, so `/healthz` answers while a large model loads and `/readyz` tells
when it is ready) and lists its `endpoints()`. An endpoint is either

- *batched* (vision models): `decode(payload)` returns a `Work` whose `items` (one patch, one window,
  one shot gather) go through the dynamic batcher into `predict_batch(items)`, and whose `finish`
  turns the outputs, in the same order, into the response; or
- *direct* (`batched=False`): `handle(payload)` returns the response (a generated design, a
  validation report); it runs on the model's thread, one at a time.

Anything wrong with the request is raised as `RequestError` (field, expected, found): the server
answers 4xx with that message and carries on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

JSON_TYPES = ("application/json",)


class RequestError(ValueError):
    """A request the server refuses; `str()` is `field: expected ..., got ...`.

    Args:
        field: the part of the request at fault (`body`, `file`, `requirements.floors`, `query.dn_offset`).
        expected: what would have been accepted.
        found: what the request held.
        status: the HTTP status (400 unreadable, 413 too large, 415 wrong content type, 422 readable but
            invalid).
    """

    def __init__(self, field: str, expected: str, found: str, status: int = 422) -> None:
        self.field, self.expected, self.found, self.status = field, expected, found, status
        super().__init__(f"{field}: expected {expected}, got {found}")

    def to_dict(self) -> dict[str, Any]:
        return {"error": str(self), "field": self.field, "expected": self.expected, "found": self.found}


@dataclass(frozen=True)
class Payload:
    """One request's body as the endpoint declared it: a file's bytes or parsed JSON.

    Attributes:
        field: the multipart field (or `body` for a raw upload / JSON body) it came from, for messages.
        content_type: the media type of the file or body (without parameters).
        data: the raw bytes (file endpoints) or the parsed JSON value (json endpoints).
        filename: the uploaded file's name when the client sent one.
        query: the request's query parameters.
    """

    field: str
    content_type: str
    data: Any
    filename: str | None = None
    query: Mapping[str, str] = field(default_factory=dict)

    def query_value(self, name: str, kind: type, default: Any) -> Any:
        """A query parameter converted to `kind` (int, float, bool, str), or `default` when absent."""
        raw = self.query.get(name)
        if raw is None:
            return default
        if kind is bool:
            if raw.lower() in ("1", "true", "yes"):
                return True
            if raw.lower() in ("0", "false", "no"):
                return False
            raise RequestError(f"query.{name}", "true or false", repr(raw), 400)
        try:
            return kind(raw)
        except ValueError:
            raise RequestError(f"query.{name}", f"a {kind.__name__}", repr(raw), 400) from None


@dataclass
class Work:
    """A decoded batched request: `items` for `predict_batch`, `finish(outputs)` builds the response."""

    items: Sequence[Any]
    finish: Callable[[list[Any]], Any]


@dataclass(frozen=True)
class Endpoint:
    """One POST route of a domain.

    Attributes:
        path: the route, e.g. `/v1/predict`.
        summary: one line for the OpenAPI schema.
        body: `file` (multipart field `file_field`, or the raw body with one of `media_types`) or `json`.
        media_types: content types accepted for a file body (multipart parts or raw uploads).
        request_schema: JSON schema of a json body, for the OpenAPI schema.
        decode: `payload -> Work` for batched endpoints.
        handle: `payload -> response` for direct endpoints.
        batched: whether items go through the dynamic batcher.
        description: longer OpenAPI text (formats, query parameters).
    """

    path: str
    summary: str
    body: Literal["file", "json"]
    decode: Callable[[Payload], Work] | None = None
    handle: Callable[[Payload], Any] | None = None
    batched: bool = True
    file_field: str = "file"
    media_types: tuple[str, ...] = ("application/octet-stream",)
    request_schema: dict[str, Any] | None = None
    description: str = ""
    query_parameters: tuple[tuple[str, str, str], ...] = ()  # (name, type, description) for OpenAPI


class ServingHandler:
    """Base of a domain's handler: the bundle directory and its manifest; subclasses fill the rest."""

    #: the domain's name as shown in `/v1/model`
    domain: str = ""
    #: the server's per-request timeout (set by the server), for work that can stop itself early
    timeout_s: float = 30.0

    def __init__(self, bundle: Path, manifest: Mapping[str, Any]) -> None:
        self.bundle = Path(bundle)
        self.manifest = dict(manifest)

    def load(self) -> None:
        """Load the model (called once, off the event loop): by default the bundle's LightningModule,
        in eval mode, as `self.module` (`common.export.load_module`)."""
        from common.export import load_module

        self.module = load_module(self.bundle)

    def endpoints(self) -> list[Endpoint]:
        raise NotImplementedError

    def predict_batch(self, items: list[Any]) -> list[Any]:
        """Outputs for items of one shape (see `batch_key`), in order; batched endpoints only."""
        raise NotImplementedError

    def batch_key(self, item: Any) -> Any:
        """Items with equal keys can be stacked into one forward pass (default: the array's shape)."""
        return getattr(item, "shape", None)

    def metadata(self) -> dict[str, Any]:
        """What `/v1/model` adds to the bundle's manifest (classes, bands, input shape, ...)."""
        return {}


def bundle_metrics(bundle: Path) -> dict[str, Any]:
    path = Path(bundle) / "metrics.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
