"""Read what a run directory holds, locally or at any fsspec URL: its files and its TensorBoard scalars.

A run directory (`<runs_dir>/<name>/`, see `common.training_cli`) holds `config.yaml`, the
TensorBoard event files `events.out.tfevents.*`, `checkpoints/*.ckpt`, often `memory.json` and
`export/metrics.json`. `mtl curves`, `mtl runs` and `mtl sweep` read them through fsspec, so a
directory synced from Colab, Kaggle or a cluster, or one in a bucket (`s3://bucket/runs/x`), reads
the same as a local one. TensorBoard's `EventAccumulator` reads local files only in the way we need
it, so the event files of a remote run are first copied into a local cache (again only when their
size changed, so `mtl runs status --watch` fetches little).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.errors import UserInputError

EVENT_FILE_PREFIX = "events.out.tfevents."


@dataclass(frozen=True)
class ScalarPoint:
    """One logged scalar value: optimizer step, value, and the wall-clock time it was written (Unix s)."""

    step: int
    value: float
    wall_time: float


@dataclass(frozen=True)
class FileEntry:
    """A file of a run directory: its path relative to the run directory, size and modification time."""

    relative: str
    size: int
    mtime: float


def open_location(location: str | os.PathLike) -> tuple[Any, str]:
    """(fsspec filesystem, path in it) for a local path, a `file://` URL or any fsspec URL."""
    import fsspec

    try:
        filesystem, path = fsspec.core.url_to_fs(str(location))
    except (ImportError, ValueError) as error:
        raise UserInputError(f"{location}: cannot open this location: {error}") from None
    return filesystem, path.rstrip("/") or "/"


def is_local(filesystem: Any) -> bool:
    """True for fsspec's local filesystem, whose paths TensorBoard and matplotlib can use directly."""
    protocol = filesystem.protocol
    return "file" in (protocol if isinstance(protocol, tuple | list) else (protocol,))


def modification_time(info: dict[str, Any]) -> float:
    """Modification time (Unix s) from an fsspec `info()` entry; stores name it differently."""
    for key in ("mtime", "LastModified", "last_modified", "updated", "modified", "created"):
        value = info.get(key)
        if value is None:
            continue
        if hasattr(value, "timestamp"):
            return float(value.timestamp())
        if isinstance(value, str):
            from datetime import datetime

            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        return float(value)
    return 0.0


def list_files(filesystem: Any, root: str) -> list[FileEntry]:
    """Every file under `root` (recursively), relative to it, with size and modification time."""
    found = filesystem.find(root, detail=True)
    entries = []
    for path, info in found.items():
        if info.get("type", "file") != "file":
            continue
        relative = path[len(root) :].lstrip("/") if path.startswith(root) else path
        entries.append(FileEntry(relative, int(info.get("size") or 0), modification_time(info)))
    return sorted(entries, key=lambda entry: entry.relative)


def local_event_directory(filesystem: Any, run_dir: str, event_files: list[FileEntry]) -> Path:
    """A local directory with the run's event files: the run directory itself, or a cache of a remote one."""
    if is_local(filesystem):
        return Path(run_dir)
    key = hashlib.sha256(f"{filesystem.protocol}:{run_dir}".encode()).hexdigest()[:16]
    cache = Path(os.environ.get("MTL_CACHE", Path(tempfile.gettempdir()) / "mtl-cache")) / "events" / key
    cache.mkdir(parents=True, exist_ok=True)
    for entry in event_files:
        local = cache / entry.relative
        if not local.is_file() or local.stat().st_size != entry.size:
            filesystem.get(f"{run_dir}/{entry.relative}", str(local))
    return cache


def read_scalars(run_dir: str | os.PathLike) -> dict[str, list[ScalarPoint]]:
    """All scalar series of the TensorBoard event files directly in `run_dir`, by tag, sorted by step.

    A resumed run writes a second event file into the same directory and may repeat steps logged
    before the kill; the later value wins, so each series is one curve across all invocations.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    filesystem, path = open_location(run_dir)
    if not filesystem.isdir(path):
        raise UserInputError(f"{run_dir}: no such run directory")
    event_files = [
        FileEntry(Path(info["name"]).name, int(info.get("size") or 0), modification_time(info))
        for info in filesystem.ls(path, detail=True)
        if Path(info["name"]).name.startswith(EVENT_FILE_PREFIX)
    ]
    if not event_files:
        raise UserInputError(
            f"{run_dir}: no TensorBoard event files ({EVENT_FILE_PREFIX}*) in this run directory"
        )
    accumulator = EventAccumulator(
        str(local_event_directory(filesystem, path, event_files)), size_guidance={"scalars": 0}
    )
    accumulator.Reload()
    series: dict[str, dict[int, ScalarPoint]] = {}
    for tag in accumulator.Tags()["scalars"]:
        points = series.setdefault(tag, {})
        for event in sorted(accumulator.Scalars(tag), key=lambda e: e.wall_time):
            points[event.step] = ScalarPoint(event.step, float(event.value), float(event.wall_time))
    return {tag: [points[step] for step in sorted(points)] for tag, points in series.items()}
