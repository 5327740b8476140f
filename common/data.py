"""BaseDataModule: the LightningDataModule every domain's datamodule derives from.

A datamodule fills its datasets (in `setup`) and, where it has them, two hooks; the base owns the rest:

- The loader policy, in one factory `make_loader(dataset, stage, ...)`:
    - training: a `ResumableLoader` over an `EpochRandomSampler` (or the sampler / batch sampler given), so
      a mid-epoch checkpoint resumes inside the epoch (see `common.resumable_loader`); `drop_last` when the
      class sets `drop_last_train` (a model with BatchNorm at a 1x1 bottleneck cannot take a last batch of
      one sample);
    - validation, test, predict: a plain `DataLoader` in file order;
    - workers: `num_workers` processes, kept alive between epochs (`persistent_workers`) for the loaders
      that run every epoch (train, val); page-locked batches (`pin_memory`) only when the run is on CUDA;
      worker seeds come from Lightning (`seed_everything(workers=True)`, which `mtl` calls). With
      `worker_type="thread"` the `num_workers` workers are threads of the training process instead
      (`common.thread_workers`), for datasets that are thread-safe and whose batches are mostly
      copies out of memory maps; a domain offers the knob only for such datasets.
- The knob vocabulary, the same in every domain: `batch_size`, `num_workers`, `max_samples` (cap on
  training samples), `max_val_samples` (cap on validation/test samples), `synthetic_samples` (size of the
  embedded synthetic dataset, 0 = never write one), `seed` (of the synthetic data and of sample subsets).
- StagedScaling's contract: the knobs it may change (`batch_size`, `num_workers`, `max_samples`, a crop or
  image size, ...) are plain attributes of the datamodule, and the datamodule reads them when it builds
  its dataloaders (`train_dataloader()`), never earlier, so each trial stage gets new loaders.
- The embedded synthetic default, one hook: with `synthetic_samples > 0`, `prepare_data` (local rank 0
  only) calls `prepare_synthetic_data()`, which writes, or finishes writing, the domain's synthetic
  dataset in the real on-disk format into the configured root, and refuses a root that holds other data.
- The statistics hand-off, one hook: `fitted_statistics()` returns what was fitted on the training split
  (normalisation, class shares, ...) as a dict of arrays, after `setup`; `common.task.BaseTask`
  asks for it once and keeps it in buffers of the same names, so checkpoints carry it.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset, Sampler

from common.errors import UserInputError
from common.resumable_loader import EpochRandomSampler, ResumableLoader
from common.thread_workers import ThreadedDataLoader

KNOBS = ("batch_size", "num_workers", "max_samples", "max_val_samples", "synthetic_samples", "seed")
WORKER_TYPES = ("process", "thread")
PERSISTENT_STAGES = ("train", "val")


class BaseDataModule(LightningDataModule):
    """Base of every domain's datamodule: the loader policy and the shared knobs (module docstring).

    Args:
        batch_size: samples per batch.
        num_workers: DataLoader worker processes (0: load in the training process).
        max_samples: use at most this many training samples (None: all).
        max_val_samples: use at most this many validation/test samples (None: all).
        synthetic_samples: write this many synthetic samples into the root first when it has none
            (0: never generate; an empty root is an error).
        seed: seed of the synthetic data and of sample subsets.
        worker_type: "process" (DataLoader worker processes) or "thread" (`num_workers` threads of
            the training process; see the module docstring).
    """

    drop_last_train: bool = False

    def __init__(
        self,
        batch_size: int = 32,
        num_workers: int = 0,
        max_samples: int | None = None,
        max_val_samples: int | None = None,
        synthetic_samples: int = 0,
        seed: int = 0,
        worker_type: str = "process",
    ) -> None:
        super().__init__()
        if worker_type not in WORKER_TYPES:
            raise UserInputError(
                f"data.worker_type: expected one of {', '.join(WORKER_TYPES)}, got {worker_type!r}"
            )
        if batch_size < 1:
            raise UserInputError(f"data.batch_size: expected a positive number, got {batch_size}")
        if num_workers < 0:
            raise UserInputError(f"data.num_workers: expected 0 or more, got {num_workers}")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.max_samples = max_samples
        self.max_val_samples = max_val_samples
        self.synthetic_samples = synthetic_samples
        self.seed = seed
        self.worker_type = worker_type

    # -- hooks a datamodule fills ---------------------------------------------------------------------
    def prepare_synthetic_data(self) -> None:
        """Write (or finish writing) `synthetic_samples` synthetic samples into the root."""
        raise UserInputError(
            f"data.synthetic_samples: {type(self).__name__} has no synthetic dataset; set it to 0"
        )

    def fitted_statistics(self) -> dict[str, Any]:
        """Statistics fitted on the training split, by the task buffer names they fill (after setup)."""
        return {}

    def data_summary(self) -> str | None:
        """A markdown summary of the splits (samples, classes, what was left out) for TensorBoard."""
        return None

    # -- what the base does ----------------------------------------------------------------------------
    def prepare_data(self) -> None:
        if self.synthetic_samples > 0:
            self.prepare_synthetic_data()

    def make_loader(
        self,
        dataset: Dataset,
        stage: str,
        *,
        sampler: Sampler | None = None,
        batch_sampler: Sampler | None = None,
        collate_fn: Any = None,
        batch_size: int | None = None,
    ) -> DataLoader:
        """The DataLoader of one stage ("train", "val", "test", "predict") under the platform's policy."""
        threads = self.worker_threads
        processes = 0 if threads else self.num_workers
        common: dict[str, Any] = {
            "num_workers": processes,
            "worker_threads": threads,
            "persistent_workers": processes > 0 and stage in PERSISTENT_STAGES,
            "pin_memory": self._on_cuda(),
        }
        if collate_fn is not None:
            common["collate_fn"] = collate_fn
        if batch_sampler is not None:
            batching: dict[str, Any] = {"batch_sampler": batch_sampler}
        else:
            batching = {"batch_size": batch_size or self.batch_size}
        if stage != "train":
            return ThreadedDataLoader(dataset, sampler=sampler, **batching, **common)
        if batch_sampler is None:
            batching["sampler"] = sampler if sampler is not None else EpochRandomSampler(dataset)
            batching["drop_last"] = self.drop_last_train
        return ResumableLoader(dataset, **batching, **common)

    @property
    def worker_threads(self) -> int:
        """Thread workers the loaders get (0 when the workers are processes)."""
        return self.num_workers if self.worker_type == "thread" else 0

    def _on_cuda(self) -> bool:
        strategy = getattr(self.trainer, "strategy", None) if self.trainer is not None else None
        return strategy is not None and strategy.root_device.type == "cuda"
