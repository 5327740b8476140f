"""Reading arrays out of request bodies safely: `.npy` and `.npz` without pickle, with messages that
name the field and say what was expected (NumPy's format: https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence

import numpy as np

from common.serving.contract import Payload, RequestError


def read_npy(payload: Payload, expected: str) -> np.ndarray:
    """The array of a `.npy` body (`allow_pickle=False`: object arrays are refused)."""
    if not payload.data.startswith(b"\x93NUMPY"):
        raise RequestError(payload.field, f"a .npy file holding {expected}", _what(payload.data), 400)
    return _load(payload, f"a .npy file holding {expected}", expected)


def read_npz(payload: Payload, required_any: Sequence[str], expected: str) -> dict[str, np.ndarray]:
    """The arrays of a `.npz` body; at least one of `required_any` must be present."""
    if not zipfile.is_zipfile(io.BytesIO(payload.data)):
        raise RequestError(payload.field, f"an .npz archive holding {expected}", _what(payload.data), 400)
    arrays = _load(payload, f"an .npz archive holding {expected}", expected)
    if not any(key in arrays for key in required_any):
        raise RequestError(
            payload.field,
            f"an .npz with field {' or '.join(map(repr, required_any))}",
            f"fields {sorted(arrays)}",
        )
    return arrays


def _load(payload: Payload, container: str, expected: str) -> np.ndarray | dict[str, np.ndarray]:
    """`np.load` without pickle; a damaged file is a 400, an object array a 422, both naming the field."""
    try:
        loaded = np.load(io.BytesIO(payload.data), allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):  # members are read lazily: read them all here
            with loaded:
                return {key: loaded[key] for key in loaded.files}
        return loaded
    except ValueError as error:
        if "pickle" in str(error).lower():
            raise RequestError(payload.field, expected, "an object array (needs pickle; refused)") from None
        raise RequestError(payload.field, container, f"a truncated or damaged file ({error})", 400) from None
    except (OSError, EOFError, zipfile.BadZipFile) as error:
        raise RequestError(payload.field, container, f"a truncated or damaged file ({error})", 400) from None


def check_finite(array: np.ndarray, field: str) -> None:
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise RequestError(field, "finite values", f"{bad} NaN/inf value(s)")


def check_dtype(array: np.ndarray, field: str, allowed: Sequence[str]) -> None:
    if array.dtype.name not in allowed:
        raise RequestError(field, f"dtype {' or '.join(allowed)}", f"dtype {array.dtype.name}")


def _what(data: bytes) -> str:
    if not data:
        return "an empty body"
    signatures = {
        b"\x89PNG": "a PNG image",
        b"II*\x00": "a TIFF image",
        b"MM\x00*": "a TIFF image",
        b"\xff\xd8\xff": "a JPEG image",
        b"PK\x03\x04": "a zip archive",
        b"\x93NUMPY": "a .npy file",
        b"{": "JSON text",
    }
    for signature, name in signatures.items():
        if data.startswith(signature):
            return name
    return f"{len(data)} bytes starting {data[:8]!r}"
