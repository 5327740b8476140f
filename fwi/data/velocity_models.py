"""Velocity-model generators for the OpenFWI families, fitted to the statistics of real OpenFWI maps.

Every function draws one (70, 70) float32 model in m/s from a numpy Generator, so a sample depends
only on its own seed. The OpenFWI paper (Deng et al., NeurIPS 2022 Datasets and Benchmarks, arXiv
2111.02926) describes the families only in words: flat layers (FlatVel), layers bent by curves
(CurveVel), the same cut by faults (FlatFault, CurveFault), and maps made by style transfer from
natural images (Style), with "A" variants simpler than "B". The numbers below are fitted to the
statistics of real maps (6,000 FlatVel-A maps: 3-8 layers, 3: 10%, 4-7: about 20% each, 8: 8%;
velocity increasing with depth; integer m/s; top layer 1500-4009 m/s, median 1833; thickness 1-57
cells, median 12; mean 2780 m/s. CurveVel-A: 3-8 distinct integer velocities, top row median 1842):

    FlatVel     flat layers; A: velocities increasing with depth; B: the same layers in random order
    CurveVel    those layers bent by one shared smooth curve (a sum of two sinusoids), cut off where
                they leave the grid; B adds an undulation of each interface's own
    FlatFault   flat layers cut by one straight fault; the hanging wall moves by the throw
                (A: 5-12 cells; B: 5-20 cells and layers in random order)
    CurveFault  curved layers cut by one fault
    Style       smooth random media with a depth trend (A: long correlation; B: short, rougher)

Layer velocities are the lowest n of n or n + 1 (even odds) distinct integers drawn uniformly from
1500-4500: that gives the real top-layer median (about 1830) and the real mean (2780); interfaces are evenly spaced with a
jitter of up to 45% of the spacing (spacing 70 / (n - 1/2), so the deepest layer is about half as
thick, as in the real maps). OpenFWI's Style families were made by style transfer from natural
images; here they are Gaussian random fields, a deliberate difference (no image corpus is needed;
the statistics are not the same). Fault geometry is not compared with real maps (none are at hand).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from fwi.data.families import DEPTH, VELOCITY_MAX, VELOCITY_MIN, WIDTH, canonical_family, family_kind

LAYER_COUNTS = (3, 4, 5, 6, 7, 8)
LAYER_COUNT_SHARES = (0.10, 0.205, 0.205, 0.205, 0.205, 0.08)  # real FlatVel-A, renormalised
INTERFACE_JITTER = 0.45  # of the interface spacing
FAULT_THROW_CELLS = {"A": (5, 12), "B": (5, 20)}
_Z = np.arange(DEPTH, dtype=np.float64)[:, None]
_X = np.arange(WIDTH, dtype=np.float64)[None, :]


def layer_count(rng: np.random.Generator) -> int:
    shares = np.asarray(LAYER_COUNT_SHARES) / np.sum(LAYER_COUNT_SHARES)
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


def smooth_curve(rng: np.random.Generator, max_amplitude: float) -> np.ndarray:
    """(1, WIDTH) lateral displacement in cells: two sinusoids, mean zero over x."""
    curve = np.zeros((1, WIDTH))
    for share in rng.dirichlet((1.0, 1.0)):
        wavelength = rng.uniform(25, 140)
        curve = curve + share * np.sin(2 * np.pi * _X / wavelength + rng.uniform(0, 2 * np.pi))
    curve = curve - curve.mean()
    return rng.uniform(1, max_amplitude) * curve / (np.abs(curve).max() + 1e-12)


def layered(depth: np.ndarray, interfaces: np.ndarray, velocities: np.ndarray) -> np.ndarray:
    """Velocity at `depth` (DEPTH, WIDTH) cells; `interfaces` (n-1, WIDTH): the layer is the count above."""
    layer = (depth[None, :, :] >= interfaces[:, None, :]).sum(axis=0)
    return velocities[layer]


def layered_model(rng: np.random.Generator, curved: bool, complex_: bool, fault: bool) -> np.ndarray:
    n_layers = layer_count(rng)
    velocities = layer_velocities(rng, n_layers, increasing=not complex_)
    interfaces = flat_interfaces(rng, n_layers)[:, None] * np.ones((1, WIDTH))
    if curved:
        interfaces = interfaces + smooth_curve(rng, 16 if complex_ else 12)
        if complex_:
            interfaces = interfaces + np.concatenate([smooth_curve(rng, 3) for _ in range(n_layers - 1)])
        interfaces = np.sort(np.round(interfaces), axis=0)
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
        model = layered_model(
            rng, curved=family.startswith("Curve"), complex_=complex_, fault=kind == "fault"
        )
    return np.clip(model, VELOCITY_MIN, VELOCITY_MAX).astype(np.float32)
