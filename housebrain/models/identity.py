"""Which base model an adapter belongs to, by content: the same weights on Colab, Kaggle and a laptop.

An adapter trained on `/content/smollm2` and one trained on `C:/models/smollm2` belong to the same base
when the base's weight files are the same bytes. The identity is `{name, size, sha256, files}`:
SHA-256 over the weight files (sorted by name; each file's name and bytes), their total size in
bytes and a display name (the directory or `.gguf` file name). Two identities match when size and
hash match; the name is only shown in messages, so a renamed copy is still the same base.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from common.errors import UserInputError

#: Files that hold a Hugging Face model's weights (safetensors first; `.bin` only when no safetensors).
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")
_CHUNK = 1 << 22
_cache: dict[tuple[str, int, int], str] = {}


class BaseIdentityError(UserInputError):
    """A base model path without weight files to identify (the message names the path)."""


def weight_files(path: str | Path) -> list[Path]:
    """The files whose bytes define a base model: a `.gguf` file, or a directory's weight files."""
    source = Path(path)
    if source.is_file():
        return [source]
    for pattern in WEIGHT_PATTERNS:
        files = sorted(file for file in source.glob(pattern) if file.is_file())
        if files:
            return files
    raise BaseIdentityError(
        f"{source}: no weight files ({' or '.join(WEIGHT_PATTERNS)}) to identify the base model by"
    )


def _file_sha256(file: Path) -> str:
    stat = file.stat()
    key = (str(file.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _cache:
        digest = hashlib.sha256()
        with file.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
        _cache[key] = digest.hexdigest()
    return _cache[key]


def base_identity(path: str | Path) -> dict[str, Any]:
    """`{name, size, sha256, files}` of the base model at `path` (directory or `.gguf` file)."""
    files = weight_files(path)
    combined = hashlib.sha256()
    for file in files:
        combined.update(file.name.encode() + b"\0" + _file_sha256(file).encode() + b"\n")
    return {
        "name": Path(path).name,
        "size": sum(file.stat().st_size for file in files),
        "sha256": combined.hexdigest(),
        "files": [file.name for file in files],
    }


def same_base(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Same weights: equal size and hash (names may differ)."""
    return a.get("size") == b.get("size") and a.get("sha256") == b.get("sha256")


def describe(identity: dict[str, Any]) -> str:
    """`name (N bytes, sha256 abcdef012345)` for messages."""
    return f"{identity.get('name')} ({identity.get('size')} bytes, sha256 {str(identity.get('sha256'))[:12]})"
