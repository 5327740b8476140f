"""`mtl fwi <verb>`: generate synthetic OpenFWI data, check a dataset, cache it as float16, submit to Kaggle.

Heavy imports (torch, deepwave, lightning) happen inside the verbs so `mtl --help` stays fast.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def generate(
    family: str = "FlatVel-A",
    samples: int = 500,
    out: str = ".cache/mtl/fwi/generated",
    seed: int = 0,
    device: str = "cpu",
    samples_per_file: int = 500,
    batch_size: int = 1,
    threads: int | None = None,
) -> list[str]:
    """Generate velocity models and their shot gathers with deepwave, in the OpenFWI layout.

    Writes `<out>/<Family>/data/dataN.npy` + `model/modelN.npy` (Vel/Style) or `seis{P}_1_{i}.npy` +
    `vel{P}_1_{i}.npy` (Fault). Deterministic for a seed; rerunning continues an interrupted run.

    Args:
        family: OpenFWI family, e.g. FlatVel-A, CurveFault-B, Style-A.
        samples: number of samples to have in total.
        out: dataset root; the family folder is created inside it.
        seed: seed of the velocity models (sample k depends only on seed, family and k).
        device: torch device for the wave simulation, e.g. cpu or cuda.
        samples_per_file: samples per .npy file (OpenFWI: 500).
        batch_size: velocity models simulated together (1 was fastest on a CPU; use e.g. 64 on a GPU).
        threads: CPU threads while simulating (None: torch's default).
    """
    from rich.progress import Progress

    from fwi.data.generator import generate as run_generator

    with Progress() as bar:
        task = bar.add_task(f"{family} -> {out}", total=samples)
        files = run_generator(
            family,
            samples,
            out,
            seed=seed,
            device=device,
            samples_per_file=samples_per_file,
            batch_size=batch_size,
            threads=threads,
            progress=lambda n: bar.advance(task, n),
        )
    return [str(f) for f in files]


def forward(
    velocity: str,
    out: str,
    device: str = "cpu",
    batch_size: int = 1,
    threads: int | None = None,
) -> list[str]:
    """Forward-model velocity maps into the OpenFWI layout, with the generator's physics.

    Takes `(N, 1, 70, 70)` or `(N, 70, 70)` m/s maps (OpenFWI's model files, augmented maps, a model's
    predictions for pseudo-labels). Every input is checked first (shape, NaN/inf, 1500-4500 m/s);
    `modelN.npy` becomes `data/dataN.npy` + `model/modelN.npy`, `vel{P}_1_{i}.npy` becomes
    `seis{P}_1_{i}.npy` + `vel{P}_1_{i}.npy`, other names the next free N (recorded in
    forward_sources.json). Rerunning continues an interrupted run; nothing finished is overwritten.

    Args:
        velocity: a .npy file or a folder of them (recursively).
        out: output root (the OpenFWI layout is written inside it).
        device: torch device for the wave simulation, e.g. cpu or cuda.
        batch_size: models simulated together (1 was fastest on a CPU; e.g. 64 on a GPU).
        threads: CPU threads while simulating (None: torch's default).
    """
    import torch
    from rich.progress import Progress

    from fwi.data.forward_files import forward_velocity_files

    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        with Progress() as bar:
            task = bar.add_task(f"{velocity} -> {out}", total=None)
            files = forward_velocity_files(
                velocity,
                out,
                device=device,
                batch_size=batch_size,
                progress=lambda n: bar.advance(task, n),
                on_plan=lambda total: bar.update(task, total=total),
            )
    finally:
        torch.set_num_threads(previous)
    for path in files:
        print(path)
    return [str(f) for f in files]


def check(
    root: str,
    family: str | None = None,
    scan: bool = False,
    on_bad: str = "error",
    decimation: int | None = None,
) -> dict[str, Any]:
    """Check an OpenFWI / Kaggle train_samples root: pairs, shapes, dtypes, sizes; optionally every value.

    With --decimation k, also the share of spectral energy above the Nyquist frequency of every k-th
    time step (500/k Hz), per family, from 8 evenly spaced samples per file: what slicing without a
    low-pass would alias (`time_decimation: k` filters it out first).

    Args:
        root: dataset root (family folders) or one family's folder with --family.
        family: family of a single-family root.
        scan: also read every sample: NaN/inf anywhere, velocity maps outside 1500-4500 m/s (reads
            all the data once).
        on_bad: error (stop at the first bad file) or skip (report and go on).
        decimation: a time decimation factor k to measure the aliased energy share for.
    """
    import numpy as np

    from fwi.data.decimation import energy_above_nyquist
    from fwi.data.formats import FwiDataError, discover_pairs, velocity_range_problem

    pairs = discover_pairs(root, family=family, on_bad=on_bad)
    report: dict[str, Any] = {"files": len(pairs), "families": {}, "bad_samples": []}
    for pair in pairs:
        entry = report["families"].setdefault(pair.family, {"files": 0, "samples": 0, "dtypes": []})
        entry["files"] += 1
        entry["samples"] += pair.count
        if pair.seismic_dtype not in entry["dtypes"]:
            entry["dtypes"].append(pair.seismic_dtype)
        if scan:
            for path in (pair.seismic, pair.velocity):
                array = np.load(path, mmap_mode="r", allow_pickle=False)
                for i in range(array.shape[0]):
                    sample = np.asarray(array[i])
                    problem = None if np.isfinite(sample).all() else "NaN/inf values"
                    if problem is None and path == pair.velocity:
                        problem = velocity_range_problem(sample)
                    if problem:
                        message = f"{path}: sample {i}: {problem}"
                        if on_bad != "skip":
                            raise FwiDataError(message)
                        report["bad_samples"].append(message)
    if decimation:
        for name, entry in report["families"].items():
            gathers = []
            for pair in (p for p in pairs if p.family == name):
                array = np.load(pair.seismic, mmap_mode="r", allow_pickle=False)
                rows = np.unique(np.linspace(0, array.shape[0] - 1, 8).round().astype(int))
                gathers.append(np.asarray(array[rows], dtype=np.float32))
            share = energy_above_nyquist(np.concatenate(gathers), decimation)
            entry[f"energy_above_nyquist_k{decimation}"] = float(f"{share:.3g}")
    print(json.dumps(report, indent=2))
    return report


def splits(
    root: str,
    family: str | None = None,
    split: str = "files",
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    folds: int = 5,
    fold: int | None = None,
    holdout_family: str | None = None,
) -> dict[str, Any]:
    """Show which files each split gets, as `FwiDataModule` would build it (by whole files).

    With --split kfold and no --fold, every fold is listed; with --split leave_family_out and no
    --holdout_family, every family is held out once. Train with the same values under `data.init_args`.

    Args:
        root: dataset root (family folders) or one family's folder with --family.
        family: family of a single-family root.
        split: files, kfold or leave_family_out.
        val_fraction: fraction of each family's files for validation (files).
        test_fraction: fraction of each family's files for test (files).
        folds: number of folds (kfold).
        fold: one fold to show (kfold); default all.
        holdout_family: the family held out (leave_family_out); default each in turn.
    """
    from fwi.data.formats import discover_pairs
    from fwi.data.splits import make_split

    pairs = discover_pairs(root, family=family)
    if split == "kfold":
        variants = {f"fold {k}": {"fold": k} for k in ([fold] if fold is not None else range(folds))}
    elif split == "leave_family_out":
        held = [holdout_family] if holdout_family else sorted({p.family for p in pairs})
        variants = {f"holdout {name}": {"holdout_family": name} for name in held}
    else:
        variants = {split: {}}
    report: dict[str, Any] = {}
    for label, extra in variants.items():
        options = {"val_fraction": val_fraction, "test_fraction": test_fraction, "folds": folds, **extra}
        chosen = make_split(pairs, split, **options)
        report[label] = {
            part: [f"{p.family}: {p.seismic.relative_to(Path(root))} ({p.count})" for p in files]
            for part, files in chosen.items()
        }
    print(json.dumps(report, indent=2))
    return report


def cache(root: str, out: str, family: str | None = None, velocity: bool = False) -> list[str]:
    """Convert float32 seismic files once into a float16 copy with the same layout (half the bytes).

    Every value is checked to be finite and within float16's range (|x| <= 65504) before writing;
    files already converted are kept. Velocity files are copied as float32 unless --velocity, because
    float16 steps are 2-4 m/s between 2048 and 4500 m/s.

    Args:
        root: source root (family folders) or one family's folder with --family.
        out: destination root; the same relative paths are written under it.
        family: family of a single-family root.
        velocity: also store the velocity maps as float16.
    """
    from fwi.data.cache import convert_to_float16

    return [str(p) for p in convert_to_float16(root, out, family=family, velocity=velocity)]


def submit(
    checkpoint: str,
    test_dir: str,
    out: str = "submission.csv",
    tta: bool = False,
    batch_size: int = 16,
    num_workers: int = 0,
    device: str = "cpu",
    uncertainty: bool = False,
    mc_passes: int = 16,
    calibrated_sigma: bool = True,
) -> str:
    """Write a Kaggle GWI submission CSV from a checkpoint or an export bundle.

    Streams over `<test_dir>/<oid>.npy` with constant memory, infers with the input precision the model
    was trained on (float16 gathers when trained on the float16 cache; fp16 autocast on CUDA), writes
    float32 m/s as `oid_ypos,x_1,x_3,...,x_69` with 70 rows per file, and refuses NaN or values outside
    [1500, 4500] m/s (the file is only moved into place when every row is valid). With --uncertainty
    true also `<out>.std.npz`: a (70, 70) float16 sigma map in m/s per oid (`np.load(path)[oid]`), the
    members' spread for an ensemble bundle, else the spread of --mc_passes MC-dropout passes, times the
    factor `mtl fwi calibrate --write_bundle true` stored in the bundle (if any); the CSV is unchanged
    by it.

    Args:
        checkpoint: a `.ckpt` from `mtl fit` or an export bundle directory.
        test_dir: directory of Kaggle test files `<oid>.npy`, each (5, 1000, 70).
        out: CSV path to write.
        tta: average with the mirrored survey's prediction flipped back (mirror test-time augmentation).
        batch_size: test files per batch.
        num_workers: DataLoader workers reading files.
        device: torch device, e.g. cpu or cuda.
        uncertainty: also write per-pixel sigma maps to `<out>.std.npz`.
        mc_passes: MC-dropout passes per batch for --uncertainty (models that are not ensembles).
        calibrated_sigma: multiply the sigma maps by the bundle's fitted factor (sigma_calibration.json).
    """
    from fwi.submission import write_submission

    path = write_submission(
        checkpoint,
        test_dir,
        out,
        tta,
        batch_size,
        num_workers,
        device,
        uncertainty,
        mc_passes,
        calibrated_sigma=calibrated_sigma,
    )
    return str(path)


def refine(
    checkpoint: str,
    test_dir: str,
    out: str = "submission.csv",
    steps: int = 10,
    step_size: float = 10.0,
    prior: str = "tv",
    tv_weight: float = 0.05,
    tta: bool = False,
    batch_size: int = 4,
    device: str = "cpu",
) -> str:
    """Write a Kaggle submission whose predictions are refined by full-waveform inversion.

    Each test gather's prediction is the starting model of `steps` gradient steps through the same
    wave physics as the generator (deepwave), minimising the misfit to the observed gathers with a prior,
    velocities kept in [1500, 4500] m/s (see `fwi.physics_refinement`). About one forward and one
    backward simulation per sample and step: on a CPU thread roughly a second per sample and step.

    Args:
        checkpoint: a `.ckpt` from `mtl fit` or an export bundle directory.
        test_dir: directory of Kaggle test files `<oid>.npy`, each (5, 1000, 70).
        out: CSV path to write.
        steps: refinement steps per sample (0: the network's prediction unchanged).
        step_size: m/s that the most-changed cell moves per step (steepest descent).
        prior: "tv" (2-D total variation), "flat" (laterally constant layers, FlatVel) or "none".
        tv_weight: weight of the total-variation term (prior "tv").
        tta: start from the mirror-TTA prediction.
        batch_size: test files refined together.
        device: torch device, e.g. cpu or cuda.
    """
    from fwi.physics_refinement import write_refined_submission

    return str(
        write_refined_submission(
            checkpoint, test_dir, out, steps, step_size, prior, tv_weight, tta, batch_size, device
        )
    )


def import_openfwi(checkpoint: str, out: str, family: str) -> str:
    """Turn an OpenFWI InversionNet checkpoint (lanl/OpenFWI train.py) into an export bundle.

    The bundle carries OpenFWI's seismic limits of `family` and works with `mtl fwi submit` and `mtl
    serve`; its `model.ckpt` works with `mtl validate --ckpt_path`. Read with weights_only=True
    (argparse.Namespace allowed), keys mapped strictly: a foreign checkpoint is refused naming the file.

    Args:
        checkpoint: OpenFWI's `checkpoint.pth` (or any `torch.save` of `{"model": state_dict, ...}`).
        out: new bundle directory (must not exist or be empty).
        family: the OpenFWI family it was trained on (picks `dataset_config.json`'s limits).
    """
    from fwi.openfwi_import import import_openfwi as run_import

    bundle = run_import(checkpoint, out, family)
    print(f"wrote {bundle} (OpenFWI InversionNet, {family} limits)")
    return str(bundle)


def pseudo_label(
    checkpoint: str,
    test_dir: str,
    out: str,
    family: str,
    tta: bool = False,
    batch_size: int = 16,
    device: str = "cpu",
) -> list[str]:
    """Turn unlabelled gathers into training data: predict them, then forward-model the predictions.

    Writes `<out>/predictions/` (the predicted maps and the test file of each) and `<out>/<family>/` in
    the OpenFWI layout (simulated gathers + the predicted maps), which `FwiDataModule` reads beside the
    real families (see `fwi.pseudo_labels`). Rerunning continues an interrupted run.

    Args:
        checkpoint: a `.ckpt` from `mtl fit` or an export bundle directory.
        test_dir: directory of Kaggle test files `<oid>.npy`, each (5, 1000, 70).
        out: output root.
        family: the family folder to write (Kaggle test files have none; e.g. the one they resemble).
        tta: predict with mirror test-time augmentation.
        batch_size: test files predicted together.
        device: torch device for prediction and simulation.
    """
    from fwi.pseudo_labels import write_pseudo_labels

    return [
        str(p) for p in write_pseudo_labels(checkpoint, test_dir, out, family, tta, batch_size, device=device)
    ]


def commands() -> dict[str, Callable[..., Any]]:
    from fwi import model_tools

    return {
        "generate": generate,
        "check": check,
        "splits": splits,
        "cache": cache,
        "submit": submit,
        "refine": refine,
        "models": model_tools.models,
        "ensemble": model_tools.ensemble,
        "calibrate": model_tools.calibrate,
        "import-openfwi": import_openfwi,
        "forward": forward,
        "pseudo-label": pseudo_label,
    }
