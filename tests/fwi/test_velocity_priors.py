"""Velocity priors per family: statistics of 200 drawn models against those of real OpenFWI maps.

Real-map figures (from the OpenFWI FlatVel-A/CurveVel-A training maps; see docs/fwi.md): FlatVel-A
3-8 layers (3: 10%, 4-7: ~20% each, 8: 8%), increasing with depth, integer m/s, top layer median
1833 m/s, thickness 1-57 cells (median 12), mean 2780 m/s; CurveVel-A 3-8 distinct velocities.
Priors only, no wave simulation: the whole file takes about a second.
"""

from __future__ import annotations

import numpy as np
import pytest

from fwi.data.velocity_models import FAULT_THROW_CELLS, velocity_model

N_MODELS = 200


def draw(family: str) -> np.ndarray:
    return np.stack([velocity_model(family, np.random.default_rng([7, i])) for i in range(N_MODELS)])


def distinct_counts(models: np.ndarray) -> np.ndarray:
    return np.array([len(np.unique(m)) for m in models])


def layer_thicknesses(column: np.ndarray) -> np.ndarray:
    edges = np.concatenate([[0], np.flatnonzero(np.diff(column)) + 1, [len(column)]])
    return np.diff(edges)


def common_checks(models: np.ndarray) -> None:
    assert models.shape == (N_MODELS, 70, 70) and models.dtype == np.float32
    assert models.min() >= 1500 and models.max() <= 4500
    assert np.array_equal(models, np.round(models))  # integer m/s, as the real maps


def edge_column_throw(model: np.ndarray) -> int | None:
    """The vertical shift (cells) that maps the first column onto the last, when one fits 95% of it."""
    first, last = model[:, 0], model[:, -1]
    if np.array_equal(first, last):
        return None
    fits = {s: np.mean(first[s:] == last[:-s]) for s in range(1, 26)}
    fits.update({-s: np.mean(first[:-s] == last[s:]) for s in range(1, 26)})
    shift, fit = max(fits.items(), key=lambda item: item[1])
    return abs(shift) if fit > 0.95 else None


def test_flatvel_a_matches_real_flatvel_a_statistics() -> None:
    models = draw("FlatVel-A")
    common_checks(models)
    assert all(np.ptp(m, axis=1).max() == 0 for m in models)  # flat
    assert all((np.diff(m[:, 0]) >= 0).all() for m in models)  # increasing with depth
    counts = distinct_counts(models)
    shares = np.bincount(counts, minlength=10)[3:9] / N_MODELS
    assert counts.min() == 3 and counts.max() == 8
    np.testing.assert_allclose(shares, [0.10, 0.2, 0.2, 0.2, 0.2, 0.08], atol=0.06)
    thickness = np.concatenate([layer_thicknesses(m[:, 0]) for m in models])
    assert thickness.min() >= 1 and thickness.max() <= 57 and 10 <= np.median(thickness) <= 14
    assert 1730 <= np.median(models[:, 0, 0]) <= 1950  # real: 1833
    assert 2690 <= models.mean() <= 2870  # real: 2780


def test_flatvel_b_is_flat_in_any_order() -> None:
    models = draw("FlatVel-B")
    common_checks(models)
    assert all(np.ptp(m, axis=1).max() == 0 for m in models)
    assert np.mean([(np.diff(m[:, 0]) >= 0).all() for m in models]) < 0.1
    assert set(distinct_counts(models)) == set(range(3, 9))


@pytest.mark.parametrize("family", ["CurveVel-A", "CurveVel-B"])
def test_curvevel_layers_bend_laterally(family: str) -> None:
    models = draw(family)
    common_checks(models)
    assert all(np.ptp(m, axis=1).max() > 0 for m in models)
    counts = distinct_counts(models)
    assert counts.min() >= 3 and counts.max() <= 8
    increasing = np.mean([(np.diff(m, axis=0) >= 0).all() for m in models])
    assert increasing == 1.0 if family.endswith("A") else increasing < 0.1
    if family == "CurveVel-A":
        assert 1700 <= np.median(models[:, 0, :]) <= 1950  # real top row median 1842


@pytest.mark.parametrize("family", ["FlatFault-A", "FlatFault-B", "CurveFault-A", "CurveFault-B"])
def test_fault_families_have_throws_in_range(family: str) -> None:
    models = draw(family)
    common_checks(models)
    assert np.mean([np.ptp(m, axis=1).max() > 0 for m in models]) > 0.98
    if family.startswith("Flat"):
        low, high = FAULT_THROW_CELLS[family[-1]]
        throws = [t for t in map(edge_column_throw, models) if t is not None]
        assert len(throws) > 0.5 * N_MODELS  # edge columns on either side of the fault
        assert np.mean([low <= t <= high for t in throws]) > 0.9


@pytest.mark.parametrize("family", ["Style-A", "Style-B"])
def test_style_families_are_smooth_fields_with_depth_trend(family: str) -> None:
    models = draw(family)
    common_checks(models)
    assert (models[:, -10:].mean() - models[:, :10].mean()) > 300  # faster with depth
    roughness = np.abs(np.diff(models, axis=2)).mean()
    assert (roughness > 60) if family.endswith("B") else (roughness < 60)
