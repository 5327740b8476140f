"""Stratified train/val/test splits: every class keeps its share in every split."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from landcover.data.formats import (
    DatasetMetadata,
    PatchFormatError,
    read_archive,
    read_patch_label,
    write_archive,
)


def stratified_split(
    labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int = 0
) -> dict[str, np.ndarray]:
    """Indices of `labels` for train/val/test, shuffled within each class with `seed`.

    Each class contributes round(n_c * fraction) samples to val and test, at least one when it has
    three or more samples, so rare classes are present in every split.
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(
            f"val_fraction + test_fraction must be in [0, 1), got {val_fraction} + {test_fraction}"
        )
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        n = len(members)
        n_val = round(n * val_fraction)
        n_test = round(n * test_fraction)
        if n >= 3:
            n_val = max(n_val, 1) if val_fraction > 0 else 0
            n_test = max(n_test, 1) if test_fraction > 0 else 0
        parts["val"].append(members[:n_val])
        parts["test"].append(members[n_val : n_val + n_test])
        parts["train"].append(members[n_val + n_test :])
    return {name: np.sort(np.concatenate(chunks)).astype(np.int64) for name, chunks in parts.items()}


def split_patch_folder(
    root: Path, val_fraction: float, test_fraction: float, seed: int = 0
) -> dict[str, Path]:
    """Write `<root>/splits/{train,val,test}.txt` for the per-patch files found under `root`."""
    files = sorted(p for p in root.rglob("*.npz") if "splits" not in p.relative_to(root).parts)
    if not files:
        raise PatchFormatError(f"{root}: no .npz patch files found to split")
    labels = np.array([read_patch_label(f) for f in files])
    indices = stratified_split(labels, val_fraction, test_fraction, seed)
    out = root / "splits"
    out.mkdir(exist_ok=True)
    written = {}
    for name, idx in indices.items():
        path = out / f"{name}.txt"
        path.write_text("".join(f"{files[i].relative_to(root).as_posix()}\n" for i in idx))
        written[name] = path
    return written


def split_archive(
    archive: Path, out: Path, val_fraction: float, test_fraction: float, seed: int = 0
) -> dict[str, Path]:
    """Split one archive (`images`, `labels`) into `<out>/{train,val,test}.npz`."""
    metadata = DatasetMetadata.read(archive.parent) or DatasetMetadata()
    with np.load(archive, allow_pickle=False) as npz:
        bands = [str(b) for b in npz["bands"].tolist()] if "bands" in npz.files else metadata.bands
    images, labels = read_archive(archive, bands, class_names=None)
    if labels.dtype.kind in "iu" and labels.size and int(labels.max()) >= len(metadata.classes):
        extra = range(len(metadata.classes), int(labels.max()) + 1)
        metadata.classes = [*metadata.classes, *(f"class_{i}" for i in extra)]
    metadata.bands = list(bands)
    indices = stratified_split(labels, val_fraction, test_fraction, seed)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, idx in indices.items():
        path = out / f"{name}.npz"
        tmp = out / f".{name}.tmp.npz"
        write_archive(tmp, images[idx], labels[idx], bands)
        os.replace(tmp, path)
        written[name] = path
    if not (out / "dataset.json").is_file():
        metadata.write(out)
    return written
