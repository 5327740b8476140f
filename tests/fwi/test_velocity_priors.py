"""Velocity priors per family: statistics of 200 drawn models against those of real OpenFWI maps.

Real-map figures (from the OpenFWI FlatVel-A/CurveVel-A training maps; see docs/fwi.md): FlatVel-A
3-8 layers (3: 10%, 4-7: ~20% each, 8: 8%), increasing with depth, integer m/s, top layer median
1833 m/s, thickness 1-57 cells (median 12), mean 2780 m/s; CurveVel-A 3-8 distinct velocities, and
the fold statistics of the CURVEVEL_A_* constants below.
Priors only, no wave simulation: the whole file takes about a second.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from fwi.data.velocity_models import FAULT_THROW_CELLS, velocity_model

N_MODELS = 200

# Measured on 100 real CurveVel-A maps of OpenFWI's training split (each layer's top depth traced
# across the 70 columns, where it lies inside the grid): no map has only 3 distinct velocities; the
# relief (max - min depth) of interfaces inside the grid over at least 35 columns has median 17 cells
# and 90th percentile 33; interfaces inside the grid over all 70 columns have 3-5 interior extrema
# (median 4); adjacent interfaces correlate at 0.98 (median). The bounds leave room for 200 draws.
CURVEVEL_A_RELIEF_MEDIAN_CELLS = (14, 20)  # real 17
CURVEVEL_A_RELIEF_P90_CELLS = (26, 42)  # real 33
CURVEVEL_A_EXTREMA_MEDIAN = (3, 5)  # real 4
CURVEVEL_A_ADJACENT_CORRELATION_MEDIAN = 0.93  # at least; real 0.98


def draw(family: str) -> np.ndarray:
    return np.stack([velocity_model(family, np.random.default_rng([7, i])) for i in range(N_MODELS)])


def distinct_counts(models: np.ndarray) -> np.ndarray:
    return np.array([len(np.unique(m)) for m in models])


def layer_thicknesses(column: np.ndarray) -> np.ndarray:
    edges = np.concatenate([[0], np.flatnonzero(np.diff(column)) + 1, [len(column)]])
    return np.diff(edges)


def interface_depths(model: np.ndarray) -> list[np.ndarray]:
    """Each layer's top depth per column (70,), NaN where the layer is absent or its top is row 0."""
    curves = []
    for value in np.unique(model):  # one velocity per layer
        present = model == value
        top = np.where(present.any(axis=0), present.argmax(axis=0), 0).astype(np.float64)
        top[top <= 0] = np.nan
        if np.isfinite(top).any():
            curves.append(top)
    return curves


def interior_extrema(curve: np.ndarray) -> int:
    steps = np.diff(curve)
    steps = steps[steps != 0]
    return int(np.sum(np.sign(steps[1:]) != np.sign(steps[:-1])))


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


def test_curvevel_a_folds_match_real_curvevel_a() -> None:
    """The fold's relief, its number of wiggles and how parallel the interfaces are, as in real maps."""
    models = draw("CurveVel-A")
    assert distinct_counts(models).min() >= 4  # real: never 3
    reliefs, extrema, correlations = [], [], []
    for model in models:
        curves = interface_depths(model)
        reliefs += [np.nanmax(c) - np.nanmin(c) for c in curves if np.isfinite(c).sum() >= 35]
        full = [c for c in curves if np.isfinite(c).all()]
        extrema += [interior_extrema(c) for c in full]
        wavy = [c for c in full if c.std() > 0.5]
        correlations += [np.corrcoef(a, b)[0, 1] for a, b in itertools.pairwise(wavy)]
    low, high = CURVEVEL_A_RELIEF_MEDIAN_CELLS
    assert low <= np.median(reliefs) <= high
    low, high = CURVEVEL_A_RELIEF_P90_CELLS
    assert low <= np.percentile(reliefs, 90) <= high
    low, high = CURVEVEL_A_EXTREMA_MEDIAN
    assert low <= np.median(extrema) <= high
    assert np.median(correlations) >= CURVEVEL_A_ADJACENT_CORRELATION_MEDIAN


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
