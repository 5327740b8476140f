"""Finding and checking OpenFWI / Kaggle GWI files without reading their data.

Layouts under a root (family folders may be spelt `FlatVel-A` or Kaggle's `FlatVel_A`):

    <root>/<Family>/data/dataN.npy  + <root>/<Family>/model/modelN.npy        Vel and Style families
    <root>/<Family>/seis{P}_1_{i}.npy + <root>/<Family>/vel{P}_1_{i}.npy      Fault families
    <root>/data/... or <root>/seis*.npy                                       one family, `family=` given
    <test_dir>/<oid>.npy                                                      Kaggle test, (5, 1000, 70) each

Only the `.npy` header is read here (shape, dtype, byte offset) and the file size compared with what
the header promises, so a truncated download fails with its name before training starts.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import UserInputError
from fwi.data.families import (
    SEISMIC_SHAPE,
    VELOCITY_MAX,
    VELOCITY_MIN,
    VELOCITY_SHAPE,
    canonical_family,
    is_family_name,
)

log = logging.getLogger(__name__)
ACCEPTED_DTYPES = (np.dtype("float32"), np.dtype("float16"))


class FwiDataError(UserInputError):
    """A data file that does not match the format (the message names the file and what was expected)."""


# m/s allowed beyond [1500, 4500]: float16 copies of velocity maps round by up to 2 m/s near 4500.
VELOCITY_TOLERANCE = 5.0
KM_PER_S_LIMIT = 10.0  # a map whose largest value is below this is in km/s, not m/s


def velocity_range_problem(velocity: np.ndarray) -> str | None:
    """What is wrong with a velocity map's range (OpenFWI: 1500-4500 m/s), or None when it is fine.

    Values may stray `VELOCITY_TOLERANCE` m/s outside the range; a map whose values all lie below
    10 gets a hint that it is in km/s.
    """
    low, high = float(np.min(velocity)), float(np.max(velocity))
    if low >= VELOCITY_MIN - VELOCITY_TOLERANCE and high <= VELOCITY_MAX + VELOCITY_TOLERANCE:
        return None
    problem = (
        f"velocities span {low:.6g}..{high:.6g}, expected m/s within [{VELOCITY_MIN:.0f}, "
        f"{VELOCITY_MAX:.0f}] (+-{VELOCITY_TOLERANCE:.0f})"
    )
    if 0 < high < KM_PER_S_LIMIT:
        problem += "; these look like km/s: multiply by 1000"
    return problem


def check_velocity_range(velocity: np.ndarray, path: Path, index: int) -> None:
    """Raise FwiDataError naming file and sample when the map is outside 1500-4500 m/s."""
    problem = velocity_range_problem(velocity)
    if problem:
        raise FwiDataError(f"{path}: sample {index}: {problem}")


@dataclass(frozen=True)
class NpyHeader:
    path: Path
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    offset: int


@dataclass(frozen=True)
class FilePair:
    """One seismic file and its velocity file: `count` samples of one family."""

    seismic: Path
    velocity: Path
    family: str
    count: int
    seismic_dtype: str = "float32"

    @property
    def name(self) -> str:
        return self.seismic.name


def family_directory(pair: FilePair) -> Path:
    """The family folder of a file pair: `<family>/data/dataN.npy` or `<family>/seisP_1_i.npy`."""
    parent = pair.seismic.parent
    return parent.parent if parent.name == "data" else parent


def read_header(path: Path) -> NpyHeader:
    """The `.npy` header of `path`, checked against the file's size (truncation)."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
            offset = handle.tell()
    except (ValueError, OSError) as error:
        raise FwiDataError(f"{path}: not a readable .npy file ({error})") from error
    expected = offset + int(np.prod(shape)) * dtype.itemsize
    actual = path.stat().st_size
    if actual < expected:
        raise FwiDataError(
            f"{path}: truncated: header says {tuple(shape)} {dtype} ({expected} bytes), file has {actual} bytes"
        )
    return NpyHeader(path, tuple(shape), dtype, fortran, offset)


def check_array_header(header: NpyHeader, sample_shape: tuple[int, ...], what: str) -> None:
    """Raise FwiDataError unless the file holds (N, *sample_shape) float32/float16 in C order."""
    expected = f"(N, {', '.join(map(str, sample_shape))}) float32 or float16 {what}"
    if header.shape[1:] != tuple(sample_shape) or len(header.shape) != len(sample_shape) + 1:
        raise FwiDataError(f"{header.path}: expected {expected}, got {header.shape} {header.dtype}")
    if header.dtype not in ACCEPTED_DTYPES:
        raise FwiDataError(f"{header.path}: expected {expected}, got dtype {header.dtype}")
    if header.fortran_order:
        raise FwiDataError(f"{header.path}: expected C-ordered array, got Fortran order")


def _number(path: Path) -> tuple:
    return tuple(int(part) for part in re.findall(r"\d+", path.stem))


def _velocity_partner(seismic: Path) -> Path:
    """`data/data7.npy` -> `model/model7.npy`; `seis2_1_3.npy` -> `vel2_1_3.npy`."""
    if seismic.parent.name == "data" and seismic.stem.startswith("data"):
        return seismic.parent.parent / "model" / f"model{seismic.stem[len('data') :]}.npy"
    return seismic.with_name("vel" + seismic.name[len("seis") :])


def seismic_files(family_dir: Path) -> list[Path]:
    """Seismic files of one family folder in numeric order (either layout)."""
    files = list((family_dir / "data").glob("data*.npy")) + list(family_dir.glob("seis*.npy"))
    return sorted(files, key=_number)


def pair_family_dir(family_dir: Path, family: str, on_bad: str = "error") -> list[FilePair]:
    """Every (seismic, velocity) pair of one family folder, headers checked.

    Args:
        family_dir: a folder in the Vel/Style or Fault layout.
        family: its OpenFWI family name.
        on_bad: "error" raises FwiDataError for a bad file; "skip" logs it, counts it and leaves it out.
    """
    family = canonical_family(family)
    pairs: list[FilePair] = []
    skipped = 0
    for seismic in seismic_files(family_dir):
        try:
            pairs.append(check_pair(seismic, _velocity_partner(seismic), family))
        except FwiDataError as error:
            if on_bad != "skip":
                raise
            skipped += 1
            log.warning("skipping %s", error)
    if skipped:
        log.warning("%s: skipped %d bad file pair(s) of %d", family_dir, skipped, skipped + len(pairs))
    return pairs


def check_pair(seismic: Path, velocity: Path, family: str) -> FilePair:
    """Headers of both files checked and their sample counts compared."""
    if not velocity.is_file():
        raise FwiDataError(f"{seismic}: no velocity file: expected its pair {velocity}")
    seismic_header = read_header(seismic)
    velocity_header = read_header(velocity)
    check_array_header(seismic_header, SEISMIC_SHAPE, "shot gathers")
    check_array_header(velocity_header, VELOCITY_SHAPE, "velocity maps in m/s")
    if seismic_header.shape[0] != velocity_header.shape[0]:
        raise FwiDataError(
            f"{velocity}: expected {seismic_header.shape[0]} velocity maps like {seismic.name}, "
            f"got {velocity_header.shape[0]}"
        )
    return FilePair(seismic, velocity, family, seismic_header.shape[0], str(seismic_header.dtype))


def discover_pairs(root: str | Path, family: str | None = None, on_bad: str = "error") -> list[FilePair]:
    """All file pairs under `root`: family folders (OpenFWI or Kaggle `train_samples`), or one family.

    Velocity files without a seismic file are reported too: a lone `model3.npy` means a missing
    `data3.npy`, which is a download problem the user wants to hear about.
    """
    root = Path(root)
    if not root.is_dir():
        raise FwiDataError(f"{root}: data root does not exist")
    if family is not None:
        groups = [(root, canonical_family(family))]
    else:
        groups = [
            (d, canonical_family(d.name))
            for d in sorted(root.iterdir())
            if d.is_dir() and is_family_name(d.name)
        ]
        if not groups:
            raise FwiDataError(
                f"{root}: no family folders (e.g. FlatVel-A/ or FlatVel_A/) found; pass family= for a single-family root"
            )
    pairs: list[FilePair] = []
    for directory, name in groups:
        found = pair_family_dir(directory, name, on_bad=on_bad)
        _check_orphans(directory, on_bad)
        pairs.extend(found)
    if not pairs:
        raise FwiDataError(f"{root}: no usable seismic files (data/dataN.npy or seis*_1_*.npy) found")
    return pairs


def _check_orphans(directory: Path, on_bad: str) -> None:
    known = {_velocity_partner(seismic).resolve() for seismic in seismic_files(directory)}
    velocity_files = list((directory / "model").glob("model*.npy")) + list(directory.glob("vel*.npy"))
    for velocity in sorted(velocity_files):
        if velocity.resolve() not in known:
            seismic_name = (
                "data/data" + velocity.stem[len("model") :]
                if velocity.stem.startswith("model")
                else ("seis" + velocity.name[len("vel") :])
            )
            message = f"{velocity}: velocity file without its seismic file (expected {seismic_name})"
            if on_bad != "skip":
                raise FwiDataError(message)
            log.warning("skipping %s", message)


def kaggle_test_files(test_dir: str | Path) -> list[Path]:
    """Kaggle test files `<oid>.npy`, sorted by name."""
    test_dir = Path(test_dir)
    if not test_dir.is_dir():
        raise FwiDataError(f"{test_dir}: test directory does not exist")
    files = sorted(test_dir.glob("*.npy"))
    if not files:
        raise FwiDataError(f"{test_dir}: no <oid>.npy files")
    return files


def check_test_file(path: Path) -> NpyHeader:
    """A Kaggle test file must hold one (5, 1000, 70) float32/float16 gather."""
    header = read_header(path)
    if header.shape != SEISMIC_SHAPE or header.dtype not in ACCEPTED_DTYPES:
        raise FwiDataError(
            f"{path}: expected (5, 1000, 70) float32 shot gathers, got {header.shape} {header.dtype}"
        )
    return header
