"""FwiDataModule: OpenFWI / Kaggle `train_samples` roots, split by file, memory-mapped loaders.

A `common.data.BaseDataModule`: the loader policy (resumable training order, workers, pinning,
`drop_last` for training) and the knob vocabulary are the platform's. With `synthetic_samples > 0` it
first writes (or finishes writing) a synthetic set of `synthetic_family` into `root` in the OpenFWI
layout, so the quickstart runs on a fresh machine and the real loader is what reads it. Knobs that
StagedScaling may change (`batch_size`, `num_workers`, `max_samples`) are read when the dataloaders are
built. The seismic limits, the float16 flag and the time decimation reach the task through
`fitted_statistics()`, into buffers of the same names.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

from common.data import BaseDataModule
from common.errors import UserInputError
from fwi.data.datasets import (
    MIRROR_MIDDLE_MODES,
    BatchedReads,
    KaggleTestDataset,
    ShotGatherDataset,
    collate_skipping_bad,
    thread_batch_ring,
)
from fwi.data.families import SAMPLES_PER_FILE
from fwi.data.formats import FilePair, discover_pairs, family_directory, kaggle_test_files
from fwi.data.normalization import SEISMIC_LIMIT_MODES, openfwi_seismic_limits, seismic_limits
from fwi.data.splits import SPLIT_MODES, make_split

log = logging.getLogger(__name__)
BATCH_RING = 4  # shared-memory batches each worker reuses: prefetch_factor (2) + 2, see SharedBatchRing


def _check_choice(field: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UserInputError(f"data.{field}: expected one of {', '.join(choices)}, got {value!r}")


class FwiDataModule(BaseDataModule):
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
        num_workers: loader workers (processes: each reuses 4 shared-memory batches, see
            `fwi.data.datasets.SharedBatchRing`; threads: see worker_type).
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
        test_dir: Kaggle test directory of `<oid>.npy` files, for `predict`.
        synthetic_samples: write this many synthetic samples into `root` first (0: never generate).
        seed: seed of the synthetic set.
        synthetic_family: family of the synthetic set written when `synthetic_samples > 0`.
        synthetic_samples_per_file: samples per synthetic file (OpenFWI: 500).
        synthetic_threads: CPU threads for the generator (None: torch's default).
        worker_type: "process" or "thread": `num_workers` threads of the training process read the
            memory maps into reused batches (`common.thread_workers`); no hand-over through shared
            memory, so one thread keeps up with in-process reads (docs/fwi.md, Benchmarks).
    """

    drop_last_train = True  # see train_dataloader

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
        test_dir: str | None = None,
        synthetic_samples: int = 0,
        seed: int = 0,
        synthetic_family: str = "FlatVel-A",
        synthetic_samples_per_file: int = SAMPLES_PER_FILE,
        synthetic_threads: int | None = None,
        worker_type: str = "process",
    ) -> None:
        super().__init__(
            batch_size, num_workers, max_samples, max_val_samples, synthetic_samples, seed, worker_type
        )
        _check_choice("split", split, SPLIT_MODES)
        _check_choice("mirror_middle", mirror_middle, MIRROR_MIDDLE_MODES)
        _check_choice("on_bad", on_bad, ("error", "skip"))
        _check_choice("seismic_limits", seismic_limits, SEISMIC_LIMIT_MODES)
        if time_decimation < 1:
            raise UserInputError(f"data.time_decimation: expected an integer >= 1, got {time_decimation}")
        if split == "leave_family_out" and not holdout_family:
            raise UserInputError(
                "data.holdout_family: split leave_family_out needs a family, e.g. CurveFault-A"
            )
        self.save_hyperparameters()
        self.root = root
        self.family = family
        self.splits: dict[str, list[FilePair]] = {}
        self.seismic_low: np.ndarray | None = None
        self.seismic_high: np.ndarray | None = None
        self.float16_inputs = False
        self.time_decimation = time_decimation

    def prepare_synthetic_data(self) -> None:
        from fwi.data.generator import generate

        h = self.hparams
        log.info(
            "fwi: writing/finishing %d synthetic %s samples in %s",
            self.synthetic_samples,
            h.synthetic_family,
            self.root,
        )
        generate(
            h.synthetic_family,
            self.synthetic_samples,
            self.root,
            seed=self.seed,
            samples_per_file=h.synthetic_samples_per_file,
            threads=h.synthetic_threads,
        )

    def fitted_statistics(self) -> dict:
        """The task's buffers `seismic_low`/`seismic_high` (per family), `float16_inputs`, `time_decimation`,
        and `training_data` (the description of `training_data()`, which the task stores as JSON)."""
        if self.seismic_low is None:
            return {}
        return {
            "seismic_low": self.seismic_low,
            "seismic_high": self.seismic_high,
            "float16_inputs": self.float16_inputs,
            "time_decimation": self.time_decimation,
            "training_data": self.training_data(),
        }

    def training_data(self) -> dict:
        """What the model was trained on, for export bundles (`training_data.json`): families, files and
        samples per split (in the files, and used after `max_samples`/`max_val_samples`), the split,
        the generator version of each generated family (None for data the generator did not write,
        e.g. OpenFWI's or Kaggle's), and the input normalisation. Plain JSON data."""
        from fwi.data.generator import read_manifest

        h = self.hparams
        samples = {
            part: {
                family: sum(p.count for p in files if p.family == family)
                for family in sorted({p.family for p in files})
            }
            for part, files in self.splits.items()
        }
        caps = {"train": self.max_samples, "val": self.max_val_samples, "test": self.max_val_samples}
        used = {}
        for part, per_family in samples.items():
            total = sum(per_family.values())
            cap = caps.get(part)
            used[part] = total if cap is None else min(total, cap)
        generated = {}
        for files in self.splits.values():
            for pair in files:
                if pair.family not in generated:
                    manifest = read_manifest(family_directory(pair))
                    generated[pair.family] = None if manifest is None else manifest.get("generator_version")
        split = {"mode": h.split}
        split.update(
            {
                "files": {"val_fraction": h.val_fraction, "test_fraction": h.test_fraction},
                "kfold": {"folds": h.folds, "fold": h.fold},
                "leave_family_out": {"holdout_family": h.holdout_family},
            }.get(h.split, {})
        )
        return {
            "root": str(self.root),
            "families": sorted(generated),
            "samples": samples,
            "samples_used": used,
            "files": {part: len(files) for part, files in self.splits.items()},
            "split": split,
            "generator_version": generated,
            "seismic_limits": h.seismic_limits,
            "float16_inputs": bool(self.float16_inputs),
            "time_decimation": int(self.time_decimation),
            "mirror_probability": h.mirror_probability,
        }

    def data_summary(self) -> str | None:
        if not self.splits:
            return None
        lines = ["| split | family | files | samples |", "|---|---|---|---|"]
        for part, files in self.splits.items():
            for family in sorted({p.family for p in files}):
                chosen = [p for p in files if p.family == family]
                lines.append(f"| {part} | {family} | {len(chosen)} | {sum(p.count for p in chosen)} |")
        return "\n".join(lines)

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
            raise UserInputError(
                f"{self.root}: the {h.split} split left no training files ({len(pairs)} pairs)"
            )
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
        if self.worker_threads:  # one ring shared by the threads
            ring = thread_batch_ring(self.worker_threads)
        else:  # worker processes reuse their own shared-memory batches; in process, none are reused
            ring = BATCH_RING if self.num_workers else 0
        return ShotGatherDataset(
            self.splits[split],
            batch_ring=ring,
            max_samples=self.max_samples if train else self.max_val_samples,
            mirror_probability=self.hparams.mirror_probability if train else 0.0,
            mirror_middle=self.hparams.mirror_middle,
            on_bad=self.hparams.on_bad,
        )

    def train_dataloader(self) -> DataLoader:
        reads = BatchedReads(self._dataset("train", train=True))
        # drop_last_train (OpenFWI's train.py drops the last batch: a batch of one sample makes BatchNorm
        # at InversionNet's 1x1 bottleneck raise), except when the whole set is smaller than a batch.
        self.drop_last_train = len(reads) >= self.batch_size
        if not self.drop_last_train:
            log.warning(
                "fwi: %d training samples are fewer than one batch of %d: the incomplete batch is kept",
                len(reads),
                self.batch_size,
            )
        return self.make_loader(reads, "train", collate_fn=collate_skipping_bad)

    def val_dataloader(self) -> DataLoader:
        return self.make_loader(
            BatchedReads(self._dataset("val", train=False)), "val", collate_fn=collate_skipping_bad
        )

    def test_dataloader(self) -> DataLoader:
        split = "test" if self.splits["test"] else "val"
        return self.make_loader(
            BatchedReads(self._dataset(split, train=False)), "test", collate_fn=collate_skipping_bad
        )

    def predict_dataloader(self) -> DataLoader:
        if not self.hparams.test_dir:
            raise UserInputError("data.test_dir: predict needs the Kaggle test directory of <oid>.npy files")
        return self.make_loader(KaggleTestDataset(kaggle_test_files(self.hparams.test_dir)), "predict")
