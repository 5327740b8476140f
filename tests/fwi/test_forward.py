"""`mtl fwi forward`: user velocity maps -> OpenFWI-layout pairs with the generator's physics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fwi.data.formats import FwiDataError, discover_pairs
from fwi.data.forward_files import forward_velocity_files
from fwi.data.generator import forward_model
from fwi.data.velocity_models import velocity_model
from tests.fwi.conftest import save


def maps(n: int, seed: int = 0) -> np.ndarray:
    return np.stack([velocity_model("CurveVel-A", np.random.default_rng([seed, i])) for i in range(n)])


def test_forward_writes_the_openfwi_layout_resumably(tmp_path: Path, monkeypatch, capsys) -> None:
    inputs = tmp_path / "in"
    save(inputs / "model4.npy", maps(2)[:, None])  # (N, 1, 70, 70), OpenFWI's model file
    save(inputs / "predictions.npy", maps(1, seed=1))  # (N, 70, 70), any name
    calls = []

    def interrupt(n: int) -> None:
        calls.append(n)
        if len(calls) == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        forward_velocity_files(inputs, tmp_path / "out", progress=interrupt)
    written = forward_velocity_files(inputs, tmp_path / "out")  # continues the interrupted file
    out = tmp_path / "out"
    assert [p.relative_to(out).as_posix() for p in written] == ["data/data4.npy", "data/data1.npy"]
    assert json.loads((out / "forward_sources.json").read_text()) == {
        str(inputs / "predictions.npy"): "model/model1.npy"
    }
    pairs = discover_pairs(out, family="CurveVel-A")
    assert [(p.seismic.name, p.count) for p in pairs] == [("data1.npy", 1), ("data4.npy", 2)]
    expected = forward_model(torch.from_numpy(maps(2))).numpy()
    np.testing.assert_array_equal(np.load(out / "data/data4.npy"), expected)
    np.testing.assert_array_equal(np.load(out / "model/model4.npy")[:, 0], maps(2))

    from common.cli import main

    monkeypatch.chdir(tmp_path)
    main(["fwi", "forward", "--velocity", "in/model4.npy", "--out", "out"])  # done already: kept
    assert "data/data4.npy" in capsys.readouterr().out
    save(inputs / "model4.npy", maps(2, seed=5)[:, None])
    with pytest.raises(FwiDataError, match=r"model4\.npy: exists with other velocity maps"):
        forward_velocity_files(inputs / "model4.npy", out)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (
            np.full((2, 70, 70), 2.5, dtype=np.float32),
            r"bad\.npy: sample 0: velocities span 2\.5\.\.2\.5.*km/s",
        ),
        (
            np.full((2, 1, 70, 71), 2500.0, dtype=np.float32),
            r"bad\.npy: expected \(N, 1, 70, 70\) .* got shape",
        ),
        (np.where(np.eye(70, dtype=bool), np.nan, 2500.0)[None].repeat(2, 0), r"bad\.npy: sample 0: 70 NaN"),
        (np.full((1, 70, 70), 6000.0), r"bad\.npy: sample 0: velocities span 6000\.\.6000, expected m/s"),
        (np.array([{"maps": 1}], dtype=object), r"bad\.npy: expected .* got Python objects"),
    ],
)
def test_forward_refuses_bad_input_before_simulating(tmp_path: Path, array: np.ndarray, message: str) -> None:
    inputs = tmp_path / "in"
    save(inputs / "good.npy", maps(1))
    save(inputs / "bad.npy", array)
    with pytest.raises(FwiDataError, match=message):
        forward_velocity_files(inputs, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing simulated or written
