"""The baseline CNN, timm backbones with 6 bands and local pretrained weights, losses and reports."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F

from landcover.models import BaselineCNN, TimmClassifier, build_classifier
from landcover.models.losses import class_weights, focal_loss
from landcover.task import LandCoverTask, per_class_report


@pytest.mark.parametrize(("depth", "width", "size"), [(4, 8, 32), (5, 4, 64)])
def test_baseline_cnn_maps_six_bands_to_class_logits(depth: int, width: int, size: int) -> None:
    model = BaselineCNN(in_channels=6, num_classes=8, width=width, depth=depth)
    assert model(torch.randn(2, 6, size, size)).shape == (2, 8)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 2 * depth and convs[0].out_channels == width


def test_timm_backbone_adapts_local_three_band_weights_to_six(tmp_path: Path) -> None:
    imagenet = timm.create_model("test_resnet", pretrained=False, num_classes=1000)
    weights = tmp_path / "test_resnet_imagenet.pth"
    torch.save(imagenet.state_dict(), weights)
    model = TimmClassifier("test_resnet", in_channels=6, num_classes=8, weights=str(weights))
    stem = model.model.state_dict()["conv1.0.weight"]
    rgb = imagenet.state_dict()["conv1.0.weight"]
    assert stem.shape[1] == 6
    torch.testing.assert_close(stem[:, :3], rgb * 3 / 6)  # RGB filters repeated and rescaled
    torch.testing.assert_close(stem[:, 3:], stem[:, :3])
    assert model(torch.randn(2, 6, 32, 32)).shape == (2, 8)
    with pytest.raises(FileNotFoundError, match=r"missing\.pth: pretrained weights file"):
        build_classifier("test_resnet", 6, 8, weights=str(tmp_path / "missing.pth"))
    with pytest.raises(ValueError, match=r"unknown timm model 'resnet_typo'"):
        build_classifier("resnet_typo", 6, 8)


def test_focal_loss_and_class_weights() -> None:
    logits, target = torch.randn(16, 8), torch.randint(0, 8, (16,))
    weight = torch.rand(8) + 0.5
    torch.testing.assert_close(focal_loss(logits, target, gamma=0.0), F.cross_entropy(logits, target))
    torch.testing.assert_close(
        focal_loss(logits, target, gamma=0.0, weight=weight), F.cross_entropy(logits, target, weight=weight)
    )
    assert focal_loss(logits, target, gamma=2.0) < F.cross_entropy(logits, target)  # easy examples count less
    balanced = class_weights(torch.tensor([60, 30, 10, 0]), "balanced")
    torch.testing.assert_close(balanced, torch.tensor([100 / 180, 100 / 90, 100 / 30, 0.0]))


def test_per_class_report_from_confusion_matrix() -> None:
    confusion = torch.tensor([[8, 2], [1, 9]])
    rows = per_class_report(confusion, ["water", "snow"])
    assert rows[0] == pytest.approx(
        {"class": "water", "precision": 8 / 9, "recall": 0.8, "f1": 16 / 19, "support": 10}
    )


def test_task_normalises_with_its_buffers_and_fills_nodata() -> None:
    task = LandCoverTask(model="baseline_cnn", width=4, depth=2).eval()
    task.band_mean.fill_(0.1)
    task.band_std.fill_(0.05)
    image = torch.full((1, 6, 16, 16), 0.2)
    image[:, :, :, :4] = float("nan")
    x = task.normalise(image)
    assert torch.all(x[..., :4] == 0) and torch.allclose(x[..., 4:], torch.tensor(2.0))
    assert torch.isfinite(task(image)).all()
    assert set(task.state_dict()) >= {"band_mean", "band_std", "class_weight", "train_class_counts"}


def test_onnx_export_keeps_normalisation_and_nodata_filling(tmp_path: Path) -> None:
    import numpy as np
    import onnxruntime

    from common.export import export_bundle, load_bundle

    task = LandCoverTask(width=4, depth=2, example_size=16).eval()
    task.band_mean.fill_(0.1)
    export_bundle(task, tmp_path, onnx=True)
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    image = np.full((2, 6, 16, 16), 0.2, np.float32)
    image[:, :, :3] = np.nan
    (logits,) = session.run(None, {"input_0": image})
    expected = load_bundle(tmp_path)(torch.from_numpy(image)).detach().numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-5)
    assert np.isfinite(logits).all()


def test_lr_schedules_have_their_shape_and_hold_after_the_end() -> None:
    from common.task import lr_factor

    onecycle = [lr_factor(step, "onecycle", total=100) for step in range(0, 131)]
    assert onecycle[0] == pytest.approx(1 / 25) and max(onecycle) == pytest.approx(onecycle[30]) == 1
    assert (
        onecycle[100] == pytest.approx(0, abs=1e-9) and onecycle[130] == onecycle[100]
    )  # no error past the end
    cosine = [lr_factor(step, "cosine", total=10) for step in range(15)]
    assert cosine[0] == 1 and cosine[5] == pytest.approx(0.5) and cosine[14] == cosine[10] == 0
