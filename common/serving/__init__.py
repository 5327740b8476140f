"""Serving export bundles over HTTP: `mtl serve BUNDLE` (see `server`), the app (`app`), the contract
a domain's handler fills (`contract`), dynamic batching (`batching`) and safe array decoding
(`decoding`)."""

from common.serving.contract import Endpoint, Payload, RequestError, ServingHandler, Work

__all__ = ["Endpoint", "Payload", "RequestError", "ServingHandler", "Work"]
