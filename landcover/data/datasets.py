"""Datasets over the two NPZ layouts; each item is `{"image": (C, H, W) float32 reflectance, "label": ()}`.

Pixels without data come out as NaN (the task fills them after normalisation) or, with
`nodata="error"`, raise an error naming the file. Training items are augmented with random flips and
90-degree rotations (land cover has no "up"); with `crop_size`, training items are random crops and
evaluation items centre crops.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from landcover.data.formats import (
    PatchFormatError,
    dn_to_reflectance,
    read_archive,
    read_patch,
)

NODATA_POLICIES = ("fill", "error")


@dataclass
class PixelConversion:
    """How stored values become reflectance, and what to do with no-data pixels."""

    units: str = "reflectance"
    dn_offset: int = 0
    nodata: str = "fill"
    band_index: list[int] | None = None  # channels to keep, in order (None: all the file holds)

    def __call__(self, stored: np.ndarray, source: str) -> np.ndarray:
        if self.band_index is not None:
            stored = stored[self.band_index]
        if self.units == "dn":
            if stored.dtype.kind == "f" and np.isnan(stored).any():
                stored = np.nan_to_num(stored, nan=0.0)
            image = dn_to_reflectance(stored, self.dn_offset)
        else:
            if stored.dtype.kind != "f":
                raise PatchFormatError(
                    f"{source}: field 'image' has integer dtype {stored.dtype} but units are 'reflectance'; "
                    "set units: dn (and dn_offset: 1000 for processing baseline 04.00 and later)"
                )
            image = stored.astype(np.float32, copy=True)
            image[~np.isfinite(image)] = np.nan
        if self.nodata == "error":
            missing = int(np.isnan(image).sum())
            if missing:
                raise PatchFormatError(
                    f"{source}: {missing} no-data pixel(s) (NaN or DN 0) and nodata is 'error'; "
                    "set nodata: fill to fill them with the band mean"
                )
        return image


def augment(image: np.ndarray) -> np.ndarray:
    """A random one of the 8 flips/rotations of a (C, H, W) patch (torch's RNG: seeded per worker)."""
    k, flip = torch.randint(0, 4, ()).item(), torch.randint(0, 2, ()).item()
    image = np.rot90(image, k, axes=(1, 2))
    return image[:, :, ::-1] if flip else image


def crop(image: np.ndarray, size: int, random: bool, source: str) -> np.ndarray:
    """A (C, size, size) crop of a (C, H, W) patch: at a random place (training) or the centre."""
    height, width = image.shape[-2:]
    if size > height or size > width:
        raise PatchFormatError(f"{source}: crop_size {size} is larger than the patch ({height}x{width})")
    if random:
        top = int(torch.randint(0, height - size + 1, ()).item())
        left = int(torch.randint(0, width - size + 1, ()).item())
    else:
        top, left = (height - size) // 2, (width - size) // 2
    return image[:, top : top + size, left : left + size]


@dataclass
class PatchSource:
    """Where a split's patches are: per-patch files, or in-memory arrays read from one archive."""

    name: str
    files: list[Path] = field(default_factory=list)
    images: np.ndarray | None = None
    labels: np.ndarray | None = None
    archive: Path | None = None

    def __len__(self) -> int:
        return len(self.labels) if self.images is not None else len(self.files)


class PatchDataset(Dataset):
    """Items of one split; `indices` (optional) selects a subset without copying.

    `bands` are the bands the files hold (checked on read); `conversion.band_index` picks the ones used.
    """

    def __init__(
        self,
        source: PatchSource,
        bands: Sequence[str],
        class_names: Sequence[str],
        conversion: PixelConversion,
        augment: bool = False,
        indices: Sequence[int] | None = None,
        crop_size: int | None = None,
    ) -> None:
        self.source = source
        self.bands = list(bands)
        self.class_names = list(class_names)
        self.conversion = conversion
        self.augment = augment
        self.crop_size = crop_size
        self.indices = list(range(len(source))) if indices is None else list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def raw(self, index: int) -> tuple[np.ndarray, int, str]:
        """Reflectance image (C, H, W) with NaN for no-data, label and where it came from."""
        i = self.indices[index]
        if self.source.images is not None:
            where = f"{self.source.archive}[{i}]"
            stored, label = self.source.images[i], int(self.source.labels[i])
        else:
            where = str(self.source.files[i])
            stored, label = read_patch(self.source.files[i], self.bands, self.class_names)
        return self.conversion(stored, where), label, where

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image, label, where = self.raw(index)
        if self.crop_size is not None:
            image = crop(image, self.crop_size, random=self.augment, source=where)
        if self.augment:
            image = augment(image)
        return {"image": torch.from_numpy(np.ascontiguousarray(image)), "label": torch.tensor(label)}


def load_archive_source(
    name: str, path: Path, bands: Sequence[str], class_names: Sequence[str]
) -> PatchSource:
    images, labels = read_archive(path, bands, class_names)
    return PatchSource(name=name, images=images, labels=labels, archive=path)


def scan(dataset: PatchDataset, num_classes: int) -> dict:
    """One pass over a split: class counts, no-data counts and per-band sums for mean/std (float64)."""
    channels = len(dataset.conversion.band_index or dataset.bands)
    total, total_sq = np.zeros(channels), np.zeros(channels)
    valid = np.zeros(channels)
    counts = np.zeros(num_classes, dtype=np.int64)
    labels = np.zeros(len(dataset), dtype=np.int64)
    nodata_pixels = nodata_patches = 0
    empty: list[int] = []
    for index in range(len(dataset)):
        image, label, _ = dataset.raw(index)
        labels[index] = label
        missing = np.isnan(image)
        if missing.any():
            nodata_patches += 1
            nodata_pixels += int(missing.any(axis=0).sum())
            if missing.all():  # nothing to learn the label from: left out (see the datamodule)
                empty.append(dataset.indices[index])
                continue
        counts[label] += 1
        values = np.where(missing, 0.0, image).astype(np.float64)
        total += values.sum(axis=(1, 2))
        total_sq += (values**2).sum(axis=(1, 2))
        valid += (~missing).sum(axis=(1, 2))
    mean = total / np.maximum(valid, 1)
    std = np.sqrt(np.maximum(total_sq / np.maximum(valid, 1) - mean**2, 0.0))
    return {
        "samples": len(dataset),
        "class_counts": counts,
        "labels": labels,
        "nodata_patches": nodata_patches,
        "nodata_pixels": nodata_pixels,
        "empty_indices": np.asarray(empty, dtype=np.int64),
        "band_mean": mean.astype(np.float32),
        "band_std": np.maximum(std, 1e-6).astype(np.float32),
    }


def scan_fingerprint(dataset: PatchDataset) -> str:
    """What a scan's result depends on: the files (path, size, modification time) and the settings."""
    digest = hashlib.sha256()
    source = dataset.source
    for path in [source.archive] if source.archive is not None else source.files:
        stat = Path(path).stat()
        digest.update(f"{Path(path).resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    settings = {
        "scan": 2,  # what a scan reports (2: also the all-no-data patches)
        "bands": dataset.bands,
        "classes": dataset.class_names,
        "indices": [dataset.indices[0], dataset.indices[-1], len(dataset.indices)] if dataset.indices else [],
        "conversion": asdict(dataset.conversion),
    }
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()[:32]


def cached_scan(dataset: PatchDataset, num_classes: int, cache_dir: Path | None) -> dict:
    """`scan`, remembered in `cache_dir` under the split's fingerprint: unchanged files are not read again."""
    if cache_dir is None:
        return scan(dataset, num_classes)
    path = Path(cache_dir) / f"{scan_fingerprint(dataset)}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as npz:
                cached = {key: npz[key] for key in npz.files}
            return {key: value.item() if value.ndim == 0 else value for key, value in cached.items()}
        except (OSError, ValueError, EOFError):
            pass  # a damaged cache entry: scan again
    report = scan(dataset, num_classes)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, **report)
        os.replace(tmp, path)
    except OSError:
        pass  # the cache is an optimisation; a read-only place just means scanning every time
    return report
