"""Synthetic OpenFWI-layout data: velocity models + acoustic forward modelling with deepwave.

Geometry as OpenFWI: 70x70 grid, dx = 10 m, 5 sources at x-index 0, 17, 34, 52, 69 and 70 receivers,
all at depth index 1; 1000 steps of 1 ms. Source and timing as OpenFWI's forward operator (the
`FWIForward.FWM` finite-difference loop of LANL's physics-guided FWI code, run with the parameters of
lanl/OpenFWI `dataset_config.json`: nbc 120, dx 10, nt 1000, dt 1e-3, f 15, sz = gz = 10 m):

- Wavelet: a 147-sample, 15 Hz Ricker whose peak is sample 73, zero after (`openfwi_ricker`).
- Timing: that loop adds `(v dt)^2 w[i]` at the source in step i and records the field just updated,
  so trace sample i is the field after i + 1 steps. deepwave records one step later than that (measured
  against such a loop in tests/fwi/test_generator.py with deepwave 0.1.0: best lag 1 sample,
  correlation 0.99999994; that test fails if a deepwave release changes it), so
  the wavelet given to deepwave is advanced by one sample. With that, a receiver under the source in a
  2000 m/s top layer peaks at 78 ms, as the zero-offset traces of real Kaggle GWI test gathers do.

Deliberate differences from that loop:

- Solver: deepwave's constant-density scalar wave equation, 4th order in space (OpenFWI's loop is 2nd
  order in time, 4th in space at 1 ms); deepwave sub-steps time internally where 1 ms violates its CFL
  condition and resamples to 1 ms. That condition is set by `max_vel=4500` for every model, not by
  each batch's fastest cell, so a sample's gathers do not depend on which models share its batch
  (they did by up to 0.07 before: the resampling differs between one and two sub-steps).
- Boundaries: a 20-cell PML on all four sides instead of OpenFWI's 120-cell damping layer (neither has a
  free surface, so no surface ghosts or multiples).
- Sign: deepwave's source term has the opposite sign to the convention of OpenFWI's data (there the
  direct wave's main lobe is positive: FlatVel-A's limits are -26.95..52.77), so the output is negated.
  With that, our FlatVel-A amplitudes span about -26..51 for a unit Ricker: the same scale.

Output: `<out>/<Family>/data/dataN.npy` + `model/modelN.npy` (Vel/Style, N from 1) or
`<out>/<Family>/seis{P}_1_{i}.npy` + `vel{P}_1_{i}.npy` (Fault, i from 0), `samples_per_file` samples
per file, fewer in the last. Sample k of a family is drawn from the seed (seed, family, k) alone, so
the output does not depend on batch size or on interruptions: a second run resumes a file from its
`.progress` marker and gives the same bytes as one uninterrupted run.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from common.errors import UserInputError
from fwi.data.families import (
    ACQUISITION_DEPTH,
    GRID_SPACING_M,
    N_RECEIVERS,
    N_SOURCES,
    N_TIME,
    PEAK_FREQUENCY_HZ,
    SAMPLES_PER_FILE,
    SOURCE_X,
    TIME_STEP_S,
    VELOCITY_MAX,
    VELOCITY_SHAPE,
    canonical_family,
    family_index,
    family_kind,
    fault_prefix,
)
from fwi.data.formats import FwiDataError, read_header
from fwi.data.velocity_models import velocity_model

PML_WIDTH = 20

# What the generated data depends on besides the seed: bump whenever the physics (wavelet, timing,
# solver, boundaries) or the velocity priors change, so bundles trained on older data say so.
#   1: the first generator (a 15 Hz Ricker of deepwave's, unfitted priors).
#   2: OpenFWI's 147-sample Ricker and recording timing, `max_vel` 4500 for every batch, priors fitted
#      to real FlatVel-A maps (layer counts, top-layer velocity).
#   3: CurveVel and CurveFault folds fitted to real CurveVel-A maps (larger relief, three sinusoids,
#      interfaces not exactly parallel), CurveVel layer counts from real CurveVel-A; FlatVel,
#      FlatFault and Style samples are unchanged.
GENERATOR_VERSION = 3
MANIFEST = "generator.json"  # in each family folder the generator wrote


def openfwi_ricker(
    n_time: int = N_TIME, dt: float = TIME_STEP_S, freq: float = PEAK_FREQUENCY_HZ
) -> torch.Tensor:
    """OpenFWI's source: a Ricker of `2 floor(1.1 / (f dt)) + 1` samples (147 at 15 Hz, 1 ms) peaking
    at its middle sample (73), zero after: `w[k] = (1 - 2b) e^-b`, `b = (pi f dt (73 - k))^2`.

    Returns (n_time,) float64 (float64 so that the one-sample advance below loses nothing).
    """
    length = int(2 * np.floor(1.1 / (freq * dt)) + 1)
    centre = length // 2
    k = torch.arange(length, dtype=torch.float64)
    b = (np.pi * freq * dt * (centre - k)) ** 2
    wavelet = torch.zeros(n_time, dtype=torch.float64)
    n = min(length, n_time)
    wavelet[:n] = ((1 - 2 * b) * torch.exp(-b))[:n]
    return wavelet


DEEPWAVE_RECORDING_DELAY = 1  # samples deepwave records after OpenFWI's loop (module docstring)


def deepwave_source(n_time: int = N_TIME) -> torch.Tensor:
    """The wavelet to give deepwave so its traces line up with OpenFWI's: advanced by the delay, (n_time,)."""
    wavelet = openfwi_ricker(n_time + DEEPWAVE_RECORDING_DELAY)
    return wavelet[DEEPWAVE_RECORDING_DELAY:].float()


def forward_model(velocity: torch.Tensor, n_time: int = N_TIME) -> torch.Tensor:
    """Shot gathers for velocity models (B, 70, 70) m/s -> (B, 5, n_time, 70), on velocity's device."""
    import deepwave

    batch = velocity.shape[0]
    device = velocity.device
    shots = batch * N_SOURCES
    v = velocity.float().repeat_interleave(N_SOURCES, dim=0)  # one model per shot
    sources = torch.zeros(shots, 1, 2, dtype=torch.long, device=device)
    sources[:, 0, 0] = ACQUISITION_DEPTH
    sources[:, 0, 1] = torch.tensor(SOURCE_X, device=device).repeat(batch)
    receivers = torch.zeros(shots, N_RECEIVERS, 2, dtype=torch.long, device=device)
    receivers[:, :, 0] = ACQUISITION_DEPTH
    receivers[:, :, 1] = torch.arange(N_RECEIVERS, device=device)
    amplitudes = deepwave_source(n_time).to(device).reshape(1, 1, -1).expand(shots, 1, -1).contiguous()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = deepwave.scalar(
            v,
            GRID_SPACING_M,
            TIME_STEP_S,
            source_amplitudes=amplitudes,
            source_locations=sources,
            receiver_locations=receivers,
            pml_width=PML_WIDTH,
            pml_freq=PEAK_FREQUENCY_HZ,
            accuracy=4,
            max_vel=VELOCITY_MAX,
        )
    gathers = -out[-1]  # (shots, receivers, time); negated to OpenFWI's polarity (module docstring)
    return gathers.reshape(batch, N_SOURCES, N_RECEIVERS, n_time).transpose(2, 3).contiguous()


def file_names(family: str, n_files: int) -> list[tuple[str, str]]:
    """Relative (seismic, velocity) paths of a family's files in the OpenFWI layout."""
    if family_kind(family) == "fault":
        p = fault_prefix(family)
        return [(f"seis{p}_1_{i}.npy", f"vel{p}_1_{i}.npy") for i in range(n_files)]
    return [(f"data/data{i + 1}.npy", f"model/model{i + 1}.npy") for i in range(n_files)]


def sample_velocity(family: str, seed: int, index: int) -> np.ndarray:
    rng = np.random.default_rng([seed, family_index(family), index])
    return velocity_model(family, rng)


def _complete(path: Path, count: int, sample_shape: tuple[int, ...]) -> bool:
    if not path.is_file():
        return False
    try:
        header = read_header(path)
    except FwiDataError:
        return False
    return header.shape == (count, *sample_shape)


def generate(
    family: str,
    samples: int,
    out: str | Path,
    seed: int = 0,
    device: str = "cpu",
    samples_per_file: int = SAMPLES_PER_FILE,
    batch_size: int = 1,
    n_time: int = N_TIME,
    threads: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[Path]:
    """Write `samples` samples of `family` under `<out>/<Family>/`; returns the seismic file paths.

    Finished files are kept; a file interrupted part-way continues from its `.progress` marker.
    `progress(n)` is called with the number of samples just written (or found already written).
    `threads` sets torch's CPU threads while generating (deepwave's CPU kernels follow it; on a loaded
    machine 1 thread was measured 5-10x faster than 2), restored afterwards; None leaves it alone.
    """
    family = canonical_family(family)
    if samples < 1 or samples_per_file < 1 or batch_size < 1:
        raise UserInputError("samples, samples_per_file and batch_size must be >= 1")
    root = Path(out) / family
    written: list[Path] = []
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    previous = read_manifest(root)
    try:
        kept = _generate_files(
            family, samples, root, seed, device, samples_per_file, batch_size, n_time, progress, written
        )
    finally:
        torch.set_num_threads(previous_threads)
    version: int | None = GENERATOR_VERSION
    if kept and (previous or {}).get("generator_version") != GENERATOR_VERSION:
        warnings.warn(
            f"{root}: kept files written by an earlier generator version "
            f"({(previous or {}).get('generator_version', 'unknown')}); its manifest records no version",
            stacklevel=2,
        )
        version = None
    manifest = {
        "generator_version": version,
        "family": family,
        "seed": seed,
        "samples": samples,
        "samples_per_file": samples_per_file,
        "n_time": n_time,
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return written


def read_manifest(family_dir: str | Path) -> dict | None:
    """The `generator.json` the generator left in a family folder, None for data it did not write."""
    path = Path(family_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _generate_files(
    family, samples, root, seed, device, samples_per_file, batch_size, n_time, progress, written
):
    """Write the missing files; returns whether any complete file was kept from an earlier run."""
    n_files = -(-samples // samples_per_file)
    seismic_shape = (N_SOURCES, n_time, N_RECEIVERS)
    kept = False
    for file_number, (seismic_name, velocity_name) in enumerate(file_names(family, n_files)):
        first = file_number * samples_per_file
        count = min(samples_per_file, samples - first)
        seismic_path, velocity_path = root / seismic_name, root / velocity_name
        written.append(seismic_path)
        if _complete(seismic_path, count, seismic_shape) and _complete(velocity_path, count, VELOCITY_SHAPE):
            kept = True
            if progress:
                progress(count)
            continue
        seismic_path.parent.mkdir(parents=True, exist_ok=True)
        velocity_path.parent.mkdir(parents=True, exist_ok=True)
        spec = {"family": family, "seed": seed, "first": first, "count": count, "n_time": n_time}

        def draw(start: int, n: int, first: int = first) -> np.ndarray:
            return np.stack([sample_velocity(family, seed, first + start + i) for i in range(n)])

        write_file(spec, count, draw, seismic_path, velocity_path, device, batch_size, n_time, progress)
    return kept


def _partial(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


def write_file(
    spec: dict,
    count: int,
    velocities: Callable[[int, int], np.ndarray],
    seismic_path: Path,
    velocity_path: Path,
    device: str,
    batch_size: int,
    n_time: int,
    progress: Callable[[int], None] | None,
) -> None:
    """Simulate `count` models into one (seismic, velocity) file pair, resumable.

    `velocities(start, n)` gives models start..start+n-1 of the file, (n, 70, 70) m/s. Samples go
    into `.partial` files with a `.progress` marker holding `spec` and the count done; a later call
    with the same `spec` continues there, and the files are moved into place when complete.
    """
    marker = seismic_path.with_name(seismic_path.name + ".progress")
    seismic_tmp, velocity_tmp = _partial(seismic_path), _partial(velocity_path)
    done = 0
    if marker.is_file() and seismic_tmp.is_file() and velocity_tmp.is_file():
        saved = json.loads(marker.read_text())
        if {k: saved.get(k) for k in spec} == spec:
            done = int(saved["done"])
    mode = "r+" if done else "w+"
    shape = (count, N_SOURCES, n_time, N_RECEIVERS)
    seismic = np.lib.format.open_memmap(
        seismic_tmp, mode=mode, dtype=np.float32, shape=None if done else shape
    )
    velocity = np.lib.format.open_memmap(
        velocity_tmp, mode=mode, dtype=np.float32, shape=None if done else (count, *VELOCITY_SHAPE)
    )
    if progress and done:
        progress(done)
    while done < count:
        n = min(batch_size, count - done)
        models = np.array(velocities(done, n), dtype=np.float32)  # a writable copy for torch
        gathers = forward_model(torch.from_numpy(models).to(device), n_time=n_time).cpu().numpy()
        seismic[done : done + n] = gathers
        velocity[done : done + n, 0] = models
        seismic.flush()
        velocity.flush()
        done += n
        marker.write_text(json.dumps({**spec, "done": done}))
        if progress:
            progress(n)
    del seismic, velocity
    os.replace(velocity_tmp, velocity_path)
    os.replace(seismic_tmp, seismic_path)
    marker.unlink()
