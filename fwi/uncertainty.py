"""Per-pixel uncertainty of velocity predictions and how well it is calibrated.

Two estimates of a predictive standard deviation sigma (m/s, per pixel):

    MC dropout   N stochastic passes with the Dropout2d layers of the decoders active and every other
                 layer (BatchNorm) in eval mode (Gal & Ghahramani 2016, "Dropout as a Bayesian
                 approximation"); sigma = std over passes, the prediction their mean.
    ensemble     the members' spread: sigma = std over members, the prediction the ensemble's own.

`calibration_report` asks whether sigma means what it says on a validation set, treating the error
as Gaussian with that sigma: the fraction of pixels with |error| <= 1 sigma (68.3 % if calibrated)
and <= 2 sigma (95.4 %), the correlation of sigma with |error| (is it at least a good ranking?),
and a reliability table: pixels binned by sigma, observed RMSE per bin against the bin's mean sigma
(calibrated: on the diagonal). `reliability_plot` draws both as a PNG.

Neither estimate comes out calibrated by itself (MC dropout's spread measures only the dropout
noise, an ensemble's only the members' disagreement), so `fit_sigma_scale` fits one factor s on a
validation set and sigma' = s sigma is used from then on: the "STD scaling" of Levi, Gispan,
Giladi and Fetaya ("Evaluating and Calibrating Uncertainty Prediction in Regression Tasks",
arXiv:1905.11659, 2019; Sensors 22(15) 5540, 2022), the regression counterpart of temperature
scaling. Their objective is the Gaussian negative log-likelihood of the validation errors; its
minimiser has a closed form, s^2 = mean(e^2 / sigma^2) (set the derivative of
mean(log(s sigma) + e^2 / (2 s^2 sigma^2)) in s to zero), i.e. the scaled errors e / (s sigma) get
mean square one. With heavy-tailed errors that s over-covers at 1 sigma, so `objective="coverage"`
instead takes s = the 68.27 % quantile of |e| / sigma, which makes exactly 68.27 % of the validation
pixels fall within 1 sigma. One global factor keeps the ranking of sigma (its Spearman correlation
with |error|) unchanged; Kuleshov, Fenner and Ermon (2018, "Accurate Uncertainties for Deep Learning
Using Calibrated Regression") recalibrate the whole predictive CDF with isotonic regression instead,
which is not built here. `SIGMA_CALIBRATION_FILE` in an export bundle stores s (`mtl fwi calibrate
--write_bundle true`), and `mtl fwi submit --uncertainty true` multiplies its sigma maps by it.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from common.errors import UserInputError

GAUSSIAN_COVERAGE = {1: math.erf(1 / math.sqrt(2)), 2: math.erf(2 / math.sqrt(2))}
SIGMA_CALIBRATION_FILE = "sigma_calibration.json"  # in an export bundle, beside bundle.json
SCALE_OBJECTIVES = ("nll", "coverage")


class CalibrationError(UserInputError):
    """A sigma calibration that cannot be fitted, stored or applied (the message names the file/field)."""


def has_dropout(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.dropout._DropoutNd) for m in module.modules())


def mc_dropout_samples(module: nn.Module, seismic: torch.Tensor, passes: int = 16) -> torch.Tensor:
    """(passes, B, 1, 70, 70) m/s from `module(seismic)` with only its dropout layers in train mode."""
    if passes < 2:
        raise ValueError(f"--passes: expected at least 2 MC-dropout passes, got {passes}")
    if not has_dropout(module):
        raise ValueError(
            f"{type(module).__name__}: has no dropout layer, so MC dropout would give sigma = 0; "
            "train a model with dropout > 0 (trace_egnn, trace_transformer, heat_kernel, vit_unet)"
        )
    was_training = module.training
    module.eval()
    dropouts = [m for m in module.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    try:
        for layer in dropouts:
            layer.train()
        with torch.no_grad():
            return torch.stack([module(seismic).float() for _ in range(passes)])
    finally:
        module.train(was_training)


def mean_and_std(samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, ...) samples -> their mean and (population) std over the first axis."""
    return samples.mean(0), samples.std(0, correction=0)


def calibration_report(
    prediction: torch.Tensor, sigma: torch.Tensor, target: torch.Tensor, bins: int = 10
) -> dict[str, Any]:
    """Coverage, sigma-error correlation and a reliability table over all pixels (any equal shapes, m/s)."""
    if prediction.numel() == 0:
        raise ValueError("calibration needs at least one validation sample, got none")
    error = (prediction - target).abs().flatten().double()
    s = sigma.flatten().double().clamp_min(1e-9)
    report: dict[str, Any] = {
        "pixels": int(error.numel()),
        "mae_ms": float(error.mean()),
        "mean_sigma_ms": float(s.mean()),
    }
    for k, expected in GAUSSIAN_COVERAGE.items():
        report[f"coverage_{k}sigma"] = float((error <= k * s).double().mean())
        report[f"expected_coverage_{k}sigma"] = expected
    centred_e, centred_s = error - error.mean(), s - s.mean()
    denominator = centred_e.norm() * centred_s.norm()
    positive = sigma.flatten().double() > 0
    z = error[positive] / sigma.flatten().double()[positive]
    report["zero_sigma_pixels"] = int((~positive).sum())
    report["rms_scaled_error"] = float(z.pow(2).mean().sqrt()) if z.numel() else float("nan")
    report["gaussian_nll"] = (
        float((0.5 * math.log(2 * math.pi) + s[positive].log() + 0.5 * z.pow(2)).mean())
        if z.numel()
        else float("nan")
    )
    report["pearson_sigma_abs_error"] = float(centred_e @ centred_s / denominator) if denominator > 0 else 0.0
    report["spearman_sigma_abs_error"] = _spearman(s, error)
    order = torch.argsort(s)
    table = []
    for chunk in torch.tensor_split(order, bins):
        if chunk.numel():
            table.append(
                {
                    "mean_sigma_ms": float(s[chunk].mean()),
                    "rmse_ms": float(error[chunk].pow(2).mean().sqrt()),
                    "pixels": int(chunk.numel()),
                }
            )
    report["reliability"] = table
    return report


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ranks_a = torch.argsort(torch.argsort(a)).double()
    ranks_b = torch.argsort(torch.argsort(b)).double()
    ca, cb = ranks_a - ranks_a.mean(), ranks_b - ranks_b.mean()
    denominator = ca.norm() * cb.norm()
    return float(ca @ cb / denominator) if denominator > 0 else 0.0


def reliability_plot(report: dict[str, Any], path: str | Path, title: str = "") -> Path:
    """PNG: observed RMSE against predicted sigma per bin, and coverage at 1 and 2 sigma."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = report["reliability"]
    sigma = [row["mean_sigma_ms"] for row in table]
    rmse = [row["rmse_ms"] for row in table]
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 4))
    top = max(max(sigma), max(rmse)) * 1.05
    left.plot([0, top], [0, top], "k--", label="calibrated")
    left.plot(sigma, rmse, "o-", label="observed")
    left.set_xlabel("predicted sigma (m/s)")
    left.set_ylabel("observed RMSE (m/s)")
    left.legend()
    left.set_title(f"reliability (Spearman {report['spearman_sigma_abs_error']:.2f})")
    ks = list(GAUSSIAN_COVERAGE)
    right.bar([k - 0.15 for k in ks], [report[f"coverage_{k}sigma"] for k in ks], 0.3, label="observed")
    right.bar([k + 0.15 for k in ks], [GAUSSIAN_COVERAGE[k] for k in ks], 0.3, label="Gaussian")
    right.set_xticks(ks, [f"{k} sigma" for k in ks])
    right.set_ylim(0, 1)
    right.set_ylabel("fraction of pixels within")
    right.legend()
    figure.suptitle(title)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def fit_sigma_scale(
    prediction: torch.Tensor, sigma: torch.Tensor, target: torch.Tensor, objective: str = "nll"
) -> float:
    """One factor s for sigma fitted on validation pixels (any equal shapes, m/s); see the module doc.

    `nll`: s = sqrt(mean(e^2 / sigma^2)), the Gaussian-NLL minimiser (Levi et al. 2019).
    `coverage`: s = the 68.27 % quantile of |e| / sigma (1 sigma then holds 68.27 % of the pixels).
    Pixels with sigma = 0 are left out: no factor changes them.
    """
    if objective not in SCALE_OBJECTIVES:
        raise CalibrationError(f"--objective: expected one of {SCALE_OBJECTIVES}, got {objective!r}")
    error = (prediction - target).abs().flatten().double()
    sigma = sigma.flatten().double()
    if error.numel() == 0:
        raise CalibrationError("sigma calibration needs at least one validation sample, got none")
    positive = sigma > 0
    if not positive.any():
        raise CalibrationError(
            "sigma calibration: every sigma is 0 (members or passes all agree); nothing to scale"
        )
    z = error[positive] / sigma[positive]
    if objective == "nll":
        scale = float(z.pow(2).mean().sqrt())
    else:
        scale = float(torch.quantile(z.float(), GAUSSIAN_COVERAGE[1]))  # float32 quantile: any size
    if not math.isfinite(scale) or scale <= 0:
        raise CalibrationError(f"sigma calibration: the fitted factor is {scale}; the errors are all 0")
    return scale


def calibration_path(bundle: str | Path) -> Path:
    return Path(bundle) / SIGMA_CALIBRATION_FILE


def check_calibration_target(bundle: str | Path, overwrite: bool = False) -> Path:
    """`<bundle>/sigma_calibration.json` if it may be written: `bundle` is an export bundle directory and
    holds no calibration yet (or `overwrite`). Checked before the validation pass, so a refusal is quick."""
    directory = Path(bundle)
    if not (directory / "bundle.json").is_file():
        raise CalibrationError(
            f"--checkpoint {bundle}: --write_bundle true needs an export bundle directory (mtl export), "
            "not a checkpoint file"
        )
    path = calibration_path(directory)
    if path.is_file() and not overwrite:
        previous = read_sigma_calibration(directory)
        raise CalibrationError(
            f"{path}: already holds sigma_scale {previous['sigma_scale']:.4g} ({previous['method']}); "
            "pass --overwrite true to replace it"
        )
    return path


def write_sigma_calibration(bundle: str | Path, record: dict[str, Any], overwrite: bool = False) -> Path:
    """Write `record` (at least "sigma_scale" and "method", mc_dropout or ensemble; the rest says where s
    came from) to `<bundle>/sigma_calibration.json` atomically; an existing one only with `overwrite`."""
    path = check_calibration_target(bundle, overwrite)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    os.replace(partial, path)
    return path


def read_sigma_calibration(bundle: str | Path) -> dict[str, Any] | None:
    """The bundle's sigma calibration record, None when it has none (or `bundle` is a checkpoint file)."""
    path = calibration_path(bundle)
    if not Path(bundle).is_dir() or not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except ValueError as error:
        raise CalibrationError(f"{path}: not valid JSON ({error})") from None
    scale = record.get("sigma_scale") if isinstance(record, dict) else None
    if not isinstance(scale, int | float) or not math.isfinite(scale) or scale <= 0:
        raise CalibrationError(f"{path}: sigma_scale: expected a positive number, found {scale!r}")
    if record.get("method") not in ("mc_dropout", "ensemble"):
        raise CalibrationError(
            f"{path}: method: expected 'mc_dropout' or 'ensemble', found {record.get('method')!r}"
        )
    return record


def bundle_sigma_scale(bundle: str | Path, method: str) -> float:
    """The factor `submit` applies to sigma from `method`: the bundle's s, 1 when it has none.

    Refuses a record fitted for the other method (an ensemble's spread and MC dropout differ in scale).
    """
    record = read_sigma_calibration(bundle)
    if record is None:
        return 1.0
    if record["method"] != method:
        raise CalibrationError(
            f"{calibration_path(bundle)}: sigma_scale was fitted for {record['method']} sigma, but this model "
            f"gives {method} sigma; re-run mtl fwi calibrate --method {method} --write_bundle true"
        )
    return float(record["sigma_scale"])
