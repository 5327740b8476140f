"""Velocity-model generators for the OpenFWI family kinds, after the OpenFWI paper's descriptions.

Every function draws one (70, 70) float32 model in m/s from a numpy Generator, so a sample depends
only on its own seed. "A" variants are simpler than "B" ones, as in the paper:

    FlatVel     flat layers; A: 2-4 layers, velocity increasing with depth; B: 3-6 layers in any order
    CurveVel    the same layers bent by smooth sinusoidal interfaces (A: parallel, gentle; B: stronger,
                each interface with an extra undulation of its own)
    FlatFault   flat layers cut by one fault (A: 2-4 increasing layers; B: 3-6 in any order, larger throw)
    CurveFault  curved layers cut by one fault
    Style       smooth random media with a depth trend (A: long correlation; B: short, rougher)

OpenFWI's Style families were made by style transfer from natural images; here they are Gaussian
random fields, a deliberate difference (no image corpus is needed, the statistics are not the same).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from fwi.data.families import DEPTH, VELOCITY_MAX, VELOCITY_MIN, WIDTH, canonical_family, family_kind

MIN_THICKNESS = 4  # cells between interfaces where they start
_Z = np.arange(DEPTH, dtype=np.float64)[:, None]
_X = np.arange(WIDTH, dtype=np.float64)[None, :]


def _layer_velocities(rng: np.random.Generator, n: int, complex_: bool) -> np.ndarray:
    values = rng.uniform(VELOCITY_MIN, VELOCITY_MAX, size=n)
    return values if complex_ else np.sort(values)


def _sinusoid(rng: np.random.Generator, max_amplitude: float) -> np.ndarray:
    """(1, WIDTH) smooth lateral undulation, in cells."""
    amplitude = rng.uniform(1, max_amplitude)
    wavelength = rng.uniform(30, 120)
    return amplitude * np.sin(2 * np.pi * _X / wavelength + rng.uniform(0, 2 * np.pi))


def _interfaces(rng: np.random.Generator, n_layers: int, curved: bool, complex_: bool) -> np.ndarray:
    """(n_layers - 1, WIDTH) depths of the interfaces, in cells, increasing downwards at each x.

    Interfaces start at least `MIN_THICKNESS` cells apart. Curved ones share one undulation (A), or
    in B a larger shared one plus a small undulation of their own, so layers bend without crossing.
    """
    n = n_layers - 1
    gaps = np.arange(n) * MIN_THICKNESS
    depths = (np.sort(rng.uniform(6, DEPTH - 4 - gaps[-1], size=n)) + gaps)[:, None] * np.ones((1, WIDTH))
    if curved:
        depths = depths + _sinusoid(rng, 10 if complex_ else 6)
        if complex_:
            depths = depths + np.concatenate([_sinusoid(rng, 3) for _ in range(n)])
    return np.sort(depths, axis=0)


def _layered(depth: np.ndarray, interfaces: np.ndarray, velocities: np.ndarray) -> np.ndarray:
    """Velocity at fractional `depth` (DEPTH, WIDTH): the layer is the number of interfaces above."""
    layer = (depth[None, :, :] >= interfaces[:, None, :]).sum(axis=0)
    return velocities[layer]


def layered_model(rng: np.random.Generator, curved: bool, complex_: bool, fault: bool) -> np.ndarray:
    n_layers = int(rng.integers(3, 7) if complex_ else rng.integers(2, 5))
    velocities = _layer_velocities(rng, n_layers, complex_)
    interfaces = _interfaces(rng, n_layers, curved, complex_)
    depth = np.broadcast_to(_Z, (DEPTH, WIDTH))
    model = _layered(depth, interfaces, velocities)
    if fault:
        # A straight fault through (x0, z0) dipping at `angle`; the hanging wall is moved by `throw` cells.
        x0, z0 = rng.uniform(15, WIDTH - 15), rng.uniform(15, DEPTH - 15)
        angle = rng.uniform(np.deg2rad(30), np.deg2rad(80)) * rng.choice([-1, 1])
        throw = rng.uniform(5, 20 if complex_ else 12) * rng.choice([-1, 1])
        side = (_X - x0) * np.sin(angle) - (_Z - z0) * np.cos(angle) > 0
        shifted = _layered(depth + throw, interfaces, velocities)
        model = np.where(side, shifted, model)
    return model


def style_model(rng: np.random.Generator, complex_: bool) -> np.ndarray:
    sigma = rng.uniform(2, 4) if complex_ else rng.uniform(6, 10)
    field = gaussian_filter(rng.standard_normal((DEPTH, WIDTH)), sigma=sigma, mode="reflect")
    field = (field - field.mean()) / (field.std() + 1e-12)
    trend = np.linspace(0, 1, DEPTH)[:, None] * rng.uniform(500, 1500)
    mean = rng.uniform(2000, 3200)
    spread = rng.uniform(200, 600 if complex_ else 400)
    return mean + trend + spread * field


def velocity_model(family: str, rng: np.random.Generator) -> np.ndarray:
    """One (70, 70) float32 model in m/s, clipped to [1500, 4500], for the family's kind and variant."""
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
