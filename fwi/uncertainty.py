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
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

GAUSSIAN_COVERAGE = {1: math.erf(1 / math.sqrt(2)), 2: math.erf(2 / math.sqrt(2))}


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
