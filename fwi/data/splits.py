"""Train/val/test splits by whole files (samples of one file never straddle two splits).

    files:               per family, the last `test_fraction` of files go to test and the `val_fraction`
                         before them to val (OpenFWI's own split is by file number the same way)
    kfold:               per family, files dealt round-robin into `folds` folds; fold `fold` is val
    leave_family_out:    every file of `holdout_family` is val (and test); the other families train
    openfwi:             OpenFWI's official file lists (lanl/OpenFWI `split_files/*.txt`): Vel families
                         train data1-48, val data49-60; Fault families train seis{P}_1_0..31, val
                         seis{P}_1_32..35 for each of their P; Style train data1-120, val data121-134.
                         Val is also test (OpenFWI reports its test numbers on these files); files
                         outside both lists are left out, with a log line saying how many

All are deterministic: files are ordered by name within a family, nothing random is involved.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Sequence

from common.errors import UserInputError
from fwi.data.families import canonical_family, family_kind
from fwi.data.formats import FilePair

log = logging.getLogger(__name__)
SPLIT_MODES = ("files", "kfold", "leave_family_out", "openfwi")
# (train numbers, val numbers) of OpenFWI's split files, by the number in dataN.npy / seis{P}_1_{i}.npy.
OPENFWI_SPLIT_NUMBERS = {
    "vel": (range(1, 49), range(49, 61)),
    "fault": (range(0, 32), range(32, 36)),
    "style": (range(1, 121), range(121, 135)),
}


def by_family(pairs: Sequence[FilePair]) -> dict[str, list[FilePair]]:
    groups: dict[str, list[FilePair]] = defaultdict(list)
    for pair in pairs:
        groups[pair.family].append(pair)
    return dict(groups)


def split_files(
    pairs: Sequence[FilePair], val_fraction: float = 0.2, test_fraction: float = 0.0
) -> dict[str, list[FilePair]]:
    """Per family: first files train, then val, last test; every non-empty fraction gets >= 1 file.

    A family with a single file cannot be split by file: it goes to train and, so that validation is
    not empty, to val as well only when it is the only file of the whole dataset (a warning case the
    datamodule reports).
    """
    split: dict[str, list[FilePair]] = {"train": [], "val": [], "test": []}
    for files in by_family(pairs).values():
        n = len(files)
        n_test = max(1, round(n * test_fraction)) if test_fraction > 0 and n > 2 else 0
        n_val = max(1, round(n * val_fraction)) if val_fraction > 0 and n - n_test > 1 else 0
        n_train = n - n_val - n_test
        split["train"] += files[:n_train]
        split["val"] += files[n_train : n_train + n_val]
        split["test"] += files[n_train + n_val :]
    return split


def split_kfold(pairs: Sequence[FilePair], folds: int, fold: int) -> dict[str, list[FilePair]]:
    """K-fold by file within each family: fold `fold` (0-based) is val, the rest train."""
    if folds < 2 or not 0 <= fold < folds:
        raise UserInputError(f"kfold needs folds >= 2 and 0 <= fold < folds, got folds={folds}, fold={fold}")
    split: dict[str, list[FilePair]] = {"train": [], "val": [], "test": []}
    for files in by_family(pairs).values():
        for i, pair in enumerate(files):
            split["val" if i % folds == fold else "train"].append(pair)
    return split


def split_leave_family_out(pairs: Sequence[FilePair], holdout_family: str) -> dict[str, list[FilePair]]:
    """Every file of `holdout_family` is val and test; all other families train."""
    holdout = canonical_family(holdout_family)
    families = sorted({p.family for p in pairs})
    if holdout not in families:
        raise UserInputError(f"leave_family_out: {holdout} is not in the data (families found: {families})")
    held = [p for p in pairs if p.family == holdout]
    return {"train": [p for p in pairs if p.family != holdout], "val": held, "test": list(held)}


def openfwi_file_number(pair: FilePair) -> int | None:
    """N of `data/dataN.npy`, i of `seis{P}_1_{i}.npy` (P must be one of the family's), else None."""
    name = pair.seismic.name
    if family_kind(pair.family) == "fault":
        match = re.fullmatch(r"seis(\d+)_1_(\d+)\.npy", name)
        prefixes = (2, 3, 4) if pair.family.endswith("A") else (6, 7, 8)
        return int(match[2]) if match and int(match[1]) in prefixes else None
    match = re.fullmatch(r"data(\d+)\.npy", name)
    return int(match[1]) if match else None


def split_openfwi(pairs: Sequence[FilePair]) -> dict[str, list[FilePair]]:
    """OpenFWI's official per-family file lists; val doubles as test."""
    split: dict[str, list[FilePair]] = {"train": [], "val": [], "test": []}
    outside = 0
    for pair in pairs:
        train, val = OPENFWI_SPLIT_NUMBERS[family_kind(pair.family)]
        number = openfwi_file_number(pair)
        if number in train:
            split["train"].append(pair)
        elif number in val:
            split["val"].append(pair)
            split["test"].append(pair)
        else:
            outside += 1
    if outside:
        log.warning("split openfwi: %d file(s) are in neither of OpenFWI's lists and are left out", outside)
    return split


def make_split(
    pairs: Sequence[FilePair],
    mode: str = "files",
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    folds: int = 5,
    fold: int = 0,
    holdout_family: str | None = None,
) -> dict[str, list[FilePair]]:
    if mode == "files":
        return split_files(pairs, val_fraction, test_fraction)
    if mode == "kfold":
        return split_kfold(pairs, folds, fold)
    if mode == "leave_family_out":
        if not holdout_family:
            raise UserInputError("split mode leave_family_out needs holdout_family (e.g. CurveFault-A)")
        return split_leave_family_out(pairs, holdout_family)
    if mode == "openfwi":
        return split_openfwi(pairs)
    raise UserInputError(f"split mode must be one of {SPLIT_MODES}, got {mode!r}")
