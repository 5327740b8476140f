"""Velocity-model generators for the OpenFWI families, fitted to the statistics of real OpenFWI maps.

Every function draws one (70, 70) float32 model in m/s from a numpy Generator, so a sample depends
only on its own seed. The OpenFWI paper (Deng et al., NeurIPS 2022 Datasets and Benchmarks, arXiv
2111.02926) describes the families only in words: flat layers (FlatVel), layers bent by curves
(CurveVel), the same cut by faults (FlatFault, CurveFault), and maps made by style transfer from
natural images (Style), with "A" variants simpler than "B". The numbers below are fitted to the
statistics of real maps (6,000 FlatVel-A maps: 3-8 layers, 3: 10%, 4-7: about 20% each, 8: 8%;
velocity increasing with depth; integer m/s; top layer 1500-4009 m/s, median 1833; thickness 1-57
cells, median 12; mean 2780 m/s. CurveVel-A: 3-8 distinct integer velocities, top row median 1842;
over 100 real CurveVel-A maps: 4-8 distinct velocities, never 3; interfaces bent by one shared fold,
relief median 17 cells, 90th percentile 33, up to 65, with 3-5 interior extrema across 70 cells):

    FlatVel     flat layers; A: velocities increasing with depth; B: the same layers in random order
    CurveVel    those layers bent by one shared fold (three sinusoids of 22-45 cells wavelength, relief
                8-50 cells in A, 10-65 in B) whose relief changes with depth, plus a small fold
                of each interface's own (up to 2.5 cells in A, 5 in B), cut off where they leave
                the grid; CurveVel layer counts follow the real CurveVel-A distinct-velocity shares
    FlatFault   flat layers cut by one straight fault; the hanging wall moves by the throw
                (A: 5-12 cells; B: 5-20 cells and layers in random order)
    CurveFault  CurveVel's folded layers (with FlatVel's layer counts) cut by one fault
    Style       smooth random media with a depth trend (A: long correlation; B: short, rougher)

Layer velocities are the lowest n of n or n + 1 (even odds) distinct integers drawn uniformly from
1500-4500: that gives the real top-layer median (about 1830) and the real mean (2780); interfaces are evenly spaced with a
jitter of up to 45% of the spacing (spacing 70 / (n - 1/2), so the deepest layer is about half as
thick, as in the real maps). OpenFWI's Style families were made by style transfer from natural
images; here they are Gaussian random fields, a deliberate difference (no image corpus is needed;
the statistics are not the same). Fault geometry is not compared with real maps (none are at hand).
How OpenFWI itself bent the CurveVel layers (which functions, which amplitudes) is not stated in the
sources at hand (the paper describes the family in words; lanl/OpenFWI publishes the training code,
not the generator), so the fold is fitted to the maps' statistics, not copied from a recipe.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from fwi.data.families import DEPTH, VELOCITY_MAX, VELOCITY_MIN, WIDTH, canonical_family, family_kind

LAYER_COUNTS = (3, 4, 5, 6, 7, 8)
LAYER_COUNT_SHARES = (0.10, 0.205, 0.205, 0.205, 0.205, 0.08)  # real FlatVel-A, renormalised
CURVEVEL_LAYER_COUNT_SHARES = (0.0, 0.25, 0.13, 0.18, 0.30, 0.14)  # 100 real CurveVel-A maps
INTERFACE_JITTER = 0.45  # of the interface spacing
FAULT_THROW_CELLS = {"A": (5, 12), "B": (5, 20)}
# CurveVel folds, fitted to 100 real CurveVel-A maps (B: larger and less parallel, not compared).
CURVE_COMPONENTS = 3
CURVE_MIX_CONCENTRATION = 3.0  # Dirichlet weights of the components: all three usually matter
CURVE_WAVELENGTH_CELLS = (22.0, 45.0)
CURVE_RELIEF_CELLS = {"A": (8.0, 50.0), "B": (10.0, 65.0)}  # peak to peak of the shared fold
CURVE_RELIEF_GRADIENT = 1.0  # relative change of the fold's relief from top to bottom, at most
CURVE_OWN_CELLS = {"A": 2.5, "B": 5.0}  # peak to peak of each interface's own fold, at most
_Z = np.arange(DEPTH, dtype=np.float64)[:, None]
_X = np.arange(WIDTH, dtype=np.float64)[None, :]


def layer_count(rng: np.random.Generator, shares: tuple[float, ...] = LAYER_COUNT_SHARES) -> int:
    shares = np.asarray(shares) / np.sum(shares)
    return int(rng.choice(LAYER_COUNTS, p=shares))


def layer_velocities(rng: np.random.Generator, n: int, increasing: bool) -> np.ndarray:
    """n distinct integer velocities (m/s): the lowest n of n or n + 1 uniform draws (even odds).

    n draws alone give a top-layer median of about 1860 m/s and a mean of 2890 (real FlatVel-A: 1833
    and 2780); the lowest n of n + 1 give 1800 and 2690; the even mixture lands on the real figures.
    """
    draws = n + int(rng.integers(0, 2))
    values = np.sort(rng.choice(int(VELOCITY_MAX - VELOCITY_MIN) + 1, size=draws, replace=False))[:n]
    values = values.astype(np.float64) + VELOCITY_MIN
    return values if increasing else rng.permutation(values)


def flat_interfaces(rng: np.random.Generator, n_layers: int) -> np.ndarray:
    """(n_layers - 1,) interface depths in cells, strictly increasing within 1..DEPTH-1."""
    spacing = DEPTH / (n_layers - 0.5)
    k = np.arange(1, n_layers)
    depths = np.round(k * spacing + rng.uniform(-INTERFACE_JITTER, INTERFACE_JITTER, k.size) * spacing)
    depths = np.clip(depths, 1, DEPTH - 1)
    for i in range(1, depths.size):  # keep at least one cell per layer
        depths[i] = max(depths[i], depths[i - 1] + 1)
    return np.minimum(depths, DEPTH - 1 - (depths.size - 1 - np.arange(depths.size)))


def fold_shape(rng: np.random.Generator) -> np.ndarray:
    """(1, WIDTH) shape of a fold, mean zero, peak-to-peak 1: a weighted sum of CURVE_COMPONENTS
    sinusoids of wavelength 22-45 cells (log-uniform; real CurveVel-A interfaces have 3-5 interior
    extrema and their strongest Fourier component at 1-3 cycles per 70 cells)."""
    curve = np.zeros((1, WIDTH))
    for weight in rng.dirichlet(np.full(CURVE_COMPONENTS, CURVE_MIX_CONCENTRATION)):
        wavelength = np.exp(rng.uniform(*np.log(CURVE_WAVELENGTH_CELLS)))
        curve = curve + weight * np.sin(2 * np.pi * _X / wavelength + rng.uniform(0, 2 * np.pi))
    curve = curve - curve.mean()
    return curve / (np.ptp(curve) + 1e-12)


def folded_interfaces(rng: np.random.Generator, flat: np.ndarray, complex_: bool) -> np.ndarray:
    """(n-1, WIDTH) interface depths in float cells: the `flat` (n-1,) depths bent by one shared fold.

    The fold's relief (peak to peak, log-uniform in CURVE_RELIEF_CELLS) grows or shrinks linearly
    with depth by up to CURVE_RELIEF_GRADIENT over the model, each interface gets a sub-cell offset
    and a small fold of its own (up to CURVE_OWN_CELLS): real adjacent interfaces correlate at 0.98
    (median) with depth differences varying by about one cell along x, not exactly parallel.
    """
    variant = "B" if complex_ else "A"
    relief = np.exp(rng.uniform(*np.log(CURVE_RELIEF_CELLS[variant])))
    fold = relief * fold_shape(rng)
    gradient = rng.uniform(-CURVE_RELIEF_GRADIENT, CURVE_RELIEF_GRADIENT)
    scale = 1 + gradient * (flat[:, None] - DEPTH / 2) / DEPTH
    own = np.concatenate([rng.uniform(0, CURVE_OWN_CELLS[variant]) * fold_shape(rng) for _ in flat])
    return flat[:, None] + rng.uniform(-0.5, 0.5, (flat.size, 1)) + scale * fold + own


def layered(depth: np.ndarray, interfaces: np.ndarray, velocities: np.ndarray) -> np.ndarray:
    """Velocity at `depth` (DEPTH, WIDTH) cells; `interfaces` (n-1, WIDTH): the layer is the count above."""
    layer = (depth[None, :, :] >= interfaces[:, None, :]).sum(axis=0)
    return velocities[layer]


def layered_model(
    rng: np.random.Generator,
    curved: bool,
    complex_: bool,
    fault: bool,
    count_shares: tuple[float, ...] = LAYER_COUNT_SHARES,
) -> np.ndarray:
    n_layers = layer_count(rng, count_shares)
    velocities = layer_velocities(rng, n_layers, increasing=not complex_)
    interfaces = flat_interfaces(rng, n_layers)[:, None] * np.ones((1, WIDTH))
    if curved:
        interfaces = np.sort(np.round(folded_interfaces(rng, interfaces[:, 0], complex_)), axis=0)
    depth = np.broadcast_to(_Z, (DEPTH, WIDTH))
    model = layered(depth, interfaces, velocities)
    if fault:
        # A straight fault through (x0, z0) dipping at `angle`; the hanging wall moves by `throw` cells.
        x0, z0 = rng.uniform(15, WIDTH - 15), rng.uniform(15, DEPTH - 15)
        angle = rng.uniform(np.deg2rad(30), np.deg2rad(80)) * rng.choice([-1, 1])
        low, high = FAULT_THROW_CELLS["B" if complex_ else "A"]
        throw = int(rng.integers(low, high + 1)) * rng.choice([-1, 1])
        side = (_X - x0) * np.sin(angle) - (_Z - z0) * np.cos(angle) > 0
        shifted = layered(depth + throw, interfaces, velocities)
        model = np.where(side, shifted, model)
    return model


def style_model(rng: np.random.Generator, complex_: bool) -> np.ndarray:
    sigma = rng.uniform(2, 4) if complex_ else rng.uniform(6, 10)
    field = gaussian_filter(rng.standard_normal((DEPTH, WIDTH)), sigma=sigma, mode="reflect")
    field = (field - field.mean()) / (field.std() + 1e-12)
    trend = np.linspace(0, 1, DEPTH)[:, None] * rng.uniform(500, 1500)
    mean = rng.uniform(2000, 3200)
    spread = rng.uniform(200, 600 if complex_ else 400)
    return np.round(mean + trend + spread * field)


def velocity_model(family: str, rng: np.random.Generator) -> np.ndarray:
    """One (70, 70) float32 model in integer m/s within [1500, 4500], for the family's kind and variant."""
    family = canonical_family(family)
    complex_ = family.endswith("B")
    kind = family_kind(family)
    if kind == "style":
        model = style_model(rng, complex_)
    else:
        shares = CURVEVEL_LAYER_COUNT_SHARES if family.startswith("CurveVel") else LAYER_COUNT_SHARES
        model = layered_model(
            rng, family.startswith("Curve"), complex_, fault=kind == "fault", count_shares=shares
        )
    return np.clip(model, VELOCITY_MIN, VELOCITY_MAX).astype(np.float32)
