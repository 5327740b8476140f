"""Physics refinement: FWI steps from a starting model reduce the misfit and move towards the truth."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from common.errors import UserInputError
from common.export import export_bundle
from fwi.data.generator import forward_model
from fwi.data.velocity_models import velocity_model
from fwi.physics_refinement import refine_velocity, write_refined_submission
from fwi.task import VelocityInversionTask

N_TIME = 400  # the first 400 ms hold the direct wave and the shallow reflections: enough to see the effect
SHALLOW = 10  # depth rows (100 m) that the direct wave and the first reflection constrain best


@pytest.fixture(scope="module")
def survey() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A FlatVel-A model, its gathers, and a blurred, 80 m/s too fast start (a network's typical error)."""
    true = torch.as_tensor(velocity_model("FlatVel-A", np.random.default_rng(3))).float().reshape(1, 70, 70)
    observed = forward_model(true, N_TIME)
    blur = torch.ones(1, 1, 7, 1) / 7
    padded = torch.nn.functional.pad(true[:, None], (0, 0, 3, 3), mode="replicate")
    start = torch.nn.functional.conv2d(padded, blur)[:, 0] + 80
    return true, observed, start


@pytest.mark.parametrize("prior", ["tv", "flat"])
def test_refinement_lowers_the_misfit_and_the_error(survey, prior: str) -> None:
    true, observed, start = survey
    result = refine_velocity(start, observed, steps=4, step_size=40, prior=prior)
    assert len(result.misfit) == 5 and result.misfit[-1] < 0.5 * result.misfit[0]
    before = (start - true)[:, :SHALLOW].abs().mean()
    assert (result.velocity - true)[:, :SHALLOW].abs().mean() < 0.9 * before
    assert result.velocity.min() >= 1500 and result.velocity.max() <= 4500
    if prior == "flat":  # FlatVel's prior: every depth row stays laterally constant
        assert torch.allclose(result.velocity, result.velocity[:, :, :1].expand_as(result.velocity))


def test_zero_steps_keep_the_start_and_bad_priors_are_refused(survey) -> None:
    _, observed, start = survey
    assert torch.equal(refine_velocity(start, observed, steps=0, prior="none").velocity, start)
    with pytest.raises(UserInputError, match="prior: expected one of tv, flat, none, got 'smooth'"):
        refine_velocity(start, observed, steps=1, prior="smooth")


def test_refined_submission_from_a_bundle(tmp_path: Path) -> None:
    task = VelocityInversionTask(model="inversionnet", model_args={"width": 0.125})
    task.seismic_low.fill_(-27.0)
    task.seismic_high.fill_(53.0)
    bundle = export_bundle(task, tmp_path / "bundle")
    test_dir = tmp_path / "test"
    test_dir.mkdir()
    true = torch.as_tensor(velocity_model("FlatVel-A", np.random.default_rng(5))).float().reshape(1, 70, 70)
    np.save(test_dir / "7.npy", forward_model(true)[0].numpy())
    out = write_refined_submission(bundle, test_dir, tmp_path / "sub.csv", steps=1, prior="flat")
    rows = list(csv.reader(out.open()))
    assert len(rows) == 71 and rows[1][0] == "7_y_0"
    values = np.array([row[1:] for row in rows[1:]], dtype=np.float32)
    assert values.min() >= 1500 and values.max() <= 4500
    assert np.allclose(values, values[:, :1])  # the flat prior's laterally constant rows


def test_pseudo_labels_become_training_data(tmp_path: Path) -> None:
    from fwi.data.formats import discover_pairs
    from fwi.pseudo_labels import write_pseudo_labels

    task = VelocityInversionTask(model="inversionnet", model_args={"width": 0.125})
    task.seismic_low.fill_(-27.0)
    task.seismic_high.fill_(53.0)
    bundle = export_bundle(task, tmp_path / "bundle")
    test_dir = tmp_path / "test"
    test_dir.mkdir()
    for index in range(3):
        true = torch.as_tensor(velocity_model("FlatVel-A", np.random.default_rng(index))).float()
        np.save(test_dir / f"{index}.npy", forward_model(true.reshape(1, 70, 70))[0].numpy())
    out = tmp_path / "pseudo"
    write_pseudo_labels(bundle, test_dir, out, "flatvel_a", samples_per_file=2)
    pairs = discover_pairs(out)
    assert [p.family for p in pairs] == ["FlatVel-A", "FlatVel-A"] and sum(p.count for p in pairs) == 3
    maps = np.concatenate([np.load(out / "predictions" / f"model{n}.npy") for n in (1, 2)])
    with torch.no_grad():
        expected = task.eval()(torch.from_numpy(np.stack([np.load(test_dir / f"{i}.npy") for i in range(3)])))
    np.testing.assert_allclose(maps, expected.numpy(), atol=1e-3)  # the model's own predictions
    gathers = np.load(out / "FlatVel-A/data/data1.npy")
    np.testing.assert_allclose(gathers[0], forward_model(torch.from_numpy(maps[0]))[0].numpy(), atol=1e-4)
    with pytest.raises(UserInputError, match="unknown OpenFWI family 'Lunar-A'"):
        write_pseudo_labels(bundle, test_dir, tmp_path / "other", "Lunar-A")
