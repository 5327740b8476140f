"""RoofDataModule: RID, Roofline and AIRS in sequential phases (the users' order) or mixed in one epoch.

Sequential mode trains `epochs_per_phase` epochs on each dataset of `phases` in turn (RID, then
Roofline, then AIRS), cycling afterwards; the dataloader is rebuilt every epoch (the recipes set
`trainer.reload_dataloaders_every_n_epochs: 1`), while the model and optimizer stay the same objects,
so a phase transition never resets weights or optimizer state. Mixed mode draws batches from all
datasets in one epoch, each batch from a single dataset (their labels and sizes differ), in random order;
under DDP its batch sampler gives each process its own share of the batches, with or without
`trainer.use_distributed_sampler` (see `HomogeneousBatchSampler`).

Validation always covers every dataset (one val dataloader each, in `phases` order).

The knobs StagedScaling climbs are plain attributes read when the dataloaders are built:
`max_samples` (per dataset and epoch; AIRS: random crops), `batch_size`, `num_workers`, `image_size`.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch.utils.data import (
    BatchSampler,
    ConcatDataset,
    DataLoader,
    Dataset,
    DistributedSampler,
    Sampler,
    Subset,
)

from common.data import BaseDataModule
from common.errors import UserInputError
from common.resumable_loader import EpochRandomSampler
from roofnet.data.datasets import (
    DATASET_NAMES,
    AIRSDataset,
    PredictionWindows,
    RIDDataset,
    RooflineDataset,
    list_prediction_inputs,
)
from roofnet.data.formats import airs_split_labelled
from roofnet.data.synthetic import SyntheticLayout, write_synthetic

DEFAULT_ROOT = ".cache/mtl/roofnet/synthetic"


class HomogeneousBatchSampler(BatchSampler):
    """Batches over a ConcatDataset where each batch comes from one member dataset, in shuffled order.

    Under DDP every process takes every `num_replicas`-th batch from `rank` on; the same seed gives
    all processes the same order, so their batches are disjoint. The last `len % num_replicas` batches
    of an epoch are left out (every process must run as many steps); no batch is repeated to pad.

    Rank and world size come from `num_replicas` / `rank`, or from `sampler` when it is a
    `DistributedSampler`: with `trainer.use_distributed_sampler` true (Lightning's default) Lightning
    re-creates a `BatchSampler` subclass with its `sampler` argument replaced by a DistributedSampler,
    so mixed mode splits its batches correctly whichever way the Trainer is set. The indices of
    `sampler` are never used: a batch must be drawn from one dataset.

    Args:
        sizes: lengths of the ConcatDataset's members, in order.
        batch_size: samples per batch (each dataset's last batch may be smaller).
        shuffle: shuffle samples within each dataset and the order of the batches.
        seed: shuffling seed; the order of an epoch depends on seed and epoch only (`set_epoch`,
            which `ResumableLoader` calls with the epoch Lightning gave `sampler`), so a run resumed
            mid-epoch replays it.
        num_replicas: processes sharing the batches.
        rank: this process's rank among them.
        sampler: a `DistributedSampler` (as Lightning injects) to take `num_replicas` and `rank` from;
            any sampler given is where Lightning's `set_epoch` lands, its indices are not used.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        sampler: Sampler | None = None,
    ) -> None:
        if isinstance(sampler, DistributedSampler):
            if num_replicas != 1 and (num_replicas, rank) != (sampler.num_replicas, sampler.rank):
                raise ValueError(
                    f"HomogeneousBatchSampler: rank {rank} of {num_replicas} processes disagrees with the "
                    f"DistributedSampler's rank {sampler.rank} of {sampler.num_replicas}"
                )
            num_replicas, rank = sampler.num_replicas, sampler.rank
        if not 0 <= rank < num_replicas:
            raise ValueError(f"HomogeneousBatchSampler: rank {rank} is not in [0, {num_replicas})")
        self.sizes, self.batch_size, self.shuffle, self.seed = list(sizes), batch_size, shuffle, seed
        self.num_replicas, self.rank, self.sampler = num_replicas, rank, sampler
        self.drop_last = False  # BatchSampler's attribute: each dataset's last partial batch is kept
        self.epoch = 0

    def _batches(self) -> list[list[int]]:
        rng = random.Random(self.seed + self.epoch)
        batches, offset = [], 0
        for size in self.sizes:
            indices = list(range(offset, offset + size))
            if self.shuffle:
                rng.shuffle(indices)
            batches += [indices[i : i + self.batch_size] for i in range(0, size, self.batch_size)]
            offset += size
        if self.shuffle:
            rng.shuffle(batches)
        usable = len(batches) - len(batches) % self.num_replicas  # every process runs as many steps
        return batches[self.rank : usable : self.num_replicas]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        return sum(-(-size // self.batch_size) for size in self.sizes) // self.num_replicas


class RoofDataModule(BaseDataModule):
    """The three roof datasets in their real layouts, with an embedded synthetic default.

    The loaders come from `BaseDataModule.make_loader` (resumable training order, worker policy);
    `fitted_statistics()` hands the task the image mean/std and RID's class shares once, at fit.

    Args:
        root: holds rid/, roofline/ and airs/ (default `.cache/mtl/roofnet/synthetic` under the working
            directory); when none of the used datasets is there and `synthetic_samples` > 0, synthetic
            data is written there first.
        rid_root: RID root if not `<root>/rid`.
        roofline_root: folder of imdb.mat if not `<root>/roofline`.
        airs_root: AIRS root if not `<root>/airs`.
        phases: datasets used, in training order (any of "rid", "roofline", "airs").
        mode: "sequential" (one dataset per phase) or "mixed" (all datasets every epoch).
        epochs_per_phase: epochs on each dataset before the next one (sequential mode).
        max_samples: training samples per dataset and epoch (None: all; AIRS: number of random crops,
            default `airs_crops`).
        max_val_samples: validation (and test) samples per dataset (None: all).
        batch_size: samples per batch.
        num_workers: DataLoader worker processes.
        image_size: side length of training/validation samples (RID and Roofline are resized,
            AIRS windows are cut at this size).
        rid_split: which of RID's five released splits (1..5).
        rid_segments_csv: RID's segments_reviewed.csv for the pitch label; "auto" uses
            `<RID folder>/segments_reviewed.csv` when present, null turns the pitch label off.
        roofline_val_fraction: share of Roofline instances held out for validation.
        airs_crops: random AIRS crops per epoch when max_samples is None.
        augment: random quarter turns and mirrors for training (azimuth classes remapped).
        synthetic_samples: RID and Roofline samples the synthetic generator writes into an empty
            `root` (0: never write; real data only).
        synthetic_image_size: side of synthetic RID and Roofline images.
        synthetic_airs_tile_size: side of synthetic AIRS tiles (real ones: 10000).
        predict_path: image file or folder for `mtl predict`.
        predict_window: window side for prediction (AIRS tiles are cut into overlapping windows).
        predict_overlap: pixels shared by neighbouring prediction windows.
        predict_gsd: metres per pixel the model was trained at (RID about 0.10, AIRS 0.075): inputs are
            resampled to it window by window and the outputs back to the input's grid; None predicts at
            each input's own resolution (warned about when an input has no usable pixel size).
        seed: seed of the synthetic data, the training order and the mixed-mode batch order.
    """

    def __init__(
        self,
        root: str = DEFAULT_ROOT,
        rid_root: str | None = None,
        roofline_root: str | None = None,
        airs_root: str | None = None,
        phases: list[str] | None = None,
        mode: str = "sequential",
        epochs_per_phase: int = 1,
        max_samples: int | None = None,
        max_val_samples: int | None = None,
        batch_size: int = 2,
        num_workers: int = 0,
        image_size: int = 512,
        rid_split: int = 1,
        rid_segments_csv: str | None = "auto",
        roofline_val_fraction: float = 0.15,
        airs_crops: int = 100,
        augment: bool = True,
        synthetic_samples: int = 32,
        synthetic_image_size: int = 128,
        synthetic_airs_tile_size: int = 1024,
        predict_path: str | None = None,
        predict_window: int = 512,
        predict_overlap: int = 64,
        predict_gsd: float | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers, max_samples, max_val_samples, synthetic_samples, seed)
        self.phases = list(phases or DATASET_NAMES)
        unknown = [p for p in self.phases if p not in DATASET_NAMES]
        if unknown or not self.phases:
            raise ValueError(
                f"RoofDataModule.phases: unknown {unknown}; expected a list from {DATASET_NAMES}"
            )
        if mode not in ("sequential", "mixed"):
            raise ValueError(f"RoofDataModule.mode: expected 'sequential' or 'mixed', got {mode!r}")
        if epochs_per_phase < 1:
            raise ValueError(f"RoofDataModule.epochs_per_phase must be >= 1, got {epochs_per_phase}")
        self.root = Path(root)
        self.roots = {
            "rid": Path(rid_root) if rid_root else self.root / "rid",
            "roofline": Path(roofline_root) if roofline_root else self.root / "roofline",
            "airs": Path(airs_root) if airs_root else self.root / "airs",
        }
        self.mode, self.epochs_per_phase = mode, epochs_per_phase
        self.image_size = image_size
        self.rid_split, self.roofline_val_fraction, self.airs_crops = (
            rid_split,
            roofline_val_fraction,
            airs_crops,
        )
        self.augment = augment
        self.synthetic_image_size = synthetic_image_size
        self.synthetic_airs_tile_size = synthetic_airs_tile_size
        self.predict_path, self.predict_window, self.predict_overlap = (
            predict_path,
            predict_window,
            predict_overlap,
        )
        self.predict_gsd = predict_gsd
        self.rid_segments_csv = rid_segments_csv
        self.predict_dataset: PredictionWindows | None = None
        self._statistics: dict[str, torch.Tensor] = {}

    # -- data on disk ------------------------------------------------------------------------------------
    def prepare_synthetic_data(self) -> None:
        """Write the synthetic RID, Roofline and AIRS layouts into `root` when none of the datasets used
        is there yet (a root holding real data is never written into)."""
        if any(self.roots[name].exists() for name in self.phases):
            return
        layout = SyntheticLayout(
            samples=self.synthetic_samples,
            rid_size=self.synthetic_image_size,
            roofline_size=self.synthetic_image_size,
            airs_tile_size=self.synthetic_airs_tile_size,
            seed=self.seed,
        )
        write_synthetic(self.root, layout)

    def dataset(self, name: str, train: bool, test: bool = False) -> Dataset:
        """One dataset at the current `image_size`: the training split (with augmentation), validation,
        or with `test` the test split: RID's shared test split, AIRS's test/ tiles when they carry
        labels (else its validation tiles, with a warning), Roofline's validation instances (Roofline
        ships no split)."""
        root, size = self.roots[name], self.image_size
        augment = self.augment and train
        if name == "rid":
            split = "train" if train else "test" if test else "val"
            return RIDDataset(root, split, self.rid_split, size, augment, self.rid_segments_csv)
        if name == "roofline":
            split = "train" if train else "val"
            return RooflineDataset(root, split, self.roofline_val_fraction, size, augment)
        if train:
            return AIRSDataset(root, "train", size, True, self.max_samples or self.airs_crops, augment)
        if test:
            if airs_split_labelled(root, "test"):
                return AIRSDataset(root, "test", size)
            warnings.warn(
                f"{root / 'test' / 'label'}: no labels for every test tile; testing AIRS on val/",
                stacklevel=2,
            )
        return AIRSDataset(root, "val", size)

    # -- phases --------------------------------------------------------------------------------------------
    def phase_of_epoch(self, epoch: int) -> str:
        return self.phases[(epoch // self.epochs_per_phase) % len(self.phases)]

    @property
    def current_epoch(self) -> int:
        trainer = getattr(self, "trainer", None)
        return trainer.current_epoch if trainer is not None else 0

    @property
    def current_phase(self) -> str:
        """The dataset trained on this epoch ("mixed" in mixed mode)."""
        return "mixed" if self.mode == "mixed" else self.phase_of_epoch(self.current_epoch)

    # -- loaders -------------------------------------------------------------------------------------------
    def _limited(self, dataset: Dataset, limit: int | None, spread: bool = False) -> Dataset:
        """The first `limit` samples, or with `spread` every k-th (AIRS windows: not just the top rows)."""
        if not limit or limit >= len(dataset):
            return dataset
        step = len(dataset) // limit if spread else 1
        return Subset(dataset, range(0, step * limit, step))

    def _train_loader(self, dataset: Dataset) -> DataLoader:
        # a last batch of one sample would reach BatchNorm alone; tiny datasets keep their one batch
        self.drop_last_train = len(dataset) > self.batch_size
        return self.make_loader(dataset, "train", sampler=EpochRandomSampler(dataset, self.seed))

    def train_dataloader(self) -> DataLoader:
        if self.mode == "sequential":
            dataset = self._limited(self.dataset(self.current_phase, train=True), self.max_samples)
            return self._train_loader(dataset)
        parts = [self._limited(self.dataset(name, train=True), self.max_samples) for name in self.phases]
        trainer = getattr(self, "trainer", None)
        dataset = ConcatDataset(parts)
        sampler = HomogeneousBatchSampler(
            [len(p) for p in parts],
            self.batch_size,
            seed=self.seed,
            num_replicas=trainer.world_size if trainer is not None else 1,
            rank=trainer.global_rank if trainer is not None else 0,
            sampler=EpochRandomSampler(dataset),  # carries Lightning's epoch (DDP: a DistributedSampler)
        )
        return self.make_loader(dataset, "train", batch_sampler=sampler)

    def val_dataloader(self) -> list[DataLoader]:
        return [
            self.make_loader(
                self._limited(self.dataset(name, train=False), self.max_val_samples, spread=True), "val"
            )
            for name in self.phases
        ]

    def test_dataloader(self) -> list[DataLoader]:
        return [
            self.make_loader(
                self._limited(self.dataset(name, False, test=True), self.max_val_samples, True), "test"
            )
            for name in self.phases
        ]

    def predict_dataloader(self) -> DataLoader:
        if not self.predict_path:
            raise UserInputError(
                "data.predict_path: set --data.predict_path to an image file or folder to predict"
            )
        files = list_prediction_inputs(self.predict_path)
        self.predict_dataset = PredictionWindows(
            files, self.predict_window, self.predict_overlap, self.predict_gsd
        )
        return self.make_loader(self.predict_dataset, "predict")

    def image_statistics(self, samples: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and std `(3,)` of up to `samples` training images per dataset."""
        images = []
        for name in self.phases:
            dataset = self.dataset(name, train=name != "airs")
            for index in range(min(samples, len(dataset))):
                images.append(dataset[index]["image"].flatten(1))
        pixels = torch.cat(images, dim=1)
        return pixels.mean(1), pixels.std(1).clamp_min(1e-3)

    def label_shares(self, samples: int = 64) -> dict[str, torch.Tensor]:
        """Share of each class among the pixels of up to `samples` RID training masks (no augmentation):
        `segments` (18,) and `superstructures` (9,); empty without RID."""
        if "rid" not in self.phases:
            return {}
        dataset = RIDDataset(
            self.roots["rid"], "train", self.rid_split, self.image_size, augment=False, segments_csv=None
        )
        counts = {"segments": torch.zeros(18), "superstructures": torch.zeros(9)}
        for index in range(min(samples, len(dataset))):
            sample = dataset[index]
            for key, count in counts.items():
                count += torch.bincount(sample[key].flatten(), minlength=len(count)).float()
        return {key: count / count.sum() for key, count in counts.items()}

    def setup(self, stage: str | None = None) -> None:
        """At fit: the image statistics and RID's class shares of the training data, for the task."""
        if stage == "fit" and not self._statistics:
            mean, std = self.image_statistics()
            self._statistics = {"image_mean": mean, "image_std": std}
            self._statistics.update({f"{key}_shares": share for key, share in self.label_shares().items()})

    def fitted_statistics(self) -> dict[str, torch.Tensor]:
        """`image_mean`, `image_std` `(3,)` and, with RID, `segments_shares` `(18,)` and
        `superstructures_shares` `(9,)` (the task turns the shares into class weights)."""
        return dict(self._statistics)

    def data_summary(self) -> str | None:
        """Markdown: where each dataset was read from and the mode."""
        rows = [f"| {name} | {self.roots[name]} |" for name in self.phases]
        return "\n".join(
            [f"roofnet, {self.mode} mode, phases {self.phases}", "", "| dataset | root |", "|---|---|", *rows]
        )
