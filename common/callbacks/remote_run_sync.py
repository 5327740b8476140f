"""RemoteRunSync: upload a remote run's local cache (event files, config, reports, export) to its URL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn

from common.run_directory import join
from common.storage import write_bytes_atomically


class RemoteRunSync(Callback):
    """Copies new or changed files of `cache_dir` to `remote_dir`, on rank zero.

    TensorBoard's writer appends to a local file, so a run whose runs_dir is a URL logs into a local
    cache (`common.storage.local_cache`); this uploads it whenever a checkpoint is saved, at the end of
    each fit/validate/test/predict, and when training raises, so the bucket holds the curves up to the
    newest checkpoint. Event file names carry host, process id and time, so a resumed run on another
    machine adds its own file beside the earlier ones and TensorBoard shows one continuous curve.
    Checkpoints do not pass through here: Lightning writes them to the URL directly.
    """

    def __init__(self, cache_dir: str | Path, remote_dir: str) -> None:
        self.cache_dir = Path(cache_dir)
        self.remote_dir = remote_dir
        self._uploaded: dict[str, tuple[int, int]] = {}

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict) -> None:
        self.sync(trainer)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self.sync(trainer)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.sync(trainer)

    @rank_zero_only
    def sync(self, trainer: Trainer | None = None) -> list[str]:
        """Upload what changed since the last call; return the relative paths uploaded."""
        for logger in getattr(trainer, "loggers", None) or []:
            _flush(logger)
        if not self.cache_dir.is_dir():
            return []
        uploaded = []
        for path in sorted(p for p in self.cache_dir.rglob("*") if p.is_file()):
            relative = path.relative_to(self.cache_dir).as_posix()
            if path.name.endswith(".tmp"):
                continue
            stat = path.stat()
            signature = (stat.st_size, stat.st_mtime_ns)
            if self._uploaded.get(relative) == signature:
                continue
            try:
                write_bytes_atomically(path.read_bytes(), join(self.remote_dir, relative))
            except Exception as error:  # a network blip must not end the run: the next sync retries
                rank_zero_warn(
                    f"RemoteRunSync: could not upload {relative} to {self.remote_dir} "
                    f"({type(error).__name__}: {error}); it stays in {self.cache_dir} and is retried "
                    "at the next checkpoint"
                )
                continue
            self._uploaded[relative] = signature
            uploaded.append(relative)
        return uploaded


def _flush(logger: Any) -> None:
    """Write out what a TensorBoard/tensorboardX writer (or any logger with `flush`) still buffers."""
    flush = getattr(getattr(logger, "experiment", None), "flush", None)
    if callable(flush):
        flush()
