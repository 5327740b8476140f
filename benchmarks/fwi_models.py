"""FWI model families, their ensemble and its TV refinement, on one fixed generated set and one budget.

    .venv/bin/python benchmarks/fwi_models.py [--steps 32] [--batch 8] [--threads 2] [--out bench.json]

Data: FlatVel-A and CurveFault-A generated with deepwave (`fwi.data.generator`, seed 7, 32 samples a
file, 6 files a family) into --root when absent; per family files 1-4 train, file 5 validates (fits
the ensemble weights and picks the TV weight), file 6 is the test set every row is scored on. Every
model trains the same number of AdamW steps on the same batches (same seed, same mirror flips), L1 +
L2 on [-1, 1] velocity, on the same threads; train samples/s is measured over those steps and
inference samples/s over the test set.

Rows: each model; the training set's mean map (what a model must beat); the ensembles of all members (per-pixel median, mean, weights fitted on the
validation file), with flip TTA; the best ensemble with TV refinement (family prior when the family
is known, guessed from the map when not, as on Kaggle); TV refinement of the best single model.
The ensemble rows report their MAE against the best member measured in the same run, and the
uncertainty lines report calibration of the ensemble spread and of MC dropout on the test set.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics.functional.image import structural_similarity_index_measure

from fwi.data.datasets import mirror_sample
from fwi.data.families import FAMILIES
from fwi.data.formats import discover_pairs
from fwi.data.generator import generate
from fwi.data.normalization import denormalize_velocity, normalize_velocity, seismic_limits
from fwi.ensemble import VelocityEnsemble, combine, fit_weights
from fwi.models import parameter_count
from fwi.refinement import flat_families_mask, refine
from fwi.task import VelocityInversionTask
from fwi.uncertainty import calibration_report, has_dropout, mc_dropout_samples, mean_and_std

BENCH_FAMILIES = ("FlatVel-A", "CurveFault-A")
FILES_PER_FAMILY, SAMPLES_PER_FILE = 6, 32
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
TV_WEIGHTS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2)


def load_split(root: Path) -> dict[str, dict[str, torch.Tensor]]:
    """{"train"|"val"|"test": {"seismic", "velocity", "family"}} by whole files, as FwiDataModule splits."""
    for family in BENCH_FAMILIES:
        generate(
            family,
            FILES_PER_FAMILY * SAMPLES_PER_FILE,
            root,
            seed=7,
            samples_per_file=SAMPLES_PER_FILE,
            batch_size=8,
            threads=1,
        )
    pairs = discover_pairs(root)
    parts: dict[str, list] = {"train": [], "val": [], "test": []}
    for family in BENCH_FAMILIES:
        files = [p for p in pairs if p.family == family]
        for i, pair in enumerate(files[:FILES_PER_FAMILY]):
            parts["train" if i < 4 else "val" if i == 4 else "test"].append(pair)
    data = {}
    for name, chosen in parts.items():
        data[name] = {
            "seismic": torch.from_numpy(np.concatenate([np.load(p.seismic) for p in chosen])),
            "velocity": torch.from_numpy(np.concatenate([np.load(p.velocity) for p in chosen])),
            "family": torch.cat([torch.full((p.count,), FAMILIES.index(p.family)) for p in chosen]),
        }
    data["pairs_train"] = parts["train"]
    return data


def train(
    name: str, args: dict, data: dict, steps: int, batch: int, lr: float
) -> tuple[VelocityInversionTask, float]:
    torch.manual_seed(0)
    task = VelocityInversionTask(model=name, model_args=args, l1_weight=1.0, l2_weight=1.0, log_images=False)
    low, high = seismic_limits(data["pairs_train"])
    task.seismic_low.copy_(torch.as_tensor(low))
    task.seismic_high.copy_(torch.as_tensor(high))
    optimizer = torch.optim.AdamW(task.parameters(), lr=lr, weight_decay=1e-4)
    order = torch.Generator().manual_seed(1)  # the same batches and flips for every model
    train_set = data["train"]
    task.train()
    start = time.perf_counter()
    for _ in range(steps):
        index = torch.randint(0, train_set["seismic"].shape[0], (batch,), generator=order)
        seismic, velocity = train_set["seismic"][index].clone(), train_set["velocity"][index].clone()
        flip = torch.rand(batch, generator=order) < 0.5
        if flip.any():
            seismic[flip], velocity[flip] = mirror_sample(seismic[flip], velocity[flip])
        pred = task.normalized_prediction(seismic, train_set["family"][index])
        target = normalize_velocity(velocity)
        loss = F.l1_loss(pred, target) + F.mse_loss(pred, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return task.eval(), steps * batch / (time.perf_counter() - start)


def predict(task, split: dict, batch: int = 16) -> tuple[torch.Tensor, float]:
    start = time.perf_counter()
    with torch.no_grad():
        maps = [
            task(split["seismic"][i : i + batch], split["family"][i : i + batch])
            for i in range(0, len(split["seismic"]), batch)
        ]
    return torch.cat(maps).float(), split["seismic"].shape[0] / (time.perf_counter() - start)


def scores(velocity: torch.Tensor, split: dict) -> dict[str, float]:
    target = split["velocity"].float()
    mae_ms = float((velocity - target).abs().mean())
    ssim = structural_similarity_index_measure(
        normalize_velocity(velocity), normalize_velocity(target), data_range=2.0
    )
    result = {"mae_ms": mae_ms, "mae_norm": mae_ms / 1500.0, "ssim": float(ssim)}
    for family in BENCH_FAMILIES:
        chosen = split["family"] == FAMILIES.index(family)
        result[f"mae_ms/{family}"] = float((velocity[chosen] - target[chosen]).abs().mean())
    return result


def refined(velocity: torch.Tensor, family: torch.Tensor | None, weight: float) -> torch.Tensor:
    flat = None if family is None else flat_families_mask(family)
    return denormalize_velocity(refine(normalize_velocity(velocity), "auto", weight, flat=flat))


def best_tv_weight(velocity: torch.Tensor, split: dict, family_known: bool) -> float:
    family = split["family"] if family_known else None
    errors = {w: scores(refined(velocity, family, w), split)["mae_ms"] for w in TV_WEIGHTS}
    return min(errors, key=errors.get)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=".cache/mtl/fwi/bench-models")
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--out", default=None, help="write the rows as JSON here too")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_split(Path(args.root))
    print(
        f"train {len(data['train']['seismic'])}, val {len(data['val']['seismic'])}, test {len(data['test']['seismic'])} samples; "
        f"{args.steps} steps x batch {args.batch}, {args.threads} threads",
        flush=True,
    )
    rows, tasks, val_maps, test_maps, speeds = [], [], [], [], []
    for name in args.models.split(","):
        task, train_speed = train(name, MODELS[name], data, args.steps, args.batch, args.lr)
        test_map, infer_speed = predict(task, data["test"])
        val_map, _ = predict(task, data["val"])
        tasks.append(task)
        val_maps.append(val_map)
        test_maps.append(test_map)
        speeds.append(infer_speed)
        rows.append(
            {
                "row": name,
                "params": parameter_count(task.net),
                "train_sps": train_speed,
                "infer_sps": infer_speed,
                **scores(test_map, data["test"]),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    mean_map = data["train"]["velocity"].float().mean(0, keepdim=True).expand_as(data["test"]["velocity"])
    rows.append({"row": "training mean map (no model)", "params": 0, **scores(mean_map, data["test"])})
    val_stack, test_stack = torch.stack(val_maps), torch.stack(test_maps)
    best = min(rows[: len(tasks)], key=lambda r: r["mae_ms"])
    ensemble_speed = 1.0 / sum(1.0 / s for s in speeds)
    members_params = sum(r["params"] for r in rows)
    weights = fit_weights(val_stack, data["val"]["velocity"].float())
    ensembles = {
        "ensemble median": combine(test_stack, "median"),
        "ensemble mean": combine(test_stack, "mean"),
        "ensemble weighted": combine(test_stack, "weighted", weights),
    }
    for label, velocity in ensembles.items():
        rows.append(
            {
                "row": label,
                "params": members_params,
                "infer_sps": ensemble_speed,
                **scores(velocity, data["test"]),
            }
        )
    tta = VelocityEnsemble.from_modules(tasks, method="median", tta=True)
    tta_map, tta_speed = predict(tta, data["test"])
    rows.append(
        {
            "row": "ensemble median + flip TTA",
            "params": members_params,
            "infer_sps": tta_speed,
            **scores(tta_map, data["test"]),
        }
    )
    ensemble_rows = [r for r in rows if r["row"].startswith("ensemble")]
    best_ensemble = min(ensemble_rows, key=lambda r: r["mae_ms"])
    best_map = tta_map if best_ensemble["row"].endswith("TTA") else ensembles[best_ensemble["row"]]
    val_best = {
        "ensemble median": combine(val_stack, "median"),
        "ensemble mean": combine(val_stack, "mean"),
        "ensemble weighted": combine(val_stack, "weighted", weights),
    }.get(best_ensemble["row"], combine(val_stack, "median"))
    for known in (True, False):
        weight = best_tv_weight(val_best, data["val"], known)
        velocity = refined(best_map, data["test"]["family"] if known else None, weight)
        label = (
            f"{best_ensemble['row']} + TV ({'family prior' if known else 'guessed prior'}, weight {weight})"
        )
        rows.append({"row": label, "params": members_params, **scores(velocity, data["test"])})
    best_index = [r["row"] for r in rows].index(best["row"])
    weight = best_tv_weight(val_maps[best_index], data["val"], True)
    rows.append(
        {
            "row": f"{best['row']} + TV (family prior, weight {weight})",
            "params": best["params"],
            **scores(refined(test_maps[best_index], data["test"]["family"], weight), data["test"]),
        }
    )
    for row in rows:
        row["vs_best_member"] = row["mae_ms"] / best["mae_ms"]

    spread = test_stack.std(0, correction=0)
    uncertainty = {
        "ensemble spread": calibration_report(combine(test_stack, "median"), spread, data["test"]["velocity"])
    }
    with_dropout = [r for r, t in zip(rows, tasks, strict=False) if has_dropout(t)]
    mc_name = min(with_dropout, key=lambda r: r["mae_ms"])["row"]
    mc_task = tasks[[r["row"] for r in rows].index(mc_name)]
    samples = torch.cat(
        [
            mc_dropout_samples(mc_task, data["test"]["seismic"][i : i + 16], 8)
            for i in range(0, len(data["test"]["seismic"]), 16)
        ],
        dim=1,
    )
    mean, sigma = mean_and_std(samples)
    uncertainty[f"MC dropout ({mc_name}, 8 passes)"] = calibration_report(
        mean, sigma, data["test"]["velocity"]
    )

    print(
        "\n| row | params | train samples/s | infer samples/s | MAE m/s | MAE [-1,1] | SSIM | FlatVel-A | CurveFault-A | / best member |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        train_sps = f"{r['train_sps']:.2f}" if "train_sps" in r else "-"
        infer_sps = f"{r['infer_sps']:.1f}" if "infer_sps" in r else "-"
        print(
            f"| {r['row']} | {r['params'] / 1e6:.2f}M | {train_sps} | {infer_sps} | {r['mae_ms']:.1f} | {r['mae_norm']:.4f} | "
            f"{r['ssim']:.3f} | {r['mae_ms/FlatVel-A']:.1f} | {r['mae_ms/CurveFault-A']:.1f} | {r['vs_best_member']:.3f} |"
        )
    print(
        f"\nensemble weights (fitted on the validation files): {dict(zip([r['row'] for r in rows[: len(tasks)]], [round(w, 3) for w in weights.tolist()], strict=True))}"
    )
    print(
        "\n| uncertainty | mean sigma m/s | within 1 sigma (68.3%) | within 2 sigma (95.4%) | Spearman(sigma, abs error) |"
    )
    print("|---|---:|---:|---:|---:|")
    for label, report in uncertainty.items():
        print(
            f"| {label} | {report['mean_sigma_ms']:.1f} | {report['coverage_1sigma']:.1%} | {report['coverage_2sigma']:.1%} | {report['spearman_sigma_abs_error']:.2f} |"
        )
    if args.out:
        Path(args.out).write_text(
            json.dumps({"rows": rows, "weights": weights.tolist(), "uncertainty": uncertainty}, indent=2)
        )


if __name__ == "__main__":
    main()
