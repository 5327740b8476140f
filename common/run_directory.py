"""The run directory: where one named run keeps its logs, checkpoints, config and export.

    <runs_dir>/<name>/                      TensorBoard event files, config.yaml, memory.json, reports
    <runs_dir>/<name>/checkpoints/          last.ckpt, stepNNNNNNNN.ckpt, exception-stepNNNNNNNN.ckpt
    <runs_dir>/<name>/hpc_ckpt_N.ckpt       SLURM pre-emption checkpoints (Lightning's own names)
    <runs_dir>/<name>/export/               the export bundle

`runs_dir` is a local path or any fsspec URL (`s3://bucket/prefix`, `gs://...`); paths here are
strings joined with "/" so a URL keeps its scheme (`pathlib.Path("s3://b")` would turn it into `s3:/b`).

A run directory belongs to one run. A fresh `fit` into a directory that already holds a run's files
is refused before anything is written (`check_fresh_run`), with the three ways on: resume it
(`--ckpt_path last`), pick another `--name`, or `--overwrite true`, which moves the old run aside to
`<name>.archived-<UTC time>` (nothing is deleted).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import fsspec
from fsspec.core import url_to_fs

from common.errors import UserInputError

# Files a finished or interrupted run leaves; a directory with any of them holds a run.
RUN_FILE_PATTERNS = (
    "events.out.tfevents.*",
    "checkpoints/*.ckpt",
    "hpc_ckpt_*.ckpt",
    "export/*",
    "memory.json",
)
# What a kill during an atomic checkpoint write leaves behind (common.checkpoint.write_atomically).
STALE_TEMPORARY_PATTERNS = ("checkpoints/.*.tmp", ".*.tmp")


class RunDirectoryError(UserInputError):
    """A run directory that cannot be used as asked; the message says what to do instead."""


def is_url(path: Any) -> bool:
    return "://" in str(path)


def join(base: str, *parts: str) -> str:
    """`base/part/...` for a local path or a URL."""
    return "/".join([str(base).rstrip("/"), *(str(p).strip("/") for p in parts)])


def run_url(runs_dir: str, name: str) -> str:
    """Where the run named `name` lives under `runs_dir` (a local path or an fsspec URL)."""
    if not name or name.strip("/") != name or ".." in name.split("/"):
        raise RunDirectoryError(f"--name: expected a relative run name such as fwi/quickstart, got {name!r}")
    return join(runs_dir, name)


def filesystem(path: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem of `path` and the path as that filesystem spells it."""
    return url_to_fs(str(path))


def run_directory(trainer: Any) -> str:
    """The directory the run writes its files to, computed on this rank without any collective call.

    `trainer.log_dir` broadcasts from rank zero, so reading it on one rank only (for example under
    `if trainer.is_global_zero`) hangs a multi-process run. This is the same answer without the
    broadcast: the first logger's directory (TensorBoard, CSV), else its save_dir, else the trainer's
    `default_root_dir`. Under `mtl` the logger's version is fixed, so every rank gets the same path;
    with a user's own logger that numbers versions, rank zero's answer is the one to write to. For a
    run whose runs_dir is remote, this is the local cache that `RemoteRunSync` uploads.
    """
    loggers = list(getattr(trainer, "loggers", None) or [])
    if loggers:
        logger = loggers[0]
        directory = getattr(logger, "log_dir", None) or getattr(logger, "save_dir", None)
        if directory:
            return _without_trailing_slash(str(directory))
    return _without_trailing_slash(str(trainer.default_root_dir))


def _without_trailing_slash(path: str) -> str:
    # TensorBoardLogger(version="") spells its directory "<save_dir>/<name>/".
    return path.rstrip("/") or path


def existing_run_files(run_dir: str) -> list[str]:
    """The files in `run_dir` that belong to a run (empty when there is no run there)."""
    fs, root = filesystem(run_dir)
    fs.invalidate_cache()  # an object store's listing may be cached from before this process's writes
    found: list[str] = []
    for pattern in RUN_FILE_PATTERNS:
        found += fs.glob(join(root, pattern))
    return sorted(set(found))


@dataclass(frozen=True)
class FreshRun:
    """What `check_fresh_run` did: where the old run went (if it was moved aside)."""

    archived_to: str | None = None


def check_fresh_run(run_dir: str, name: str, overwrite: bool) -> FreshRun:
    """Refuse a fresh fit into `run_dir` when a run lives there, or move that run aside on request.

    Called once, on rank zero, before the trainer writes anything.
    """
    files = existing_run_files(run_dir)
    if not files:
        return FreshRun()
    if not overwrite:
        shown = ", ".join(_relative(f, run_dir) for f in files[:4]) + (" ..." if len(files) > 4 else "")
        raise RunDirectoryError(
            f"{run_dir}: a run named {name!r} is already there ({shown}). Resume it with "
            f"--ckpt_path last, start another run with --name {name}-2 (or any new name), or move "
            "the old run aside and start afresh with --overwrite true"
        )
    archived = archive_run(run_dir)
    return FreshRun(archived_to=archived)


def archive_run(run_dir: str, now: float | None = None) -> str:
    """Move everything in `run_dir` to the sibling `<run_dir>.archived-<UTC time>`; return that path."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    fs, root = filesystem(run_dir)
    target = f"{root.rstrip('/')}.archived-{stamp}"
    suffix = 1
    while fs.exists(target):
        suffix += 1
        target = f"{root.rstrip('/')}.archived-{stamp}-{suffix}"
    if not is_url(run_dir):
        fs.mv(root, target, recursive=True)  # a rename
        return target
    # An object store has no directories to rename: copy every object, then delete the originals
    # (a kill in between leaves both copies, never neither).
    fs.invalidate_cache()
    objects = fs.find(root)
    for source in objects:
        fs.copy(source, target + source[len(root.rstrip("/")) :])
    fs.rm(objects)
    fs.invalidate_cache()
    return spelled_like(run_dir, target)


def remove_stale_temporaries(run_dir: str) -> list[str]:
    """Delete the temporary checkpoint files an interrupted atomic write left; return what went."""
    fs, root = filesystem(run_dir)
    stale: list[str] = []
    for pattern in STALE_TEMPORARY_PATTERNS:
        stale += fs.glob(join(root, pattern))
    for path in stale:
        fs.rm(path)
    return stale


def _relative(path: str, run_dir: str) -> str:
    root = filesystem(run_dir)[1].rstrip("/")
    return path[len(root) + 1 :] if path.startswith(root + "/") else path


def spelled_like(original: str, path: str) -> str:
    """`path` as the filesystem spells it (bucket/key), with the scheme of `original` if it had one."""
    if is_url(original):
        scheme = str(original).split("://", 1)[0]
        return f"{scheme}://{path}"
    return path
