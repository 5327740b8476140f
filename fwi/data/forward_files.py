"""Forward-model a user's velocity maps into the OpenFWI layout (`mtl fwi forward`).

This is how one regenerates OpenFWI from its velocity maps, turns augmented maps or a model's
predictions (pseudo-labels) into training pairs, with exactly the physics of `fwi.data.generator`.

Input: one `.npy` file or a folder of them (searched recursively, in path order), each `(N, 1, 70, 70)`
or `(N, 70, 70)` velocities in m/s. Every file is checked before anything is simulated: readable
without pickle, the shape, finite values, 1500-4500 m/s (`fwi.data.formats.velocity_range_problem`).
Output names follow the input's: `modelN.npy` -> `data/dataN.npy` + `model/modelN.npy`,
`vel{P}_1_{i}.npy` -> `seis{P}_1_{i}.npy` + `vel{P}_1_{i}.npy`; any other name gets the next free
`N` and `forward_sources.json` records which input became which file. Rerunning continues an
interrupted file; a finished output whose velocities differ from the input's is an error, never
overwritten.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fwi.data.families import DEPTH, N_TIME, VELOCITY_SHAPE, WIDTH
from fwi.data.formats import FwiDataError, read_header, velocity_range_problem

SOURCES_FILE = "forward_sources.json"


@dataclass(frozen=True)
class ForwardJob:
    source: Path
    seismic: Path  # relative to the output root
    velocity: Path
    count: int


def velocity_inputs(source: str | Path) -> list[Path]:
    source = Path(source)
    if source.is_file():
        return [source]
    if source.is_dir():
        files = sorted(source.rglob("*.npy"))
        if not files:
            raise FwiDataError(f"{source}: no .npy velocity files in this folder")
        return files
    raise FwiDataError(f"{source}: no such file or folder")


def load_velocity_maps(path: Path) -> np.ndarray:
    """The file's maps as (N, 70, 70) float32 m/s, every sample checked; FwiDataError naming the problem."""
    expected = f"(N, 1, {DEPTH}, {WIDTH}) or (N, {DEPTH}, {WIDTH}) velocity maps in m/s"
    header = read_header(path)  # not .npy, or truncated: an error naming the file
    if header.dtype.hasobject:
        raise FwiDataError(f"{path}: expected {expected}, got Python objects (pickled data are not read)")
    array = np.load(path, mmap_mode="r", allow_pickle=False)
    if array.ndim == 4 and array.shape[1:] == VELOCITY_SHAPE:
        array = array[:, 0]
    if array.ndim != 3 or array.shape[1:] != (DEPTH, WIDTH) or array.shape[0] == 0:
        raise FwiDataError(f"{path}: expected {expected}, got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise FwiDataError(f"{path}: expected {expected} as numbers, got dtype {array.dtype}")
    maps = np.asarray(array, dtype=np.float32)
    for index, sample in enumerate(maps):
        if not np.isfinite(sample).all():
            bad = int(sample.size - np.isfinite(sample).sum())
            raise FwiDataError(f"{path}: sample {index}: {bad} NaN/inf value(s) in the velocity map")
        problem = velocity_range_problem(sample)
        if problem:
            raise FwiDataError(f"{path}: sample {index}: {problem}")
    return maps


def plan_jobs(files: list[Path], counts: list[int]) -> tuple[list[ForwardJob], dict[str, str]]:
    """Output names for each input (see module docstring) and the renamings to record."""
    named: dict[Path, tuple[Path, Path]] = {}
    for path in files:
        if match := re.fullmatch(r"model(\d+)", path.stem):
            named[path] = (Path(f"data/data{match[1]}.npy"), Path(f"model/model{match[1]}.npy"))
        elif match := re.fullmatch(r"vel(\d+_1_\d+)", path.stem):
            named[path] = (Path(f"seis{match[1]}.npy"), Path(f"vel{match[1]}.npy"))
    used = {int(m[1]) for s, _ in named.values() if (m := re.fullmatch(r"data/data(\d+)\.npy", s.as_posix()))}
    renamed: dict[str, str] = {}
    number = 0
    for path in files:
        if path in named:
            continue
        number += 1
        while number in used:
            number += 1
        named[path] = (Path(f"data/data{number}.npy"), Path(f"model/model{number}.npy"))
        renamed[str(path)] = named[path][1].as_posix()
    seen: dict[Path, Path] = {}
    for path in files:
        target = named[path][1]
        if target in seen:
            raise FwiDataError(
                f"{path}: would be written to {target} like {seen[target]}; rename one of them"
            )
        seen[target] = path
    jobs = [ForwardJob(path, *named[path], count) for path, count in zip(files, counts, strict=True)]
    return jobs, renamed


def _digest(maps: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(maps).tobytes()).hexdigest()


def forward_velocity_files(
    source: str | Path,
    out: str | Path,
    device: str = "cpu",
    batch_size: int = 1,
    n_time: int = N_TIME,
    progress: Callable[[int], None] | None = None,
    on_plan: Callable[[int], None] | None = None,
) -> list[Path]:
    """Simulate every map of `source` into `out` (OpenFWI layout); returns the seismic paths written.

    `on_plan(total)` is called once with the number of samples, after every input was checked.
    """
    from fwi.data.generator import write_file

    out = Path(out)
    files = velocity_inputs(source)
    maps = [load_velocity_maps(path) for path in files]  # all checked before any simulation
    jobs, renamed = plan_jobs(files, [len(m) for m in maps])
    if on_plan:
        on_plan(sum(job.count for job in jobs))
    out.mkdir(parents=True, exist_ok=True)
    if renamed:
        record = out / SOURCES_FILE
        previous = json.loads(record.read_text()) if record.is_file() else {}
        record.write_text(json.dumps({**previous, **renamed}, indent=2) + "\n")
    written = []
    for job, velocities in zip(jobs, maps, strict=True):
        seismic_path, velocity_path = out / job.seismic, out / job.velocity
        written.append(seismic_path)
        if velocity_path.is_file() and seismic_path.is_file():
            existing = np.load(velocity_path, mmap_mode="r", allow_pickle=False)
            if existing.shape == (job.count, *VELOCITY_SHAPE) and np.array_equal(existing[:, 0], velocities):
                if progress:
                    progress(job.count)
                continue
            raise FwiDataError(
                f"{velocity_path}: exists with other velocity maps than {job.source}; "
                "choose another --out or remove it"
            )
        seismic_path.parent.mkdir(parents=True, exist_ok=True)
        velocity_path.parent.mkdir(parents=True, exist_ok=True)
        spec = {"source": str(job.source.resolve()), "sha1": _digest(velocities), "n_time": n_time}

        def take(start: int, n: int, velocities: np.ndarray = velocities) -> np.ndarray:
            return velocities[start : start + n]

        write_file(spec, job.count, take, seismic_path, velocity_path, device, batch_size, n_time, progress)
    return written
