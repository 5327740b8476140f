"""`mtl fwi models | ensemble | calibrate`: the model registry, ensembles of export bundles, uncertainty.

Heavy imports happen inside the verbs so `mtl fwi --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def recipe_model_args(recipe: str) -> dict[str, Any] | None:
    """`model.init_args.model_args` of a recipe under the repository, None when it is not there."""
    import yaml

    path = REPO / recipe
    if not path.is_file():
        return None
    config = yaml.safe_load(path.read_text()) or {}
    return dict(((config.get("model") or {}).get("init_args") or {}).get("model_args") or {})


def training_data_line(description: dict[str, Any] | None) -> str:
    """One line for a `training_data.json` description (None: not recorded)."""
    if not description:
        return "training data not recorded (not fitted through FwiDataModule, or exported before it was)"
    if "members" in description:  # an ensemble as a member
        return f"an ensemble of {len(description['members'])} members (mtl fwi models --bundle on it)"
    samples = description.get("samples") or {}
    used = description.get("samples_used") or {}
    parts = []
    for part in ("train", "val", "test"):
        total = sum((samples.get(part) or {}).values())
        count = used.get(part, total)
        parts.append(f"{part} {count}" if count == total else f"{part} {count}/{total}")
    versions = description.get("generator_version") or {}
    generator = ", ".join(
        f"{family} v{v}" if v is not None else f"{family} not generated/unknown"
        for family, v in sorted(versions.items())
    )
    split = description.get("split") or {}
    return (
        f"{', '.join(description.get('families') or [])}; samples {', '.join(parts)}; "
        f"split {split.get('mode')}; generator {generator or '-'}; normalisation "
        f"{description.get('normalization', '?')} (seismic limits {description.get('seismic_limits')}); "
        f"root {description.get('root')}"
    )


def bundle_training_data(bundle: str) -> dict[str, Any]:
    """A bundle's class, model name and `training_data.json` (without loading its weights)."""
    from common.errors import ExportError
    from fwi.task import TRAINING_DATA_FILE

    directory = Path(bundle)
    manifest_path = directory / "bundle.json"
    if not manifest_path.is_file():
        raise ExportError(f"--bundle {bundle}: not an export bundle (no bundle.json)")
    manifest = json.loads(manifest_path.read_text())
    extra = directory / TRAINING_DATA_FILE
    description = json.loads(extra.read_text()) if extra.is_file() else None
    init_args = manifest.get("init_args") or {}
    return {
        "bundle": str(directory),
        "class_path": manifest.get("class_path"),
        "model": init_args.get("model") or init_args.get("method"),
        "training_data": description,
    }


def show_bundle(bundle: str, json_out: bool) -> dict[str, Any]:
    summary = bundle_training_data(bundle)
    if json_out:
        print(json.dumps(summary, indent=2))
        return summary
    description = summary["training_data"]
    if description is not None and "members" in description:
        print(f"{bundle}: ensemble ({summary['model']}) of {len(description['members'])} members")
        for member in description["members"]:
            print(f"  {member['name']}: {training_data_line(member['training_data'])}")
    else:
        print(f"{bundle}: {summary['model']}: {training_data_line(description)}")
    return summary


def models(json_out: bool = False, bundle: str | None = None) -> list[dict[str, Any]] | dict[str, Any]:
    """List every registered velocity model: parameters at its recipe's and quickstart's size, the input
    geometry it assumes, the symmetries built in, and the recipes that train it. With --bundle, what
    one export bundle was trained on instead (its `training_data.json`).

    Args:
        json_out: print JSON instead of a table.
        bundle: an export bundle directory whose training data to show.
    """
    from fwi.models import MODEL_CARDS, MODELS, build_model, parameter_count

    if bundle is not None:
        return show_bundle(bundle, json_out)

    rows = []
    for name in MODELS:
        card = MODEL_CARDS[name]
        sizes = {}
        for label, recipe in (("params", card.recipe), ("quickstart_params", card.quickstart)):
            args = recipe_model_args(recipe) if recipe else None
            sizes[label] = None if args is None else parameter_count(build_model(name, **args))
        rows.append({"model": name, **sizes, **card.__dict__})
    if json_out:
        print(json.dumps(rows, indent=2))
        return rows
    from rich.console import Console
    from rich.table import Table

    table = Table(title="mtl fwi models (parameters at the recipe's / quickstart's size)")
    for column in ("model", "params", "summary", "input geometry", "symmetries", "recipe / quickstart"):
        table.add_column(column, overflow="fold")
    for row in rows:
        small = row["quickstart_params"]
        params = f"{row['params'] / 1e6:.2f}M / " + ("-" if small is None else f"{small / 1e3:.0f}k")
        table.add_row(
            row["model"],
            params,
            row["summary"],
            row["geometry"],
            row["symmetries"],
            f"{row['recipe']}\n{row['quickstart'] or '-'}",
        )
    Console(width=200).print(table)
    return rows


def validation_batches(val_dir: str, max_samples: int | None, batch_size: int):
    """Batches of an OpenFWI-layout directory (family folders), without augmentation."""
    from torch.utils.data import DataLoader

    from fwi.data.datasets import ShotGatherDataset, collate_skipping_bad
    from fwi.data.formats import discover_pairs
    from fwi.ensemble import EnsembleError

    pairs = discover_pairs(val_dir)
    dataset = ShotGatherDataset(pairs, max_samples=max_samples)
    if len(dataset) == 0:
        raise EnsembleError(
            f"--val_dir {val_dir}: no validation samples found (expected OpenFWI family folders)"
        )
    return DataLoader(dataset, batch_size=batch_size, collate_fn=collate_skipping_bad)


def collect(module, val_dir: str, max_samples: int | None, batch_size: int, per_member: bool):
    """Member maps (M, N, 1, 70, 70) or ensemble maps (N, 1, 70, 70), targets and families, in m/s."""
    import torch

    predictions, targets, families = [], [], []
    with torch.no_grad():
        for batch in validation_batches(val_dir, max_samples, batch_size):
            if per_member:
                predictions.append(module.member_predictions(batch["seismic"], batch["family"]))
            else:
                predictions.append(module(batch["seismic"], batch["family"]).float())
            targets.append(batch["velocity"].float())
            families.append(batch["family"])
    dim = 1 if per_member else 0
    return torch.cat(predictions, dim), torch.cat(targets), torch.cat(families)


def load_members(members: list[str]):
    """Each bundle as a module, checked to map one (1, 5, 1000, 70) gather to (1, 1, 70, 70) m/s."""
    import torch

    from common.export import load_bundle
    from fwi.data.families import SEISMIC_SHAPE, VELOCITY_SHAPE
    from fwi.ensemble import EnsembleError

    modules = []
    for path in members:
        if not Path(path).is_dir():
            raise EnsembleError(f"--members: {path}: not a directory; expected an export bundle (mtl export)")
        module = load_bundle(path)
        if not callable(getattr(module, "forward", None)) or not hasattr(module, "float16_inputs"):
            raise EnsembleError(f"--members: {path}: a {type(module).__name__}, not an fwi velocity model")
        with torch.no_grad():
            shape = tuple(module(torch.zeros(1, *SEISMIC_SHAPE)).shape)
        if shape != (1, *VELOCITY_SHAPE):
            raise EnsembleError(
                f"--members: {path}: predicts a {shape[1:]} grid, the ensemble needs {VELOCITY_SHAPE}"
            )
        modules.append(module)
    return modules


def mae_by_family(prediction, target, family) -> dict[str, float]:
    """MAE in m/s overall and per family present."""
    from fwi.data.families import FAMILIES

    error = (prediction - target).abs().flatten(1).mean(1)
    result = {"all": float(error.mean())}
    for index in family.unique().tolist():
        if index >= 0:
            result[FAMILIES[index]] = float(error[family == index].mean())
    return result


def ensemble(
    members: list[str],
    out: str,
    method: str = "median",
    val_dir: str | None = None,
    tta: bool = False,
    refine: str = "none",
    refine_weight: float = 0.05,
    max_samples: int | None = None,
    batch_size: int = 8,
    overwrite: bool = False,
    per_family: bool = True,
) -> str:
    """Combine export bundles into one ensemble bundle that `mtl fwi submit` and `load_bundle` take.

    Members may differ in architecture and normalisation (each keeps its own). With --val_dir the
    members, the ensemble and its refined version are scored there (MAE m/s, overall and per family,
    written to the bundle's metrics.json) and --method weighted fits its weights there: one global
    vector, and one per family present (used when an input's family is known; Kaggle test files get
    the global one). metrics.json has both (`val/weights/<global|Family>/<member>`) and the MAE with
    the global vector alone (`val/global_weights_mae_ms/...`); all are in-sample on --val_dir.

    Args:
        members: export bundle directories, e.g. "[runs/a/export,runs/b/export]".
        out: the ensemble bundle directory to write.
        method: median (default, per pixel), mean or weighted.
        val_dir: OpenFWI-layout validation directory (family folders) to score on and fit weights.
        tta: average each member with its mirrored survey flipped back.
        refine: TV prior on the combined map: none, flat, tv2d or auto.
        refine_weight: TV weight on the [-1, 1] scale.
        max_samples: validation samples used (evenly spread; default all).
        batch_size: validation batch size.
        overwrite: replace an existing bundle at --out.
        per_family: with --method weighted, also fit a weight vector per family in --val_dir.
    """
    from common.export import export_bundle
    from fwi.data.families import FAMILIES
    from fwi.ensemble import EnsembleError, VelocityEnsemble, combine, fit_weights

    destination = Path(out)
    if destination.exists() and any(destination.iterdir()) and not overwrite:
        raise EnsembleError(f"--out {out}: exists and is not empty; pass --overwrite true to replace it")
    if not members:
        raise EnsembleError("--members: expected at least one export bundle, got none")
    if method == "weighted" and val_dir is None:
        raise EnsembleError("--method weighted: needs --val_dir to fit the weights on")
    modules = load_members(members)
    options = {"names": [str(m) for m in members], "tta": tta, "refine_weight": refine_weight}
    metrics: dict[str, Any] = {}
    weights, family_weights = None, None
    if val_dir is not None:
        probe = VelocityEnsemble.from_modules(modules, method="mean", **options)
        maps, target, family = collect(probe, val_dir, max_samples, batch_size, per_member=True)
        for name, member_map in zip(members, maps, strict=True):
            metrics[f"val/member_mae_ms/{name}"] = mae_by_family(member_map, target, family)["all"]
        if method == "weighted":
            weights = fit_weights(maps, target).tolist()
            if per_family:
                family_weights = {
                    FAMILIES[index]: fit_weights(maps[:, family == index], target[family == index]).tolist()
                    for index in family.unique().tolist()
                    if index >= 0
                }
            for label, vector in {"global": weights, **(family_weights or {})}.items():
                for name, weight in zip(members, vector, strict=True):
                    metrics[f"val/weights/{label}/{name}"] = weight
    result = VelocityEnsemble.from_modules(
        modules, method=method, weights=weights, family_weights=family_weights, refine=refine, **options
    )
    if val_dir is not None:
        combined = result.combine_predictions(maps, family)
        for key, value in mae_by_family(combined, target, family).items():
            metrics[f"val/ensemble_mae_ms/{key}"] = value
        if family_weights:
            for key, value in mae_by_family(combine(maps, method, result.weights), target, family).items():
                metrics[f"val/global_weights_mae_ms/{key}"] = value
        if refine != "none":
            for key, value in mae_by_family(result.combine_members(maps, family), target, family).items():
                metrics[f"val/refined_mae_ms/{key}"] = value
        metrics["val/samples"] = int(target.shape[0])
    export_bundle(result, destination, metrics=metrics)
    report = {"bundle": str(destination), "weights": weights, "family_weights": family_weights, **metrics}
    print(json.dumps(report, indent=2))
    return str(destination)


def calibrate(
    checkpoint: str,
    val_dir: str,
    out: str = "calibration",
    method: str = "mc_dropout",
    passes: int = 16,
    max_samples: int | None = None,
    batch_size: int = 8,
    objective: str = "nll",
    write_bundle: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Per-pixel uncertainty on a validation set, how well it is calibrated, and the factor that fixes it.

    Writes <out>/calibration.json (coverage of +-1 and +-2 sigma, Gaussian NLL, correlation of sigma
    with |error|, a reliability table; the fitted sigma factor s and the same figures with s sigma)
    and <out>/reliability.png. With --write_bundle true, s also goes into the bundle's
    `sigma_calibration.json`, which `mtl fwi submit --uncertainty true` applies to its sigma maps.

    Args:
        checkpoint: a `.ckpt` from `mtl fit` or an export bundle (a model or an ensemble).
        val_dir: OpenFWI-layout validation directory (family folders).
        out: directory for the report.
        method: mc_dropout (N passes with dropout on) or ensemble (the members' spread).
        passes: MC-dropout passes.
        max_samples: validation samples used (evenly spread; default all).
        batch_size: validation batch size.
        objective: how s is fitted: nll (Gaussian NLL, Levi et al. 2019) or coverage (68.27 % within 1 sigma).
        write_bundle: store s in the export bundle given as --checkpoint (sigma_calibration.json).
        overwrite: replace a sigma_calibration.json already in the bundle.
    """
    import torch

    from fwi.ensemble import EnsembleError, VelocityEnsemble
    from fwi.submission import load_task
    from fwi.uncertainty import (
        calibration_report,
        check_calibration_target,
        fit_sigma_scale,
        mc_dropout_samples,
        mean_and_std,
        reliability_plot,
        write_sigma_calibration,
    )

    if method not in ("mc_dropout", "ensemble"):
        raise EnsembleError(f"--method: expected mc_dropout or ensemble, got {method!r}")
    if write_bundle:
        check_calibration_target(checkpoint, overwrite)
    module = load_task(checkpoint)
    is_ensemble = isinstance(module, VelocityEnsemble)
    if method == "ensemble" and not is_ensemble:
        raise EnsembleError(
            f"--checkpoint {checkpoint}: --method ensemble needs an ensemble bundle (mtl fwi ensemble)"
        )
    if write_bundle and method != ("ensemble" if is_ensemble else "mc_dropout"):
        raise EnsembleError(
            f"--write_bundle: mtl fwi submit takes the members' spread as sigma for an ensemble bundle, so "
            f"store a factor fitted with --method ensemble, not {method}"
        )
    means, sigmas, targets = [], [], []
    for batch in validation_batches(val_dir, max_samples, batch_size):
        if method == "mc_dropout":
            mean, sigma = mean_and_std(mc_dropout_samples(module, batch["seismic"], passes))
        else:
            with torch.no_grad():
                members = module.member_predictions(batch["seismic"], batch["family"])
                mean, sigma = module.combine_members(members, batch["family"]), members.std(0, correction=0)
        means.append(mean)
        sigmas.append(sigma)
        targets.append(batch["velocity"].float())
    mean, sigma, target = torch.cat(means), torch.cat(sigmas), torch.cat(targets)
    report = calibration_report(mean, sigma, target)
    scale = fit_sigma_scale(mean, sigma, target, objective)
    scaled = calibration_report(mean, scale * sigma, target)
    report.update(
        {
            "method": method,
            "checkpoint": str(checkpoint),
            "val_dir": str(val_dir),
            "sigma_scale": scale,
            "objective": objective,
            "scaled": scaled,
        }
    )
    if method == "mc_dropout":
        report["passes"] = passes
    if write_bundle:
        record = {
            "sigma_scale": scale,
            "method": method,
            "objective": objective,
            "val_dir": str(val_dir),
            "pixels": report["pixels"],
            "coverage_1sigma_before": report["coverage_1sigma"],
            "coverage_1sigma_after": scaled["coverage_1sigma"],
            "coverage_2sigma_after": scaled["coverage_2sigma"],
            **({"passes": passes} if method == "mc_dropout" else {}),
        }
        report["bundle_file"] = str(write_sigma_calibration(checkpoint, record, overwrite=overwrite))
    directory = Path(out)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "calibration.json").write_text(json.dumps(report, indent=2) + "\n")
    reliability_plot(report, directory / "reliability.png", title=f"{method}: {checkpoint} (s = {scale:.3g})")
    summary = {k: v for k, v in report.items() if k not in ("reliability", "scaled")}
    summary["scaled"] = {k: v for k, v in scaled.items() if k != "reliability"}
    print(json.dumps(summary, indent=2))
    return report


def commands() -> dict[str, Any]:
    return {"models": models, "ensemble": ensemble, "calibrate": calibrate}
