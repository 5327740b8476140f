"""Post-hoc sigma scaling: the fitted factor restores coverage on held-out data with known sigma, it
travels in an export bundle (`mtl fwi calibrate --write_bundle true`) without replacing one the user
had, and `mtl fwi submit --uncertainty true` multiplies its sigma maps by it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from common.export import export_bundle, load_bundle
from fwi.data.formats import discover_pairs
from fwi.data.normalization import seismic_limits
from fwi.ensemble import EnsembleError
from fwi.model_tools import calibrate, ensemble
from fwi.submission import write_submission
from fwi.task import VelocityInversionTask
from fwi.uncertainty import (
    GAUSSIAN_COVERAGE,
    SIGMA_CALIBRATION_FILE,
    CalibrationError,
    bundle_sigma_scale,
    calibration_report,
    fit_sigma_scale,
    read_sigma_calibration,
    write_sigma_calibration,
)

TINY_EGNN = {"dim": 8, "layers": 1, "encoder_channels": 4, "decoder_channels": 8}


def gaussian_errors(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Predictions whose errors are N(0, sigma^2) with sigma varying per pixel (10..100 m/s)."""
    generator = torch.Generator().manual_seed(seed)
    sigma = torch.rand(n, generator=generator) * 90 + 10
    target = torch.rand(n, generator=generator) * 3000 + 1500
    return target + sigma * torch.randn(n, generator=generator), sigma, target


@pytest.mark.parametrize("objective", ["nll", "coverage"])
def test_fitted_scale_restores_coverage_on_held_out_gaussian_errors(objective: str) -> None:
    prediction, sigma, target = gaussian_errors(100_000, seed=0)
    overconfident = sigma / 3  # what MC dropout typically reports: the right ranking, far too small
    scale = fit_sigma_scale(prediction, overconfident, target, objective)
    assert scale == pytest.approx(3.0, rel=0.02)

    held_out, held_sigma, held_target = gaussian_errors(100_000, seed=1)  # a different draw
    before = calibration_report(held_out, held_sigma / 3, held_target)
    after = calibration_report(held_out, scale * held_sigma / 3, held_target)
    assert before["coverage_1sigma"] < 0.35
    assert after["coverage_1sigma"] == pytest.approx(GAUSSIAN_COVERAGE[1], abs=0.01)
    assert after["coverage_2sigma"] == pytest.approx(GAUSSIAN_COVERAGE[2], abs=0.01)
    assert after["gaussian_nll"] < before["gaussian_nll"]
    assert after["rms_scaled_error"] == pytest.approx(1.0, abs=0.03)
    assert after["spearman_sigma_abs_error"] == pytest.approx(before["spearman_sigma_abs_error"])


def test_fitting_refuses_what_no_factor_can_fix() -> None:
    prediction, sigma, target = gaussian_errors(100, seed=2)
    with pytest.raises(CalibrationError, match="every sigma is 0"):
        fit_sigma_scale(prediction, torch.zeros_like(sigma), target)
    with pytest.raises(CalibrationError, match="--objective"):
        fit_sigma_scale(prediction, sigma, target, "isotonic")
    # pixels with sigma 0 are left out of the fit instead of making s infinite
    sigma_with_zeros = sigma.clone()
    sigma_with_zeros[:10] = 0
    assert math.isfinite(fit_sigma_scale(prediction, sigma_with_zeros, target))


@pytest.fixture(scope="module")
def bundles(openfwi_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A dropout model (trace_egnn) and a two-member ensemble of such models, as export bundles."""
    out = tmp_path_factory.mktemp("calibration-bundles")
    low, high = seismic_limits(discover_pairs(openfwi_root))
    members = []
    for seed in range(2):
        torch.manual_seed(seed)
        task = VelocityInversionTask(model="trace_egnn", model_args=TINY_EGNN, log_images=False)
        task.seismic_low.copy_(torch.as_tensor(low))
        task.seismic_high.copy_(torch.as_tensor(high))
        members.append(export_bundle(task.eval(), out / f"member{seed}"))
    ensemble(members=[str(m) for m in members], out=str(out / "ensemble"))
    return {"model": members[0], "member": members[1], "ensemble": out / "ensemble"}


def fresh_copy(bundle: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(bundle, tmp_path / bundle.name))


def test_calibrate_writes_the_factor_into_the_bundle_and_keeps_an_existing_one(
    bundles, openfwi_root, tmp_path
) -> None:
    bundle = fresh_copy(bundles["model"], tmp_path)
    options = {"val_dir": str(openfwi_root), "passes": 3, "max_samples": 4}
    report = calibrate(str(bundle), out=str(tmp_path / "c1"), write_bundle=True, **options)
    record = read_sigma_calibration(bundle)
    assert record["sigma_scale"] == pytest.approx(report["sigma_scale"]) and record["method"] == "mc_dropout"
    assert record["objective"] == "nll" and record["passes"] == 3 and record["pixels"] == 4 * 70 * 70
    assert report["scaled"]["rms_scaled_error"] == pytest.approx(1.0, rel=1e-6)  # what nll fits, in-sample
    saved = json.loads((tmp_path / "c1" / "calibration.json").read_text())
    assert saved["sigma_scale"] == pytest.approx(report["sigma_scale"]) and "scaled" in saved
    assert bundle_sigma_scale(bundle, "mc_dropout") == pytest.approx(report["sigma_scale"])
    load_bundle(bundle)  # the extra file does not disturb loading

    before = (bundle / SIGMA_CALIBRATION_FILE).read_text()
    with pytest.raises(CalibrationError, match=f"{SIGMA_CALIBRATION_FILE}: already holds sigma_scale"):
        calibrate(str(bundle), out=str(tmp_path / "c2"), write_bundle=True, objective="coverage", **options)
    assert (bundle / SIGMA_CALIBRATION_FILE).read_text() == before  # nothing replaced silently
    assert not (tmp_path / "c2").exists()  # refused before the validation pass

    again = calibrate(
        str(bundle),
        out=str(tmp_path / "c3"),
        write_bundle=True,
        overwrite=True,
        objective="coverage",
        **options,
    )
    assert read_sigma_calibration(bundle)["objective"] == "coverage"
    assert again["scaled"]["coverage_1sigma"] == pytest.approx(GAUSSIAN_COVERAGE[1], abs=0.01)


def test_calibration_refusals_name_the_file_or_option(bundles, openfwi_root, tmp_path) -> None:
    not_a_bundle = tmp_path / "weights.ckpt"
    not_a_bundle.write_bytes(b"")
    with pytest.raises(CalibrationError, match="needs an export bundle directory"):
        calibrate(str(not_a_bundle), str(openfwi_root), out=str(tmp_path / "x"), write_bundle=True)
    ensemble_bundle = fresh_copy(bundles["ensemble"], tmp_path)
    with pytest.raises(EnsembleError, match="--write_bundle"):  # submit uses the spread for ensembles
        calibrate(str(ensemble_bundle), str(openfwi_root), out=str(tmp_path / "y"), write_bundle=True)
    write_sigma_calibration(ensemble_bundle, {"sigma_scale": 2.0, "method": "ensemble"})
    with pytest.raises(CalibrationError, match="fitted for ensemble sigma"):
        bundle_sigma_scale(ensemble_bundle, "mc_dropout")
    (ensemble_bundle / SIGMA_CALIBRATION_FILE).write_text('{"sigma_scale": -1, "method": "ensemble"}')
    with pytest.raises(CalibrationError, match="sigma_scale: expected a positive number, found -1"):
        bundle_sigma_scale(ensemble_bundle, "ensemble")


def sigma_maps(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key].astype(np.float32) for key in archive.files}


def test_submit_applies_the_bundles_factor(mtl, bundles, openfwi_root, tmp_path) -> None:
    test_dir = tmp_path / "test"
    test_dir.mkdir()
    seismic = np.load(discover_pairs(openfwi_root)[0].seismic)[:2]
    for i, gather in enumerate(seismic):
        np.save(test_dir / f"oid{i}.npy", gather)
    bundle = fresh_copy(bundles["ensemble"], tmp_path)
    raw = sigma_maps(std_of(write_submission(bundle, test_dir, tmp_path / "raw.csv", uncertainty=True)))

    calibration = ["--method", "ensemble", "--max_samples", "4", "--out", "calib", "--write_bundle", "true"]
    mtl(["fwi", "calibrate", "--checkpoint", bundle, "--val_dir", openfwi_root, *calibration])
    scale = read_sigma_calibration(bundle)["sigma_scale"]
    assert scale != pytest.approx(1.0)
    args = ["fwi", "submit", "--checkpoint", bundle, "--test_dir", test_dir, "--uncertainty", "true"]
    mtl([*args, "--out", "scaled.csv"])
    scaled = sigma_maps(tmp_path / "scaled.csv.std.npz")
    assert (tmp_path / "scaled.csv").read_text() == (tmp_path / "raw.csv").read_text()  # the CSV is unchanged
    for oid, sigma in raw.items():
        np.testing.assert_allclose(scaled[oid], scale * sigma, rtol=2e-3, atol=0.05)
    unscaled = write_submission(
        bundle, test_dir, tmp_path / "u.csv", uncertainty=True, calibrated_sigma=False
    )
    for oid, sigma in sigma_maps(std_of(unscaled)).items():
        np.testing.assert_array_equal(sigma, raw[oid])

    (bundle / SIGMA_CALIBRATION_FILE).write_text('{"sigma_scale": 2.0, "method": "mc_dropout"}')
    with pytest.raises(CalibrationError, match="fitted for mc_dropout sigma"):
        write_submission(bundle, test_dir, tmp_path / "refused.csv", uncertainty=True)
    assert not (tmp_path / "refused.csv").exists()


def std_of(csv_path: Path) -> Path:
    return csv_path.with_name(csv_path.name + ".std.npz")
