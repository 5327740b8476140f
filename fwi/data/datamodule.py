"""FwiDataModule: OpenFWI / Kaggle `train_samples` roots, split by file, memory-mapped loaders.

With `generate_samples > 0` it first writes (or finishes writing) a synthetic set of
`generate_family` into `root` in the OpenFWI layout, so the quickstart runs on a fresh machine and the
real loader is what reads it. Knobs that StagedScaling may change (`batch_size`, `num_workers`,
`max_samples`) are read when the dataloaders are built.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader

from common.resumable_loader import EpochRandomSampler, ResumableLoader
from fwi.data.datasets import (
    MIRROR_MIDDLE_MODES,
    BatchedReads,
    KaggleTestDataset,
    ShotGatherDataset,
    collate_skipping_bad,
)
from fwi.data.families import SAMPLES_PER_FILE
from fwi.data.formats import FilePair, discover_pairs, kaggle_test_files
from fwi.data.normalization import SEISMIC_LIMIT_MODES, openfwi_seismic_limits, seismic_limits
from fwi.data.splits import SPLIT_MODES, make_split

log = logging.getLogger(__name__)
BATCH_RING = 4  # shared-memory batches each worker reuses: prefetch_factor (2) + 2, see SharedBatchRing


def _check_choice(field: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"FwiDataModule.{field}: expected one of {', '.join(choices)}, got {value!r}")


class FwiDataModule(LightningDataModule):
    """Seismic gathers and velocity maps from an OpenFWI-layout root.

    Args:
        root: dataset root with family folders (`FlatVel-A/`, Kaggle's `FlatVel_A/`), or one family's
            folder when `family` is given. Relative paths are relative to the working directory.
        family: the family of a single-family root (None: the root holds family folders).
        split: "files", "kfold", "leave_family_out" or "openfwi" (OpenFWI's official file lists; see
            `fwi.data.splits`).
        val_fraction: fraction of each family's files for validation (split "files").
        test_fraction: fraction of each family's files for test (split "files").
        folds: number of folds (split "kfold").
        fold: which fold is validation, 0-based (split "kfold").
        holdout_family: the family left out for validation (split "leave_family_out").
        batch_size: samples per batch.
        num_workers: DataLoader worker processes.
        max_samples: cap on training samples, spread evenly over files (None: all).
        max_val_samples: cap on validation/test samples (None: all).
        mirror_probability: chance of the mirror augmentation per training sample.
        mirror_middle: "shift" or "keep": how the mirrored middle source is handled (see docs/fwi.md).
        on_bad: "error" (default) stops at the first bad file or sample naming it; "skip" logs,
            counts and leaves bad files and samples out.
        seismic_limits: "estimate" (raw min/max of the training files) or "openfwi" (OpenFWI's fixed
            per-family constants, `fwi.data.normalization.OPENFWI_SEISMIC_LIMITS`: what OpenFWI's
            models expect and what its published numbers were measured with).
        stats_samples_per_file: samples per training file read for the estimated limits (None: all).
        time_decimation: keep every k-th of the 1000 time steps after an anti-aliasing low-pass
            (`fwi.data.decimation`, scipy.signal.decimate's FIR). The task applies it, to training
            batches and to every input at inference alike, from a buffer that checkpoints carry; set
            the model's input length to match (InversionNet: `model_args.n_time: ceil(1000 / k)`).
            `mtl fwi check --decimation k` reports the share of energy above the new Nyquist.
        drop_last: drop the last incomplete training batch (as OpenFWI's train.py: a final batch of one
            sample makes BatchNorm at InversionNet's 1x1 bottleneck raise). Kept when the training
            set is smaller than one batch.
        test_dir: Kaggle test directory of `<oid>.npy` files, for `predict`.
        generate_family: family of the synthetic set written when `generate_samples > 0`.
        generate_samples: write this many synthetic samples into `root` first (0: never generate).
        generate_samples_per_file: samples per generated file (OpenFWI: 500).
        generate_seed: seed of the synthetic set.
        generate_threads: CPU threads for the generator (None: torch's default).
    """

    def __init__(
        self,
        root: str = ".cache/mtl/fwi/openfwi",
        family: str | None = None,
        split: str = "files",
        val_fraction: float = 0.2,
        test_fraction: float = 0.0,
        folds: int = 5,
        fold: int = 0,
        holdout_family: str | None = None,
        batch_size: int = 32,
        num_workers: int = 2,
        max_samples: int | None = None,
        max_val_samples: int | None = None,
        mirror_probability: float = 0.0,
        mirror_middle: str = "shift",
        on_bad: str = "error",
        seismic_limits: str = "estimate",
        stats_samples_per_file: int | None = 64,
        time_decimation: int = 1,
        drop_last: bool = True,
        test_dir: str | None = None,
        generate_family: str = "FlatVel-A",
        generate_samples: int = 0,
        generate_samples_per_file: int = SAMPLES_PER_FILE,
        generate_seed: int = 0,
        generate_threads: int | None = None,
    ) -> None:
        super().__init__()
        _check_choice("split", split, SPLIT_MODES)
        _check_choice("mirror_middle", mirror_middle, MIRROR_MIDDLE_MODES)
        _check_choice("on_bad", on_bad, ("error", "skip"))
        _check_choice("seismic_limits", seismic_limits, SEISMIC_LIMIT_MODES)
        if time_decimation < 1:
            raise ValueError(
                f"FwiDataModule.time_decimation: expected an integer >= 1, got {time_decimation}"
            )
        if split == "leave_family_out" and not holdout_family:
            raise ValueError(
                "FwiDataModule.holdout_family: split leave_family_out needs a family, e.g. CurveFault-A"
            )
        self.save_hyperparameters()
        self.root = root
        self.family = family
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.max_samples = max_samples
        self.max_val_samples = max_val_samples
        self.splits: dict[str, list[FilePair]] = {}
        self.seismic_low: np.ndarray | None = None
        self.seismic_high: np.ndarray | None = None
        self.float16_inputs = False
        self.time_decimation = time_decimation

    def prepare_data(self) -> None:
        if self.hparams.generate_samples > 0:
            from fwi.data.generator import generate

            log.info(
                "fwi: writing/finishing %d synthetic %s samples in %s",
                self.hparams.generate_samples,
                self.hparams.generate_family,
                self.root,
            )
            generate(
                self.hparams.generate_family,
                self.hparams.generate_samples,
                self.root,
                seed=self.hparams.generate_seed,
                samples_per_file=self.hparams.generate_samples_per_file,
                threads=self.hparams.generate_threads,
            )

    def setup(self, stage: str | None = None) -> None:
        if stage == "predict":
            return
        if self.splits:
            return
        h = self.hparams
        pairs = discover_pairs(Path(self.root), family=self.family, on_bad=h.on_bad)
        self.splits = make_split(
            pairs, h.split, h.val_fraction, h.test_fraction, h.folds, h.fold, h.holdout_family
        )
        if not self.splits["train"]:
            raise ValueError(f"{self.root}: the {h.split} split left no training files ({len(pairs)} pairs)")
        if not self.splits["val"]:
            log.warning("fwi: %s has too few files per family for a validation split by file", self.root)
        if h.seismic_limits == "openfwi":
            self.seismic_low, self.seismic_high = openfwi_seismic_limits()
        else:
            self.seismic_low, self.seismic_high = seismic_limits(
                self.splits["train"], h.stats_samples_per_file
            )
        self.float16_inputs = all(p.seismic_dtype == "float16" for p in self.splits["train"])

    def _dataset(self, split: str, train: bool) -> ShotGatherDataset:
        # Workers reuse shared-memory batches (DataLoader's default prefetch_factor 2, + 2).
        return ShotGatherDataset(
            self.splits[split],
            batch_ring=BATCH_RING,
            max_samples=self.max_samples if train else self.max_val_samples,
            mirror_probability=self.hparams.mirror_probability if train else 0.0,
            mirror_middle=self.hparams.mirror_middle,
            on_bad=self.hparams.on_bad,
        )

    def _loader(self, dataset, shuffle: bool, drop_last: bool = False) -> DataLoader:
        reads = BatchedReads(dataset)
        if drop_last and len(reads) < self.batch_size:
            log.warning(
                "fwi: %d training samples are fewer than one batch of %d: the incomplete batch is kept",
                len(reads),
                self.batch_size,
            )
            drop_last = False
        return ResumableLoader(
            reads,
            batch_size=self.batch_size,
            sampler=EpochRandomSampler(reads) if shuffle else None,
            num_workers=self.num_workers,
            collate_fn=collate_skipping_bad,
            persistent_workers=False,
            drop_last=drop_last,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(
            self._dataset("train", train=True), shuffle=True, drop_last=self.hparams.drop_last
        )

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("val", train=False), shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(
            self._dataset("test" if self.splits["test"] else "val", train=False), shuffle=False
        )

    def predict_dataloader(self) -> DataLoader:
        if not self.hparams.test_dir:
            raise ValueError(
                "FwiDataModule.test_dir: predict needs the Kaggle test directory of <oid>.npy files"
            )
        dataset = KaggleTestDataset(kaggle_test_files(self.hparams.test_dir))
        return DataLoader(dataset, batch_size=self.batch_size, num_workers=self.num_workers)
