"""LandCoverDataModule: Sentinel-2 NPZ patches -> batches `{"image": (B, C, H, W), "label": (B,)}`.

`setup` finds the splits (see `landcover.data.formats` for the layouts), scans the training split
once for per-band mean/std (on reflectance, no-data excluded), class counts and no-data counts, and
the task copies those statistics into its buffers so they travel in every checkpoint and export.
The dataloaders read `batch_size`, `num_workers`, `max_samples`, `crop_size` and `sampler` when they
are built, so StagedScaling can change them between stages.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader

from common.data import BaseDataModule
from common.errors import MissingInputError
from common.resumable_loader import EpochWeightedRandomSampler
from landcover.data.datasets import (
    PatchDataset,
    PatchSource,
    PixelConversion,
    cached_scan,
    load_archive_source,
)
from landcover.data.formats import DEFAULT_BANDS, METADATA_FILE, SPLITS, DatasetMetadata, PatchFormatError
from landcover.data.synthetic import synthetic_settings, write_synthetic_dataset


def find_split(root: Path, split: str) -> tuple[str, Path | list[Path]] | None:
    """("archive", file), ("patches", files) or None for `split` under `root`."""
    archive = root / f"{split}.npz"
    if archive.is_file():
        return "archive", archive
    folder = root / split
    if folder.is_dir():
        files = sorted(folder.rglob("*.npz"))
        if not files:
            raise PatchFormatError(f"{folder}: split folder has no .npz patch files")
        return "patches", files
    listing = root / "splits" / f"{split}.txt"
    if listing.is_file():
        names = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
        missing = [n for n in names if not (root / n).is_file()]
        if missing:
            raise PatchFormatError(f"{listing}: lists {len(missing)} missing file(s), first {missing[0]!r}")
        return "patches", [root / n for n in names]
    return None


def recorded_bands(found: Iterable[tuple[str, Path | list[Path]]]) -> list[str] | None:
    """The `bands` field of the first archive or patch file, when the files record one."""
    for kind, where in found:
        path = where if kind == "archive" else where[0]
        if not zipfile.is_zipfile(path):
            return None  # the loader reports what is wrong with the file
        try:
            with np.load(path, allow_pickle=False) as npz:
                return [str(band) for band in npz["bands"].tolist()] if "bands" in npz.files else None
        except (OSError, ValueError, EOFError):
            return None  # the loader reports what is wrong with the file
    return None


class LandCoverDataModule(BaseDataModule):
    """Train/val/test splits of NPZ patches, with statistics from the training split.

    Args:
        root: dataset directory; relative paths are relative to the working directory.
        bands: the bands to use, in order, chosen by name among those the files hold (recorded in
            `<root>/dataset.json` or the files' `bands` field, else B02, B03, B04, B08, B11, B12);
            default: all of them. E.g. 6 of the 13 bands of EuroSAT-MS files.
        class_names: class names in label order; default from `<root>/dataset.json`.
        units: "reflectance" (float) or "dn" (Sentinel-2 L2A digital numbers, uint16); default from
            dataset.json, else reflectance.
        dn_offset: subtracted from DN before dividing by 10000: 1000 for processing baseline 04.00
            (January 2022) and later, 0 before; default from dataset.json, else 0.
        nodata: "fill" (NaN / DN 0 pixels are counted and filled with the band mean) or "error".
        augment: random flips and 90-degree rotations of training patches.
        batch_size: patches per batch.
        num_workers: DataLoader worker processes.
        max_samples: use only this many training patches (a fixed random subset); None: all.
        max_val_samples: evaluate on only the first this many validation/test patches; None: all.
        crop_size: train on random crops and evaluate on centre crops of this many pixels (e.g. 64 of
            the 224 px patches for fast first experiments); None: whole patches.
        sampler: "shuffle", or "weighted" to draw rare classes as often as common ones.
        synthetic_samples: when `root` is missing or empty, first write this many synthetic patches
            there (0: never generate, fail instead).
        synthetic_size: height and width of synthetic patches (real patches are 224).
        synthetic_layout: "patches" (one file per patch) or "archive" (one file per split).
        synthetic_units: "reflectance" or "dn" (DN with the baseline 04.00 offset).
        seed: seed for the synthetic data and the max_samples subset.
        stats_cache: folder remembering each split's scan (statistics, class and no-data counts) by
            the files' paths, sizes and modification times, so an unchanged dataset is not read an
            extra time at every start; None: scan every time.
    """

    def __init__(
        self,
        root: str = ".cache/mtl/landcover/synthetic",
        bands: list[str] | None = None,
        class_names: list[str] | None = None,
        units: Literal["reflectance", "dn"] | None = None,
        dn_offset: int | None = None,
        nodata: Literal["fill", "error"] = "fill",
        augment: bool = True,
        batch_size: int = 32,
        num_workers: int = 0,
        max_samples: int | None = None,
        max_val_samples: int | None = None,
        crop_size: int | None = None,
        sampler: Literal["shuffle", "weighted"] = "shuffle",
        synthetic_samples: int = 0,
        synthetic_size: int = 64,
        synthetic_layout: Literal["patches", "archive"] = "patches",
        synthetic_units: Literal["reflectance", "dn"] = "reflectance",
        seed: int = 0,
        stats_cache: str | None = ".cache/mtl/landcover/stats",
    ) -> None:
        super().__init__(batch_size, num_workers, max_samples, max_val_samples, synthetic_samples, seed)
        self.root = Path(root)
        self.requested_bands = bands
        self.requested_classes = class_names
        self.requested_units = units
        self.requested_dn_offset = dn_offset
        self.nodata = nodata
        self.augment = augment
        self.crop_size = crop_size
        self.sampler = sampler
        self.synthetic_size = synthetic_size
        self.synthetic_layout = synthetic_layout
        self.synthetic_units = synthetic_units
        self.stats_cache = stats_cache
        self.datasets: dict[str, PatchDataset] = {}
        self.report: dict[str, dict] = {}

    # -- data on disk -------------------------------------------------------------------------------
    def prepare_synthetic_data(self) -> None:
        """Write the synthetic dataset into an empty root; refuse one made with other settings."""
        wanted = synthetic_settings(
            self.synthetic_samples,
            self.synthetic_size,
            self.synthetic_layout,
            self.synthetic_units,
            self.seed,
        )
        if not self.root.is_dir() or not any(self.root.iterdir()):
            counts = write_synthetic_dataset(self.root, **wanted)
            rank_zero_info(f"landcover: wrote synthetic patches {counts} to {self.root}")
            return
        made = (DatasetMetadata.read(self.root) or DatasetMetadata()).synthetic
        if made is not None and made != wanted:
            raise PatchFormatError(
                f"{self.root / METADATA_FILE}: this synthetic dataset was made with {made}, the config asks "
                f"for {wanted}; delete {self.root} to regenerate it, or choose another data.root"
            )

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        if not self.root.is_dir():
            raise MissingInputError(
                f"{self.root}: dataset root not found; write one with `mtl landcover generate --out {self.root}` "
                "or set data.synthetic_samples"
            )
        metadata = DatasetMetadata.read(self.root)
        found = {split: find_split(self.root, split) for split in SPLITS}
        found = {split: where for split, where in found.items() if where is not None}
        file_bands = (
            list(metadata.bands) if metadata else recorded_bands(found.values()) or list(DEFAULT_BANDS)
        )
        metadata = metadata or DatasetMetadata()
        self.bands = list(self.requested_bands or file_bands)
        missing = [band for band in self.bands if band not in file_bands]
        if missing:
            raise PatchFormatError(
                f"{self.root}: data.bands asks for {missing}, but the files hold {file_bands} "
                f"(from {METADATA_FILE} or the files' 'bands' field)"
            )
        self.class_names = list(self.requested_classes or metadata.classes)
        conversion = PixelConversion(
            units=self.requested_units or metadata.units,
            dn_offset=metadata.dn_offset if self.requested_dn_offset is None else self.requested_dn_offset,
            nodata=self.nodata,
            band_index=None if self.bands == file_bands else [file_bands.index(b) for b in self.bands],
        )
        for split, (kind, where) in found.items():
            if kind == "archive":
                source = load_archive_source(split, where, file_bands, self.class_names)
            else:
                source = PatchSource(name=split, files=where)
            self.datasets[split] = PatchDataset(source, file_bands, self.class_names, conversion)
        if stage in (None, "fit") and not {"train", "val"} <= set(self.datasets):
            raise PatchFormatError(
                f"{self.root}: training needs 'train' and 'val' splits as <split>.npz archives, <split>/ folders "
                f"of patches or splits/<split>.txt lists; found {sorted(self.datasets) or 'none'} "
                "(`mtl landcover split` makes them)"
            )
        cache = Path(self.stats_cache) if self.stats_cache else None
        for split, dataset in self.datasets.items():
            self.report[split] = cached_scan(dataset, len(self.class_names), cache)
        for split, report in self.report.items():
            empty = report["empty_indices"]
            if len(empty):
                dataset = self.datasets[split]
                dataset.indices = [i for i in dataset.indices if i not in set(empty.tolist())]
                first = (
                    dataset.source.files[empty[0]]
                    if dataset.source.files
                    else f"{dataset.source.archive}[{empty[0]}]"
                )
                rank_zero_warn(
                    f"landcover: left {len(empty)} {split} patch(es) out that have no valid pixel in any band "
                    f"(all no-data), first {first}; their labels say nothing about their pixels"
                )
        train = self.report.get("train")
        if train is not None:
            self.band_mean, self.band_std = train["band_mean"], train["band_std"]
            self.class_counts = train["class_counts"]
        summary = {
            split: {
                k: (v.tolist() if k == "class_counts" else v)
                for k, v in r.items()
                if "nodata" in k or k in ("samples", "class_counts")
            }
            for split, r in self.report.items()
        }
        rank_zero_info(f"landcover: {self.root} bands {self.bands}, units {conversion.units}: {summary}")

    # -- what the task receives --------------------------------------------------------------------------
    def fitted_statistics(self) -> dict[str, object]:
        """Band mean/std (on reflectance, no-data excluded) and class counts of the training split, and the
        bands and class names they belong to (the task checks those against its own)."""
        if "train" not in self.report:
            return {}
        return {
            "band_mean": self.band_mean,
            "band_std": self.band_std,
            "train_class_counts": self.class_counts,
            "bands": self.bands,
            "class_names": self.class_names,
        }

    def data_summary(self) -> str | None:
        lines = [
            "| split | samples | no-data patches | no-data pixels | left out (no valid pixel) | class counts |",
            "|---|---|---|---|---|---|",
        ]
        for split, report in self.report.items():
            counts = dict(zip(self.class_names, report["class_counts"].tolist(), strict=True))
            lines.append(
                f"| {split} | {report['samples']} | {report['nodata_patches']} | {report['nodata_pixels']} | "
                f"{len(report['empty_indices'])} | {counts} |"
            )
        return "\n".join(lines) if self.report else None

    # -- loaders ------------------------------------------------------------------------------------
    def _train_indices(self) -> np.ndarray:
        usable = np.asarray(self.datasets["train"].indices)
        if self.max_samples is None or self.max_samples >= len(usable):
            return usable
        return np.sort(usable[np.random.default_rng(self.seed).permutation(len(usable))[: self.max_samples]])

    def train_dataloader(self) -> DataLoader:
        base = self.datasets["train"]
        indices = self._train_indices()
        dataset = PatchDataset(
            base.source, base.bands, base.class_names, base.conversion, self.augment, indices, self.crop_size
        )
        sampler = None
        if self.sampler == "weighted":
            labels = self.report["train"]["labels"][indices]
            counts = np.bincount(labels, minlength=base.num_classes)
            weights = 1.0 / counts[labels]
            sampler = EpochWeightedRandomSampler(
                torch.as_tensor(weights, dtype=torch.double), num_samples=len(indices)
            )
        return self.make_loader(dataset, "train", sampler=sampler)

    def _evaluation(self, split: str) -> PatchDataset:
        """A split as evaluated: no augmentation, centre crops of `crop_size` when set."""
        base = self.datasets[split]
        indices = base.indices[: self.max_val_samples] if self.max_val_samples is not None else base.indices
        return PatchDataset(
            base.source,
            base.bands,
            base.class_names,
            base.conversion,
            indices=indices,
            crop_size=self.crop_size,
        )

    def val_dataloader(self) -> DataLoader:
        return self.make_loader(self._evaluation("val"), "val")

    def test_dataloader(self) -> DataLoader:
        if "test" not in self.datasets:
            raise PatchFormatError(f"{self.root}: no 'test' split (test.npz, test/ or splits/test.txt)")
        return self.make_loader(self._evaluation("test"), "test")

    def predict_dataloader(self) -> DataLoader:
        return self.make_loader(self._evaluation("test" if "test" in self.datasets else "val"), "predict")
