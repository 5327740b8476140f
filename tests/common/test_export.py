"""ONNX export's dynamic axes: batch only by default, more where the module names them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from lightning.pytorch import LightningModule

from common.errors import ExportError
from common.export import export_bundle, export_onnx


class TinyConv(LightningModule):
    """A fully convolutional module: it runs at any image size, its ONNX export only where allowed."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, 3, padding=1)
        self.example_input_array = torch.rand(1, 3, 8, 8)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.conv(image)


class AnySizeConv(TinyConv):
    onnx_dynamic_axes = {0: {2: "height", 3: "width"}}


def _run(path: Path, image: torch.Tensor) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input_0": image.numpy()})[0]


def test_by_default_only_the_batch_axis_is_dynamic(tmp_path: Path) -> None:
    module = TinyConv().eval()
    report = export_onnx(module, tmp_path / "model.onnx")
    assert report["dynamic_axes"] == {"input_0": {"0": "batch"}}
    batch = torch.rand(3, 3, 8, 8)
    with torch.no_grad():
        np.testing.assert_allclose(_run(tmp_path / "model.onnx", batch), module(batch).numpy(), atol=1e-5)
    with pytest.raises(
        Exception, match=r"(?s)invalid dimensions for input: input_0.*index: 2 Got: 16 Expected: 8"
    ):
        _run(tmp_path / "model.onnx", torch.rand(1, 3, 16, 8))


def test_a_module_names_more_dynamic_axes(tmp_path: Path) -> None:
    module = AnySizeConv().eval()
    export_bundle(module, tmp_path, onnx=True)
    image = torch.rand(2, 3, 24, 16)  # not the example's 8 x 8
    with torch.no_grad():
        np.testing.assert_allclose(_run(tmp_path / "model.onnx", image), module(image).numpy(), atol=1e-5)


@pytest.mark.parametrize(
    ("axes", "message"),
    [
        ({1: {2: "height"}}, r"AnySizeConv\.onnx_dynamic_axes: no input 1; example_input_array has 1"),
        ({0: {4: "depth"}}, r"AnySizeConv\.onnx_dynamic_axes: input 0 has no axis 4; its example has 4 axes"),
    ],
)
def test_dynamic_axes_that_do_not_exist_are_refused(tmp_path: Path, axes: dict, message: str) -> None:
    module = AnySizeConv()
    module.onnx_dynamic_axes = axes
    with pytest.raises(ExportError, match=message):
        export_onnx(module, tmp_path / "model.onnx")


class FrozenSize(AnySizeConv):
    """Claims any size, but `int(...)` freezes the traced height: right at 8 x 8, wrong at others."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.conv(image)[..., : int(image.shape[-2]), :]


def test_the_export_is_checked_with_every_dynamic_axis_doubled(tmp_path: Path) -> None:
    report = export_onnx(AnySizeConv().eval(), tmp_path / "model.onnx")
    assert report["checked_input_shapes"] == [[[1, 3, 8, 8]], [[2, 3, 16, 16]]]
    with pytest.raises(ExportError, match=r"ONNX gave \(2, 2, 8, 16\) instead of \(2, 2, 16, 16\)"):
        export_onnx(FrozenSize().eval(), tmp_path / "frozen.onnx")
