"""The synthetic generator: velocity-model families, physics against an independent FD code, files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fwi.data.families import FAMILIES
from fwi.data.formats import discover_pairs
from fwi.data.generator import forward_model, generate, ricker
from fwi.data.velocity_models import velocity_model


@pytest.mark.parametrize("family", FAMILIES)
def test_velocity_models_have_the_family_structure(family: str) -> None:
    models = [velocity_model(family, np.random.default_rng(i)) for i in range(8)]
    for model in models:
        assert model.shape == (70, 70) and model.dtype == np.float32
        assert model.min() >= 1500 and model.max() <= 4500
    laterally_invariant = [np.ptp(m, axis=1).max() == 0 for m in models]
    if family.startswith("FlatVel"):
        assert all(laterally_invariant)
    else:
        assert not any(laterally_invariant)
    if family == "FlatVel-A":
        assert all((np.diff(m[:, 0]) >= 0).all() for m in models)  # A: velocity increases with depth


def reference_gathers(velocity: np.ndarray, n_time: int, source_x: int, pad: int = 80) -> np.ndarray:
    """An independent wave-equation solver: 2nd order in time, 4th in space, dt = 0.5 ms, no PML.

    The model is extended by `pad` cells of edge values on every side, enough that no boundary
    reflection comes back within `n_time` ms. The source adds v^2 dt^2 w(t) at its cell (OpenFWI's
    polarity: the direct wave's main lobe is positive). Returns (n_time, 70) receiver traces at depth index 1.
    """
    dx, dt, sub = 10.0, 0.0005, 2
    v = np.pad(velocity.astype(np.float64), pad, mode="edge")
    v2dt2 = torch.from_numpy((v * dt / dx) ** 2)[None, None]
    kernel = torch.tensor([-1 / 12, 4 / 3, -5 / 2, 4 / 3, -1 / 12], dtype=torch.float64)
    lap = torch.zeros(1, 1, 5, 5, dtype=torch.float64)
    lap[0, 0, 2, :] += kernel
    lap[0, 0, :, 2] += kernel
    wavelet = ricker(n_time * sub, dt).double()
    u_prev = torch.zeros_like(v2dt2)
    u = torch.zeros_like(v2dt2)
    traces = []
    for step in range(n_time * sub):
        if step % sub == 0:
            traces.append(u[0, 0, pad + 1, pad : pad + 70].clone())
        u_next = 2 * u - u_prev + v2dt2 * F.conv2d(u, lap, padding=2)
        u_next[0, 0, pad + 1, pad + source_x] += v2dt2[0, 0, pad + 1, pad + source_x] * wavelet[step] * dx**2
        u_prev, u = u, u_next
    return torch.stack(traces).numpy()


def test_forward_model_matches_an_independent_finite_difference_solver() -> None:
    velocity = np.full((70, 70), 2000.0, dtype=np.float32)
    velocity[25:] = 3000.0  # one reflector at 250 m: its reflection arrives by 0.3 s
    n_time = 300
    ours = forward_model(torch.from_numpy(velocity)[None], n_time=n_time)[0].numpy()  # (5, 400, 70)
    assert ours.shape == (5, n_time, 70)
    for shot, x in ((0, 0), (2, 34), (4, 69)):
        reference = reference_gathers(velocity, n_time, x)
        a, b = ours[shot].ravel(), reference.ravel()
        correlation = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
        assert correlation > 0.999, f"shot {shot}: correlation {correlation:.5f} with the reference solver"
        assert np.linalg.norm(a) / np.linalg.norm(b) == pytest.approx(1.0, abs=0.01)  # same amplitude
        direct = ours[shot, :, min(x + 20, 69)]
        assert direct.max() > -direct.min()  # positive main lobe, as OpenFWI


def test_generation_is_deterministic_and_resumable(tmp_path: Path) -> None:
    generate("FlatFault-B", 5, tmp_path / "once", seed=3, samples_per_file=4, batch_size=2)

    calls = []

    def interrupt(n: int) -> None:
        calls.append(n)
        if len(calls) == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate(
            "FlatFault-B",
            5,
            tmp_path / "resumed",
            seed=3,
            samples_per_file=4,
            batch_size=2,
            progress=interrupt,
        )
    partial = sorted(p.name for p in (tmp_path / "resumed/FlatFault-B").iterdir())
    assert partial == ["seis6_1_0.npy.partial", "seis6_1_0.npy.progress", "vel6_1_0.npy.partial"]
    generate("FlatFault-B", 5, tmp_path / "resumed", seed=3, samples_per_file=4, batch_size=3)

    names = sorted(p.name for p in (tmp_path / "once/FlatFault-B").iterdir())
    assert names == ["seis6_1_0.npy", "seis6_1_1.npy", "vel6_1_0.npy", "vel6_1_1.npy"]
    for name in names:
        once = (tmp_path / "once/FlatFault-B" / name).read_bytes()
        assert once == (tmp_path / "resumed/FlatFault-B" / name).read_bytes(), name
    pairs = discover_pairs(tmp_path / "once")
    assert [p.count for p in pairs] == [4, 1] and pairs[0].family == "FlatFault-B"
