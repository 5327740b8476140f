"""FWI model families, their ensembles, TV refinement and calibrated uncertainty, on one generated set and one budget.

    .venv/bin/python benchmarks/fwi_models.py [--steps 400] [--batch 8] [--threads 1] [--seeds 3] [--out bench.json]

Data: FlatVel-A and CurveFault-A generated with deepwave (`fwi.data.generator`, seed 7, 100 samples a
file, 12 files a family, one process per family) into --root when absent (kept there: a second run
starts training at once). Per family files 1-10 train (2000 samples in all), file 11 validates
(200: picks the best family, fits the ensemble weights, the TV weight and the sigma factor), file
12 is the test set every row is scored on (200). Nothing is chosen on the test file.

Training: every model the same AdamW steps on the same batches (same order, same mirror flips),
L1 + L2 on [-1, 1] velocity, the same schedule (linear warm-up over the first 5 % of the steps,
then cosine decay to zero; peak --lr), on the same threads. Train samples/s is measured over those
steps, inference samples/s over the test set.

Rows: each model; the training set's mean map (what a model must beat); the ensembles of the five
families (per-pixel median, mean, weights fitted on the validation file: one global vector, and one
per family used by each test sample's family), the median with flip TTA (test file only); a seed
ensemble (the family best on the validation file trained --seeds times with different
initialisation and batch order, averaged), and the weighted ensemble of every model trained (five
families and the extra seeds); the ensemble best on the validation file with TV refinement (family
prior when the family is known, guessed from the map when not, as on Kaggle); TV refinement of the
family best on the validation file; physics refinement (`fwi.physics_refinement`, 8 steepest-descent
FWI steps through deepwave) of that TV-refined ensemble on the first 8 test samples of each family,
beside the same rows before it (on all 200 test samples it would take longer than the training).
"/ best member" divides by the test MAE of the best single model of the first table, measured in the
same run (over all test samples: compare the two physics rows with each other).

Uncertainty: for the five-family ensemble's spread, the seed ensemble's spread and MC dropout of
the best family, coverage of +-1 and +-2 sigma, Gaussian NLL and Spearman(sigma, |error|) on the
test file as predicted, and after multiplying sigma by one factor s fitted on the validation file
(`fwi.uncertainty.fit_sigma_scale`, NLL and 1-sigma-coverage objectives).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics.functional.image import structural_similarity_index_measure

from fwi.data.datasets import mirror_sample
from fwi.data.families import FAMILIES
from fwi.data.formats import FilePair, discover_pairs
from fwi.data.generator import generate
from fwi.data.normalization import denormalize_velocity, normalize_velocity, seismic_limits
from fwi.ensemble import combine, fit_weights
from fwi.models import parameter_count
from fwi.physics_refinement import refine_velocity
from fwi.refinement import flat_families_mask, refine
from fwi.task import VelocityInversionTask
from fwi.uncertainty import (
    calibration_report,
    fit_sigma_scale,
    has_dropout,
    mc_dropout_samples,
    mean_and_std,
)

BENCH_FAMILIES = ("FlatVel-A", "CurveFault-A")
SAMPLES_PER_FILE = 100
TRAIN_FILES, VAL_FILES, TEST_FILES = 10, 1, 1  # per family, in file order
GENERATOR_SEED = 7
MODELS: dict[str, dict] = {
    "inversionnet": {"width": 0.25},
    "heat_kernel": {"width": 0.25, "steps": 3},
    "trace_egnn": {"dim": 32, "layers": 3, "encoder_channels": 8, "decoder_channels": 16},
    "trace_transformer": {"dim": 32, "depth": 3, "heads": 4, "encoder_channels": 8, "decoder_channels": 16},
    "vit_unet": {
        "image_size": [128, 352],
        "encoder_args": {"embed_dim": 96, "depth": 4, "num_heads": 3},
        "decoder_channels": 32,
    },
}
TV_WEIGHTS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
# physics refinement (`mtl fwi refine`'s steepest descent through deepwave): the first test samples of
# each family only, since each FWI step is a forward and a backward wave simulation per sample
PHYSICS_SAMPLES_PER_FAMILY = 8
PHYSICS_STEPS = 8
PHYSICS_STEP_SIZE = 40.0  # m/s per step for the largest gradient cell, as benchmarks/fwi_refinement.py
WARMUP_SHARE = 0.05
MC_PASSES = 8


# -- data -----------------------------------------------------------------------------------------
def generate_family(family: str, root: str) -> tuple[str, float]:
    """One family's files (a process of its own: deepwave on one thread each); seconds taken."""
    start = time.perf_counter()
    files = TRAIN_FILES + VAL_FILES + TEST_FILES
    generate(
        family,
        files * SAMPLES_PER_FILE,
        root,
        seed=GENERATOR_SEED,
        samples_per_file=SAMPLES_PER_FILE,
        batch_size=8,
        threads=1,
    )
    return family, time.perf_counter() - start


@dataclass
class Split:
    """Samples of whole files: seismic read through memory maps on demand, velocity and family in memory."""

    pairs: list[FilePair]
    velocity: torch.Tensor  # (N, 1, 70, 70) m/s
    family: torch.Tensor  # (N,) index into FAMILIES

    def __post_init__(self) -> None:
        self.arrays = [np.load(p.seismic, mmap_mode="r", allow_pickle=False) for p in self.pairs]
        counts = [a.shape[0] for a in self.arrays]
        self.file_of = np.repeat(np.arange(len(counts)), counts)
        self.row_of = np.concatenate([np.arange(c) for c in counts])

    def __len__(self) -> int:
        return len(self.file_of)

    def seismic(self, index) -> torch.Tensor:
        rows = [self.arrays[self.file_of[i]][self.row_of[i]] for i in np.asarray(index).reshape(-1)]
        return torch.from_numpy(np.stack(rows).astype(np.float32))


def load_split(root: Path, processes: int) -> tuple[dict[str, Split], float]:
    """{"train"|"val"|"test": Split} by whole files, as FwiDataModule splits; seconds spent generating."""
    start = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(processes, len(BENCH_FAMILIES)), mp_context=context) as pool:
        for family, seconds in pool.map(generate_family, BENCH_FAMILIES, [str(root)] * len(BENCH_FAMILIES)):
            print(f"{family}: data ready in {seconds:.0f} s", flush=True)
    generation_s = time.perf_counter() - start
    pairs = discover_pairs(root)
    parts: dict[str, list[FilePair]] = {"train": [], "val": [], "test": []}
    for family in BENCH_FAMILIES:
        files = [p for p in pairs if p.family == family]
        parts["train"] += files[:TRAIN_FILES]
        parts["val"] += files[TRAIN_FILES : TRAIN_FILES + VAL_FILES]
        parts["test"] += files[TRAIN_FILES + VAL_FILES : TRAIN_FILES + VAL_FILES + TEST_FILES]
    splits = {}
    for name, chosen in parts.items():
        velocity = torch.from_numpy(np.concatenate([np.load(p.velocity) for p in chosen]).astype(np.float32))
        family = torch.cat([torch.full((p.count,), FAMILIES.index(p.family)) for p in chosen])
        splits[name] = Split(chosen, velocity, family)
    return splits, generation_s


# -- training and prediction ----------------------------------------------------------------------
def warmup_cosine(step: int, steps: int) -> float:
    """Learning-rate factor: linear warm-up over WARMUP_SHARE of the steps, then cosine to zero."""
    warmup = max(1, round(WARMUP_SHARE * steps))
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def train(
    name: str, data: dict[str, Split], steps: int, batch: int, lr: float, seed: int = 0
) -> tuple[VelocityInversionTask, float]:
    """A model trained `steps` AdamW steps; seed 0 is every family's run (the same batches for all)."""
    torch.manual_seed(seed)
    task = VelocityInversionTask(
        model=name, model_args=MODELS[name], l1_weight=1.0, l2_weight=1.0, log_images=False
    )
    low, high = seismic_limits(data["train"].pairs)
    task.seismic_low.copy_(torch.as_tensor(low))
    task.seismic_high.copy_(torch.as_tensor(high))
    optimizer = torch.optim.AdamW(task.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_cosine(step, steps))
    order = torch.Generator().manual_seed(1 + seed)  # seed 0: the same batches and flips for every model
    train_set = data["train"]
    task.train()
    start = time.perf_counter()
    for _ in range(steps):
        index = torch.randint(0, len(train_set), (batch,), generator=order)
        seismic, velocity = train_set.seismic(index), train_set.velocity[index].clone()
        flip = torch.rand(batch, generator=order) < 0.5
        if flip.any():
            seismic[flip], velocity[flip] = mirror_sample(seismic[flip], velocity[flip])
        pred = task.normalized_prediction(seismic, train_set.family[index])
        target = normalize_velocity(velocity)
        loss = F.l1_loss(pred, target) + F.mse_loss(pred, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    return task.eval(), steps * batch / (time.perf_counter() - start)


def chunks(split: Split, size: int = 16):
    for i in range(0, len(split), size):
        index = np.arange(i, min(i + size, len(split)))
        yield split.seismic(index), split.family[index]


def predict(module, split: Split) -> tuple[torch.Tensor, float]:
    """(N, 1, 70, 70) m/s over the split and samples/s (reading the files included)."""
    start = time.perf_counter()
    with torch.no_grad():
        maps = [module(seismic, family).float() for seismic, family in chunks(split)]
    return torch.cat(maps), len(split) / (time.perf_counter() - start)


class MirroredSurvey(torch.nn.Module):
    """A model applied to the mirrored survey, its map flipped back (the second half of flip TTA)."""

    def __init__(self, module) -> None:
        super().__init__()
        self.module = module

    def forward(self, seismic: torch.Tensor, family: torch.Tensor | None = None) -> torch.Tensor:
        mirrored, _ = mirror_sample(seismic)
        return torch.flip(self.module(mirrored, family).float(), dims=(-1,))


def mc_dropout(module, split: Split, passes: int) -> tuple[torch.Tensor, torch.Tensor]:
    samples = torch.cat([mc_dropout_samples(module, seismic, passes) for seismic, _ in chunks(split)], dim=1)
    return mean_and_std(samples)


# -- scores ---------------------------------------------------------------------------------------
def scores(velocity: torch.Tensor, split: Split) -> dict[str, float]:
    target = split.velocity
    mae_ms = float((velocity - target).abs().mean())
    ssim = structural_similarity_index_measure(
        normalize_velocity(velocity), normalize_velocity(target), data_range=2.0
    )
    result = {"mae_ms": mae_ms, "mae_norm": mae_ms / 1500.0, "ssim": float(ssim)}
    for family in BENCH_FAMILIES:
        chosen = split.family == FAMILIES.index(family)
        result[f"mae_ms/{family}"] = float((velocity[chosen] - target[chosen]).abs().mean())
    return result


def mae(velocity: torch.Tensor, split: Split) -> float:
    return float((velocity - split.velocity).abs().mean())


def refined(velocity: torch.Tensor, family: torch.Tensor | None, weight: float) -> torch.Tensor:
    flat = None if family is None else flat_families_mask(family)
    return denormalize_velocity(refine(normalize_velocity(velocity), "auto", weight, flat=flat))


@dataclass
class Targets:
    """True maps and families of some samples: what `scores` needs of a Split."""

    velocity: torch.Tensor  # (N, 1, 70, 70) m/s
    family: torch.Tensor  # (N,)


def physics_rows(label: str, start: torch.Tensor, split: Split, params: int) -> list[dict]:
    """Rows for FWI refinement of `start` (N, 1, 70, 70) m/s: the start and the refined maps on the first
    PHYSICS_SAMPLES_PER_FAMILY test samples of each family (laterally flat prior for FlatVel, TV else)."""
    chosen = torch.cat(
        [
            torch.nonzero(split.family == FAMILIES.index(f))[:PHYSICS_SAMPLES_PER_FAMILY, 0]
            for f in BENCH_FAMILIES
        ]
    )
    targets = Targets(split.velocity[chosen], split.family[chosen])
    refined_maps = start[chosen].clone()
    began = time.perf_counter()
    for family in BENCH_FAMILIES:
        rows = torch.nonzero(targets.family == FAMILIES.index(family))[:, 0]
        prior = "flat" if family.startswith("FlatVel") else "tv"
        result = refine_velocity(
            refined_maps[rows, 0],
            split.seismic(chosen[rows].numpy()),
            PHYSICS_STEPS,
            PHYSICS_STEP_SIZE,
            prior,
        )
        refined_maps[rows, 0] = result.velocity.detach()
        print(
            f"physics refinement, {family}: misfit {result.misfit[0]:.4f} -> {result.misfit[-1]:.4f}",
            flush=True,
        )
    speed = len(chosen) / (time.perf_counter() - began)
    subset = f"{len(chosen)} test samples"
    return [
        {"row": f"{label}, on {subset}", "params": params, **scores(start[chosen], targets)},
        {
            "row": f"{label} + physics refinement ({PHYSICS_STEPS} FWI steps), on {subset}",
            "params": params,
            "infer_sps": speed,
            **scores(refined_maps, targets),
        },
    ]


def best_tv_weight(velocity: torch.Tensor, split: Split, family_known: bool) -> float:
    family = split.family if family_known else None
    errors = {w: mae(refined(velocity, family, w), split) for w in TV_WEIGHTS}
    return min(errors, key=errors.get)


def family_weighted(
    maps: torch.Tensor, family: torch.Tensor, vectors: dict[int, torch.Tensor]
) -> torch.Tensor:
    """(M, N, 1, 70, 70) -> (N, 1, 70, 70): each sample combined with its family's weight vector."""
    rows = torch.stack([vectors[int(f)] for f in family])  # (N, M)
    return torch.einsum("mn...,nm->n...", maps, rows)


def per_family_weights(maps: torch.Tensor, split: Split) -> dict[int, torch.Tensor]:
    return {
        int(f): fit_weights(maps[:, split.family == f], split.velocity[split.family == f])
        for f in split.family.unique()
    }


def uncertainty_rows(label: str, val: tuple, test: tuple, data: dict[str, Split]) -> dict:
    """Test-file calibration of sigma as predicted and after each factor fitted on the validation file."""
    (val_mean, val_sigma), (test_mean, test_sigma) = val, test
    result = {"label": label, "raw": calibration_report(test_mean, test_sigma, data["test"].velocity)}
    for objective in ("nll", "coverage"):
        scale = fit_sigma_scale(val_mean, val_sigma, data["val"].velocity, objective)
        report = calibration_report(test_mean, scale * test_sigma, data["test"].velocity)
        result[objective] = {"sigma_scale": scale, **report}
    return result


# -- the run --------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=".cache/mtl/fwi/bench-models-2x1200")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate of the schedule")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=3, help="runs of the best family in the seed ensemble")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--out", default=None, help="write every figure as JSON here too")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run_start = time.perf_counter()
    load_at_start = os.getloadavg()
    data, generation_s = load_split(Path(args.root), processes=2)
    print(
        f"train {len(data['train'])}, val {len(data['val'])}, test {len(data['test'])} samples; "
        f"{args.steps} steps x batch {args.batch}, peak lr {args.lr}, {args.threads} threads",
        flush=True,
    )
    names = args.models.split(",")
    rows, tasks, val_maps, test_maps, speeds = [], {}, {}, {}, {}
    for name in names:
        task, train_speed = train(name, data, args.steps, args.batch, args.lr)
        test_maps[name], speeds[name] = predict(task, data["test"])
        val_maps[name], _ = predict(task, data["val"])
        tasks[name] = task
        row = {
            "row": name,
            "params": parameter_count(task.net),
            "train_sps": train_speed,
            "infer_sps": speeds[name],
            "val_mae_ms": mae(val_maps[name], data["val"]),
            **scores(test_maps[name], data["test"]),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    member_rows = list(rows)
    best = min(member_rows, key=lambda r: r["mae_ms"])  # the comparison: the best single model on test
    chosen = min(member_rows, key=lambda r: r["val_mae_ms"])["row"]  # what a user could know: validation
    mean_map = data["train"].velocity.mean(0, keepdim=True).expand_as(data["test"].velocity)
    rows.append({"row": "training mean map (no model)", "params": 0, **scores(mean_map, data["test"])})

    # the five-family ensembles
    val_stack = torch.stack([val_maps[n] for n in names])
    test_stack = torch.stack([test_maps[n] for n in names])
    members_params = sum(r["params"] for r in member_rows)
    ensemble_speed = 1.0 / sum(1.0 / speeds[n] for n in names)
    weights = fit_weights(val_stack, data["val"].velocity)
    family_vectors = per_family_weights(val_stack, data["val"])
    candidates = {  # label -> (validation map, test map), for choosing on validation
        "ensemble median": (combine(val_stack, "median"), combine(test_stack, "median")),
        "ensemble mean": (combine(val_stack, "mean"), combine(test_stack, "mean")),
        "ensemble weighted (global)": (
            combine(val_stack, "weighted", weights),
            combine(test_stack, "weighted", weights),
        ),
        "ensemble weighted (per family)": (
            family_weighted(val_stack, data["val"].family, family_vectors),
            family_weighted(test_stack, data["test"].family, family_vectors),
        ),
    }
    # flip TTA as VelocityEnsemble(tta=True) does it, reusing the plain maps: one mirrored pass per
    # member, on the test file only (it is reported, not a candidate for the TV rows)
    start = time.perf_counter()
    mirrored = torch.stack([predict(MirroredSurvey(tasks[n]), data["test"])[0] for n in names])
    tta_test = combine(0.5 * (test_stack + mirrored), "median")
    tta_speed = len(data["test"]) / (time.perf_counter() - start + len(data["test"]) / ensemble_speed)

    # the seed ensemble of the family best on validation, and everything together
    seed_tasks = [tasks[chosen]]
    seed_val, seed_test = [val_maps[chosen]], [test_maps[chosen]]
    for seed in range(1, args.seeds):
        task, _ = train(chosen, data, args.steps, args.batch, args.lr, seed=seed)
        seed_tasks.append(task)
        seed_val.append(predict(task, data["val"])[0])
        seed_test.append(predict(task, data["test"])[0])
        print(f"{chosen} seed {seed}: val MAE {mae(seed_val[-1], data['val']):.1f} m/s", flush=True)
    seed_val, seed_test = torch.stack(seed_val), torch.stack(seed_test)
    seed_label = f"seed ensemble: {chosen} x{len(seed_tasks)} (mean)"
    candidates[seed_label] = (seed_val.mean(0), seed_test.mean(0))
    all_val, all_test = torch.cat([val_stack, seed_val[1:]]), torch.cat([test_stack, seed_test[1:]])
    all_weights = fit_weights(all_val, data["val"].velocity)
    all_label = f"ensemble weighted (global), 5 families + {len(seed_tasks) - 1} more {chosen} seeds"
    candidates[all_label] = (
        combine(all_val, "weighted", all_weights),
        combine(all_test, "weighted", all_weights),
    )

    chosen_params = next(r["params"] for r in member_rows if r["row"] == chosen)
    for label, (val_map, test_map) in candidates.items():
        params = chosen_params * len(seed_tasks) if label == seed_label else members_params
        if label == all_label:
            params = members_params + chosen_params * (len(seed_tasks) - 1)
        row = {
            "row": label,
            "params": params,
            "infer_sps": speeds[chosen] / len(seed_tasks) if label == seed_label else ensemble_speed,
            "val_mae_ms": mae(val_map, data["val"]),
            **scores(test_map, data["test"]),
        }
        rows.append(row)
        if label == "ensemble weighted (per family)":
            row = {"row": "ensemble median + flip TTA", "params": members_params, "infer_sps": tta_speed}
            rows.append({**row, **scores(tta_test, data["test"])})

    # TV refinement of the ensemble best on validation, and of the family best on validation
    best_label = min(candidates, key=lambda label: mae(candidates[label][0], data["val"]))
    val_best, test_best = candidates[best_label]
    best_params = next(r["params"] for r in rows if r["row"] == best_label)
    for known in (True, False):
        weight = best_tv_weight(val_best, data["val"], known)
        family = data["test"].family if known else None
        label = f"{best_label} + TV ({'family prior' if known else 'guessed prior'}, weight {weight})"
        test_refined = refined(test_best, family, weight)
        rows.append({"row": label, "params": best_params, **scores(test_refined, data["test"])})
        if known:
            physics_start = (label, test_refined)
    weight = best_tv_weight(val_maps[chosen], data["val"], True)
    rows.append(
        {
            "row": f"{chosen} + TV (family prior, weight {weight})",
            "params": chosen_params,
            **scores(refined(test_maps[chosen], data["test"].family, weight), data["test"]),
        }
    )
    rows += physics_rows(*physics_start, data["test"], best_params)
    for row in rows:
        row["vs_best_member"] = row["mae_ms"] / best["mae_ms"]

    # uncertainty: spread of the five families, of the seeds, MC dropout of the chosen family
    uncertainty = [
        uncertainty_rows(
            "five-family ensemble spread (weighted global)",
            (candidates["ensemble weighted (global)"][0], val_stack.std(0, correction=0)),
            (candidates["ensemble weighted (global)"][1], test_stack.std(0, correction=0)),
            data,
        ),
        uncertainty_rows(
            f"seed ensemble spread ({chosen} x{len(seed_tasks)})",
            (seed_val.mean(0), seed_val.std(0, correction=0)),
            (seed_test.mean(0), seed_test.std(0, correction=0)),
            data,
        ),
    ]
    if has_dropout(tasks[chosen]):
        torch.manual_seed(0)
        uncertainty.append(
            uncertainty_rows(
                f"MC dropout ({chosen}, {MC_PASSES} passes)",
                mc_dropout(tasks[chosen], data["val"], MC_PASSES),
                mc_dropout(tasks[chosen], data["test"], MC_PASSES),
                data,
            )
        )
    total_s = time.perf_counter() - run_start
    print_tables(rows, names, weights, family_vectors, all_weights, uncertainty, chosen, len(seed_tasks))
    load_at_end = os.getloadavg()
    print(
        f"\ngeneration {generation_s:.0f} s, total {total_s / 60:.1f} min; load average "
        f"{load_at_start[0]:.1f} at the start, {load_at_end[0]:.1f} at the end (15-min {load_at_end[2]:.1f})"
    )
    if args.out:
        result = {
            "args": vars(args),
            "samples": {name: len(split) for name, split in data.items()},
            "rows": rows,
            "weights": dict(zip(names, weights.tolist(), strict=True)),
            "family_weights": {FAMILIES[f]: v.tolist() for f, v in family_vectors.items()},
            "all_weights": all_weights.tolist(),
            "chosen_on_validation": chosen,
            "uncertainty": uncertainty,
            "generation_s": generation_s,
            "total_s": total_s,
            "load_average": {"start": load_at_start, "end": load_at_end},
        }
        Path(args.out).write_text(json.dumps(result, indent=2))


def print_tables(rows, names, weights, family_vectors, all_weights, uncertainty, chosen, seeds) -> None:
    print(
        "\n| row | params | train samples/s | infer samples/s | val MAE m/s | MAE m/s | MAE [-1,1] | SSIM "
        "| FlatVel-A | CurveFault-A | / best member |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        train_sps = f"{r['train_sps']:.1f}" if "train_sps" in r else "-"
        infer_sps = f"{r['infer_sps']:.1f}" if "infer_sps" in r else "-"
        val = f"{r['val_mae_ms']:.1f}" if "val_mae_ms" in r else "-"
        print(
            f"| {r['row']} | {r['params'] / 1e6:.2f}M | {train_sps} | {infer_sps} | {val} | {r['mae_ms']:.1f} | "
            f"{r['mae_norm']:.4f} | {r['ssim']:.3f} | {r['mae_ms/FlatVel-A']:.1f} | "
            f"{r['mae_ms/CurveFault-A']:.1f} | {r['vs_best_member']:.3f} |"
        )
    print(
        "\nweights fitted on the validation file (global):",
        {n: round(w, 3) for n, w in zip(names, weights.tolist(), strict=True)},
    )
    for f, vector in family_vectors.items():
        print(f"  {FAMILIES[f]}:", {n: round(w, 3) for n, w in zip(names, vector.tolist(), strict=True)})
    extra = [f"{chosen} seed {i}" for i in range(1, seeds)]
    print(
        "  five families + seeds:",
        {n: round(w, 3) for n, w in zip(names + extra, all_weights.tolist(), strict=True)},
    )
    print(
        "\n| sigma | s (fitted on validation) | mean sigma m/s | within 1 sigma (68.3%) | within 2 sigma (95.4%) "
        "| Gaussian NLL | Spearman(sigma, abs error) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for entry in uncertainty:
        for key, title in (
            ("raw", "as predicted"),
            ("nll", "x s (NLL)"),
            ("coverage", "x s (1-sigma coverage)"),
        ):
            report = entry[key]
            scale = f"{report['sigma_scale']:.2f}" if "sigma_scale" in report else "1"
            print(
                f"| {entry['label']}, {title} | {scale} | {report['mean_sigma_ms']:.1f} | "
                f"{report['coverage_1sigma']:.1%} | {report['coverage_2sigma']:.1%} | "
                f"{report['gaussian_nll']:.2f} | {report['spearman_sigma_abs_error']:.2f} |"
            )


if __name__ == "__main__":
    main()
