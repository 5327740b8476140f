"""Reading and writing checkpoints safely.

Reading: `torch.load(weights_only=True)` only, so a checkpoint a user hands us cannot run code, and a
truncated or corrupted file fails with an error that names it. Writing: to a temporary file in the same
directory, flushed and fsynced, then renamed over the target, so `last.ckpt` is always either the old
complete file or the new complete file, even if a free platform kills the VM mid-write.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from common.errors import CheckpointError


def read_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a Lightning/PyTorch checkpoint with `weights_only=True` and a clear error on failure."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: checkpoint is empty (0 bytes); it was probably cut off while saving")
    if not _looks_like_torch_file(path):
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint (no complete zip archive, no pickle stream); "
            "the file is truncated or corrupted, or another kind of file"
        )
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's own message advises loading with weights_only=False or allow-listing globals: never
        # relay that for a file a user hands us; name what was refused instead.
        found = re.search(r"GLOBAL ([\w.]+)", str(error))
        what = f" ({found.group(1)})" if found else ""
        raise CheckpointError(
            f"{path}: refused to load: it holds Python objects{what} besides tensors and plain "
            "containers, which could run code; only weights-only checkpoints are read"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as error:
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({type(error).__name__}); "
            "the file is truncated or corrupted"
        ) from error
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: expected a checkpoint dict, got {type(checkpoint).__name__}")
    return checkpoint


def _looks_like_torch_file(path: Path) -> bool:
    """A zip archive (torch.save since 1.6) or a pickle stream (protocol 2+ starts with 0x80)."""
    if zipfile.is_zipfile(path):
        return True
    with path.open("rb") as handle:
        return handle.read(1) == b"\x80"


def write_atomically(data: bytes, path: str | Path) -> None:
    """Write bytes to `path` so that a reader sees either the old file or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint_atomically(checkpoint: dict[str, Any], path: str | Path) -> None:
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    write_atomically(buffer.getvalue(), path)


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint IO with atomic local writes and `weights_only=True` reads."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if "://" in str(path):  # remote filesystems: Lightning's own fsspec transaction
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        save_checkpoint_atomically(checkpoint, path)

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict:
        if "://" in str(path):
            return super().load_checkpoint(path, map_location=map_location, weights_only=True)
        return read_checkpoint(path, map_location=map_location or "cpu")
