"""Ensembles of export bundles, TV refinement with family priors, MC-dropout/ensemble uncertainty and
its calibration report: through the real verbs, bundles, `load_bundle` and `mtl fwi submit`."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import LightningModule

from common.errors import ExportError
from common.export import export_bundle, load_bundle
from fwi.data.families import FAMILIES
from fwi.data.formats import discover_pairs
from fwi.data.normalization import seismic_limits
from fwi.ensemble import EnsembleError, VelocityEnsemble, combine, fit_weights
from fwi.model_tools import calibrate, ensemble
from fwi.refinement import flat_layer_refine, looks_flat, refine, tv_denoise
from fwi.task import VelocityInversionTask
from fwi.uncertainty import calibration_report, mc_dropout_samples, reliability_plot

MEMBERS = {
    "inversionnet": ({"width": 0.125}, "family"),
    "trace_egnn": ({"dim": 8, "layers": 1, "encoder_channels": 4, "decoder_channels": 8}, "global"),
}


def member_task(root: Path, model: str, seed: int) -> VelocityInversionTask:
    torch.manual_seed(seed)
    args, normalization = MEMBERS[model]
    task = VelocityInversionTask(model=model, model_args=args, normalization=normalization, log_images=False)
    low, high = seismic_limits(discover_pairs(root))
    task.seismic_low.copy_(torch.as_tensor(low))
    task.seismic_high.copy_(torch.as_tensor(high))
    return task.eval()


@pytest.fixture(scope="module")
def bundles(openfwi_root: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two member bundles of different architecture and normalisation."""
    out = tmp_path_factory.mktemp("members")
    return [
        export_bundle(member_task(openfwi_root, name, seed), out / name) for seed, name in enumerate(MEMBERS)
    ]


def test_combine_median_mean_weighted() -> None:
    maps = torch.tensor([1.0, 5.0, 2.0, 10.0]).reshape(4, 1, 1, 1, 1).expand(4, 2, 1, 3, 3)
    assert torch.allclose(combine(maps, "median"), torch.full((2, 1, 3, 3), 3.5))  # numpy's median
    assert torch.allclose(combine(maps[:3], "median"), torch.full((2, 1, 3, 3), 2.0))
    assert torch.allclose(combine(maps, "mean"), torch.full((2, 1, 3, 3), 4.5))
    weights = torch.tensor([0.0, 0.0, 0.0, 1.0])
    assert torch.allclose(combine(maps, "weighted", weights), torch.full((2, 1, 3, 3), 10.0))


def test_fitted_weights_prefer_the_accurate_member() -> None:
    generator = torch.Generator().manual_seed(0)
    target = torch.rand(16, 1, 70, 70, generator=generator) * 3000 + 1500
    good = target + 20 * torch.randn(target.shape, generator=generator)
    bad = target + 400 * torch.randn(target.shape, generator=generator)
    weights = fit_weights(torch.stack([bad, good]), target)
    assert weights.sum().item() == pytest.approx(1.0) and weights[1] > 0.85


def test_ensemble_bundle_scores_loads_and_submits(bundles, openfwi_root, tmp_path) -> None:
    out = tmp_path / "ensemble"
    ensemble(members=[str(b) for b in bundles], out=str(out), val_dir=str(openfwi_root), refine="auto")
    metrics = json.loads((out / "metrics.json").read_text())
    assert {f"val/member_mae_ms/{b}" for b in bundles} <= set(metrics)
    assert "val/ensemble_mae_ms/FlatVel-A" in metrics and "val/refined_mae_ms/CurveFault-A" in metrics
    loaded = load_bundle(out)
    assert isinstance(loaded, VelocityEnsemble) and len(loaded.members) == 2
    seismic = torch.from_numpy(np.load(discover_pairs(openfwi_root)[0].seismic)[:2])
    members = [load_bundle(b) for b in bundles]
    with torch.no_grad():
        expected = 0.5 * (members[0](seismic) + members[1](seismic))  # median of two = mean
        plain = VelocityEnsemble.from_modules(members)(seismic)
    assert torch.allclose(plain, expected, atol=1e-4)

    from lightning.pytorch import Trainer

    from fwi.model_tools import validation_batches

    trainer = Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    logged = trainer.validate(loaded, dataloaders=validation_batches(str(openfwi_root), 4, 2))[0]
    assert 0 < logged["val/mae_ms"] < 3000 and logged["val/mae"] == pytest.approx(logged["val/mae_ms"] / 1500)

    test_dir = tmp_path / "test"
    test_dir.mkdir()
    for i in range(3):
        np.save(test_dir / f"oid{i}.npy", seismic[i % 2].numpy())
    from fwi.submission import write_submission

    csv_path = write_submission(out, test_dir, tmp_path / "submission.csv", tta=True, batch_size=2)
    rows = list(csv.reader(csv_path.open()))
    assert rows[0][:2] == ["oid_ypos", "x_1"] and len(rows) == 1 + 3 * 70 and len(rows[1]) == 36
    values = np.array([row[1:] for row in rows[1:]], dtype=np.float64)
    assert np.isfinite(values).all() and values.min() >= 1500 and values.max() <= 4500


def test_weighted_ensemble_fits_weights_on_the_validation_directory(bundles, openfwi_root, tmp_path) -> None:
    out = tmp_path / "weighted"
    ensemble(members=[str(b) for b in bundles], out=str(out), method="weighted", val_dir=str(openfwi_root))
    loaded = load_bundle(out)
    weights = loaded.weights
    assert weights.shape == (2,) and weights.sum().item() == pytest.approx(1.0, abs=1e-5)
    metrics = json.loads((out / "metrics.json").read_text())
    per_family = loaded.hparams.family_weights
    assert sorted(per_family) == ["CurveFault-A", "FlatVel-A"]  # both families of --val_dir
    for label in ("global", "FlatVel-A", "CurveFault-A"):
        vector = [metrics[f"val/weights/{label}/{b}"] for b in bundles]
        assert sum(vector) == pytest.approx(1.0, abs=1e-5)
        if label != "global":
            assert vector == pytest.approx(per_family[label])
    for name in ("FlatVel-A", "CurveFault-A"):  # in-sample, each family's own fit is no worse there
        own, shared = metrics[f"val/ensemble_mae_ms/{name}"], metrics[f"val/global_weights_mae_ms/{name}"]
        assert own <= shared * 1.001

    seismic = torch.from_numpy(np.load(discover_pairs(openfwi_root)[0].seismic)[:2])  # FlatVel-A
    flat = torch.full((2,), FAMILIES.index("FlatVel-A"))
    with torch.no_grad():
        maps = loaded.member_predictions(seismic)
        by_family = loaded(seismic, flat)
        unknown = loaded(seismic)  # a Kaggle test file: no family, global weights
    flat_weights = torch.tensor(per_family["FlatVel-A"]).reshape(2, 1, 1, 1, 1)
    assert torch.allclose(by_family, (maps * flat_weights).sum(0), atol=1e-3)
    assert torch.allclose(unknown, combine(maps, "weighted", weights), atol=1e-3)
    with pytest.raises(EnsembleError, match=r"--out .*exists"):
        ensemble(members=[str(b) for b in bundles], out=str(out))  # nothing overwritten silently


def test_family_weights_pick_each_samples_vector_and_fall_back_to_the_global_one(bundles) -> None:
    members = [load_bundle(b) for b in bundles]
    family_weights = {"FlatVel-A": [1.0, 0.0], "curvefault_a": [0.0, 3.0]}  # any spelling, normalised
    result = VelocityEnsemble.from_modules(
        members, method="weighted", weights=[0.5, 0.5], family_weights=family_weights
    )
    maps = torch.stack([torch.full((3, 1, 2, 2), 2000.0), torch.full((3, 1, 2, 2), 3000.0)])
    family = torch.tensor([FAMILIES.index("FlatVel-A"), FAMILIES.index("CurveFault-A"), -1])
    combined = result.combine_predictions(maps, family)[:, 0, 0, 0].tolist()
    assert combined == pytest.approx([2000.0, 3000.0, 2500.0])
    assert result.combine_predictions(maps)[:, 0, 0, 0].tolist() == pytest.approx([2500.0] * 3)
    with pytest.raises(EnsembleError, match=r"family_weights\.FlatVel-A: expected 2 weights"):
        VelocityEnsemble.from_modules(
            members, method="weighted", weights=[1, 1], family_weights={"FlatVel-A": [1]}
        )
    with pytest.raises(EnsembleError, match="family_weights: unknown OpenFWI family 'Mars-A'"):
        VelocityEnsemble.from_modules(
            members, method="weighted", weights=[1, 1], family_weights={"Mars-A": [1, 1]}
        )


class CoarseGridModel(LightningModule):
    """An fwi-looking module predicting a 35 x 35 grid (what the ensemble must refuse)."""

    def __init__(self) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.register_buffer("float16_inputs", torch.tensor(False))

    def forward(self, seismic, family=None):
        return self.scale * torch.full((seismic.shape[0], 1, 35, 35), 3000.0)


def test_bad_members_and_validation_sets_get_clear_errors(bundles, tmp_path) -> None:
    not_a_bundle = tmp_path / "notes"
    not_a_bundle.mkdir()
    with pytest.raises(ExportError, match="notes: not an export bundle"):
        ensemble(members=[str(bundles[0]), str(not_a_bundle)], out=str(tmp_path / "a"))
    coarse = export_bundle(CoarseGridModel(), tmp_path / "coarse")
    with pytest.raises(EnsembleError, match=r"coarse: predicts a \(1, 35, 35\) grid"):
        ensemble(members=[str(bundles[0]), str(coarse)], out=str(tmp_path / "b"))
    with pytest.raises(EnsembleError, match="weighted: needs --val_dir"):
        ensemble(members=[str(b) for b in bundles], out=str(tmp_path / "c"), method="weighted")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="empty: no family folders"):
        ensemble(members=[str(b) for b in bundles], out=str(tmp_path / "d"), val_dir=str(empty))
    assert not (tmp_path / "d").exists()


def blocky_maps() -> tuple[torch.Tensor, torch.Tensor]:
    """A flat three-layer model and a faulted two-block model on [-1, 1], (2, 1, 70, 70)."""
    depth = torch.arange(70).reshape(70, 1).expand(70, 70)
    column = torch.arange(70).reshape(1, 70).expand(70, 70)
    flat = torch.where(depth < 20, -0.6, torch.where(depth < 45, 0.0, 0.7))
    fault = torch.where(depth < 30 + (column > 35).long() * 12, -0.3, 0.5)
    return torch.stack([flat, fault])[:, None].float(), torch.tensor([True, False])


def test_tv_refinement_removes_noise_and_keeps_blocks() -> None:
    truth, is_flat = blocky_maps()
    noisy = truth + 0.08 * torch.randn(truth.shape, generator=torch.Generator().manual_seed(0))
    assert torch.equal(refine(noisy, "tv2d", weight=0.0), noisy)
    error = lambda m: (m - truth).abs().mean(dim=(1, 2, 3))  # noqa: E731
    tv = tv_denoise(noisy, 0.08)
    assert (error(tv) < 0.5 * error(noisy)).all()
    layered = flat_layer_refine(noisy, 0.02)
    assert error(layered)[0] < 0.2 * error(noisy)[0]  # the flat prior fits the layered model best
    assert error(layered)[1] > error(tv)[1]  # and is wrong for the faulted one
    assert looks_flat(truth).tolist() == [True, False]
    auto = refine(noisy, "auto", weight=0.05, flat=is_flat)
    assert (error(auto) < 0.5 * error(noisy)).all()


def test_mc_dropout_gives_spread_only_through_dropout(openfwi_root) -> None:
    task = member_task(openfwi_root, "trace_egnn", 0)
    seismic = torch.from_numpy(np.load(discover_pairs(openfwi_root)[0].seismic)[:2])
    samples = mc_dropout_samples(task, seismic, passes=4)
    assert samples.shape == (4, 2, 1, 70, 70) and samples.std(0).mean() > 0.1  # m/s
    assert not task.training and not any(m.training for m in task.modules())  # state restored
    with pytest.raises(ValueError, match="no dropout layer"):
        mc_dropout_samples(member_task(openfwi_root, "inversionnet", 0), seismic, passes=4)


def test_calibration_report_of_a_calibrated_gaussian_and_the_plot(tmp_path) -> None:
    generator = torch.Generator().manual_seed(0)
    sigma = torch.rand(200_000, generator=generator) * 90 + 10
    target = torch.zeros_like(sigma)
    prediction = sigma * torch.randn(sigma.shape, generator=generator)
    report = calibration_report(prediction, sigma, target)
    assert report["coverage_1sigma"] == pytest.approx(math.erf(1 / math.sqrt(2)), abs=0.01)
    assert report["coverage_2sigma"] == pytest.approx(math.erf(2 / math.sqrt(2)), abs=0.01)
    assert report["spearman_sigma_abs_error"] > 0.3
    for row in report["reliability"]:
        assert row["rmse_ms"] == pytest.approx(row["mean_sigma_ms"], rel=0.1)
    overconfident = calibration_report(prediction, sigma / 4, target)
    assert overconfident["coverage_1sigma"] < 0.3
    png = reliability_plot(report, tmp_path / "r.png")
    import matplotlib.image

    assert matplotlib.image.imread(png).shape[0] > 100


def test_calibrate_verb_on_an_ensemble_bundle(bundles, openfwi_root, tmp_path) -> None:
    out = tmp_path / "ens"
    ensemble(members=[str(b) for b in bundles], out=str(out))
    for method in ("ensemble", "mc_dropout"):
        report = calibrate(
            str(out), str(openfwi_root), out=str(tmp_path / method), method=method, passes=2, max_samples=4
        )
        assert report["pixels"] == 4 * 70 * 70 and 0 <= report["coverage_1sigma"] <= 1
        assert (tmp_path / method / "reliability.png").stat().st_size > 1000
        assert json.loads((tmp_path / method / "calibration.json").read_text())["method"] == method


def write_test_dir(root: Path, directory: Path, count: int = 3) -> torch.Tensor:
    seismic = torch.from_numpy(np.load(discover_pairs(root)[0].seismic)[:count])
    directory.mkdir()
    for i in range(count):
        np.save(directory / f"oid{i}.npy", seismic[i].numpy())
    return seismic


def test_submit_uncertainty_writes_std_maps_beside_the_csv(bundles, openfwi_root, tmp_path) -> None:
    from fwi.submission import write_submission

    seismic = write_test_dir(openfwi_root, tmp_path / "test")
    out = tmp_path / "ens"
    ensemble(members=[str(b) for b in bundles], out=str(out))
    plain = write_submission(out, tmp_path / "test", tmp_path / "plain.csv", batch_size=2)
    with_std = write_submission(out, tmp_path / "test", tmp_path / "sub.csv", batch_size=2, uncertainty=True)
    assert with_std.read_text() == plain.read_text()  # sigma maps do not change the submission
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == [
        "plain.csv",
        "sub.csv",
        "sub.csv.std.npz",
    ]
    members = [load_bundle(b) for b in bundles]
    with torch.no_grad():
        spread = 0.5 * (members[0](seismic) - members[1](seismic)).abs()[:, 0]  # std of two maps
    with np.load(tmp_path / "sub.csv.std.npz", allow_pickle=False) as stds:
        assert sorted(stds.files) == ["oid0", "oid1", "oid2"]
        for i in range(3):
            sigma = stds[f"oid{i}"]
            assert sigma.shape == (70, 70) and sigma.dtype == np.float16
            np.testing.assert_allclose(sigma, spread[i].numpy(), rtol=2e-3, atol=0.1)

    dropout_bundle = bundles[1]  # trace_egnn: Dropout2d in its decoder
    write_submission(dropout_bundle, tmp_path / "test", tmp_path / "mc.csv", uncertainty=True, mc_passes=3)
    with np.load(tmp_path / "mc.csv.std.npz", allow_pickle=False) as stds:
        assert stds["oid0"].astype(np.float32).mean() > 0.1


def test_submit_uncertainty_refuses_a_model_without_dropout(mtl, bundles, openfwi_root, tmp_path) -> None:
    write_test_dir(openfwi_root, tmp_path / "test", count=1)
    args = ["fwi", "submit", "--checkpoint", bundles[0], "--test_dir", "test", "--out", "sub.csv"]
    result = mtl([*args, "--uncertainty", "true"], expect_ok=False)
    assert "mtl: error: --checkpoint" in result.stdout and "has none" in result.stdout
    assert "Traceback" not in result.stdout
    assert not any(p.is_file() for p in tmp_path.iterdir())  # no CSV, no partial files


def test_training_data_travels_through_checkpoints_bundles_and_ensembles(
    openfwi_root, tmp_path, capsys
) -> None:
    from fwi.data import FwiDataModule
    from fwi.data.generator import GENERATOR_VERSION
    from fwi.model_tools import bundle_training_data, show_bundle

    data = FwiDataModule(root=str(openfwi_root), num_workers=0, batch_size=2, max_samples=5)
    data.setup("fit")
    task = member_task(openfwi_root, "trace_egnn", 0)
    task.receive_statistics(data.fitted_statistics())
    described = task.training_data_description()
    assert described["families"] == ["CurveFault-A", "FlatVel-A"] and described["normalization"] == "global"
    assert sum(described["samples"]["train"].values()) + sum(described["samples"]["val"].values()) == 20
    assert described["samples_used"]["train"] == 5  # max_samples
    member = export_bundle(task, tmp_path / "member")
    assert json.loads((member / "training_data.json").read_text()) == described
    assert load_bundle(member).training_data_description() == described  # weights file carries it too

    old_state = {k: v for k, v in task.state_dict().items() if k != "training_data"}
    fresh = VelocityInversionTask(
        model="trace_egnn", model_args=MEMBERS["trace_egnn"][0], normalization="global"
    )
    fresh.load_state_dict(old_state, strict=True)  # bundles from before the description existed
    assert fresh.training_data_description() is None

    out = tmp_path / "ens"
    ensemble(members=[str(member), str(export_bundle(fresh, tmp_path / "old"))], out=str(out))
    members = json.loads((out / "training_data.json").read_text())["members"]
    assert members[0]["training_data"] == described and members[1]["training_data"] is None
    assert load_bundle(out).members[0].training_data_description() == described  # nested lengths differ
    assert bundle_training_data(str(out))["training_data"]["members"][0]["name"] == str(member)
    capsys.readouterr()  # what the ensemble verb printed
    show_bundle(str(out), json_out=False)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{out}: ensemble (median) of 2 members"
    assert lines[1].startswith(f"  {member}: CurveFault-A, FlatVel-A; samples train 5/")
    assert f"generator CurveFault-A v{GENERATOR_VERSION}, FlatVel-A v{GENERATOR_VERSION}" in lines[1]
    assert lines[2] == f"  {tmp_path / 'old'}: training data not recorded" + lines[2].split("recorded", 1)[1]
    with pytest.raises(ExportError, match=r"--bundle .*not an export bundle"):
        bundle_training_data(str(tmp_path))
