"""float16 copies of OpenFWI-layout roots: float16 training reads half the bytes."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np

from fwi.data.formats import FwiDataError, discover_pairs, family_directory

log = logging.getLogger(__name__)
FLOAT16_MAX = float(np.finfo(np.float16).max)
CHUNK = 50  # samples converted at a time (70 MB of float32 seismic)


def _convert(source: Path, target: Path) -> None:
    array = np.load(source, mmap_mode="r", allow_pickle=False)
    partial = target.with_name(target.name + ".partial")
    out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float16, shape=array.shape)
    for start in range(0, array.shape[0], CHUNK):
        chunk = np.asarray(array[start : start + CHUNK], dtype=np.float32)
        if not np.isfinite(chunk).all():
            bad = start + int(np.argwhere(~np.isfinite(chunk))[0][0])
            del out
            partial.unlink()
            raise FwiDataError(f"{source}: sample {bad}: NaN/inf values; cannot cache as float16")
        peak = float(np.abs(chunk).max())
        if peak > FLOAT16_MAX:
            del out
            partial.unlink()
            raise FwiDataError(f"{source}: |value| {peak:g} exceeds float16's range ({FLOAT16_MAX:g})")
        out[start : start + CHUNK] = chunk.astype(np.float16)
    out.flush()
    del out
    os.replace(partial, target)


def _is_converted(target: Path, shape: tuple[int, ...], dtype: str) -> bool:
    if not target.is_file():
        return False
    array = np.load(target, mmap_mode="r", allow_pickle=False)
    return array.shape == shape and str(array.dtype) == dtype


def convert_to_float16(root: str | Path, out: str | Path, family: str | None = None, velocity: bool = False):
    """Write float16 seismic (and optionally velocity) under `out` with `root`'s relative paths."""
    root, out = Path(root), Path(out)
    written = []
    for pair in discover_pairs(root, family=family):
        for source, half in ((pair.seismic, True), (pair.velocity, velocity)):
            target = out / source.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shape = np.load(source, mmap_mode="r", allow_pickle=False).shape
            if _is_converted(target, shape, "float16" if half else "float32"):
                continue
            if half:
                _convert(source, target)
            else:
                shutil.copyfile(source, target)
            written.append(target)
            log.info("cached %s -> %s", source, target)
    copy_generator_manifests(root, out, family)
    return written


def copy_generator_manifests(root: Path, out: Path, family: str | None) -> None:
    """The generator's `generator.json` of each family folder goes with the copy: same physics, same
    version (the float16 cast is recorded separately, as `float16_inputs`)."""
    from fwi.data.generator import MANIFEST

    for directory in sorted({family_directory(p) for p in discover_pairs(root, family=family)}):
        manifest = directory / MANIFEST
        if manifest.is_file():
            target = out / manifest.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(manifest, target)
