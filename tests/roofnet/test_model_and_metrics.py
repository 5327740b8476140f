"""The multi-task model, its masked losses and the roof metrics, without a Trainer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch.utils.data import default_collate

from roofnet.data import AIRSDataset, RIDDataset, RoofDataModule, RooflineDataset
from roofnet.data.datasets import PredictionWindows
from roofnet.data.formats import write_geotiff
from roofnet.data.writers import PredictionRasterWriter
from roofnet.metrics import (
    AnnotatedRoofRecall,
    BuildingIoU,
    ClassIoU,
    HeightErrors,
    LineFScore,
    boundary_band,
)
from roofnet.models import RoofNet
from roofnet.task import RoofTask

SMALL = {"encoder": "tu-test_efficientnet", "decoder_channels": [16, 16, 16, 16, 16]}


def test_model_has_one_head_per_task_at_input_resolution() -> None:
    outputs = RoofNet(decoder_channels=(16, 16, 16, 16, 16))(torch.rand(2, 3, 32, 64))
    shapes = {name: tuple(value.shape) for name, value in outputs.items()}
    assert shapes == {
        "segments": (2, 18, 32, 64),
        "superstructures": (2, 9, 32, 64),
        "building": (2, 32, 64),
        "boundary": (2, 32, 64),
        "lines": (2, 4, 32, 64),
        "height": (2, 32, 64),
        "pitch": (2, 7, 32, 64),
    }
    with pytest.raises(ValueError, match="70x64: both sides must be multiples of 32"):
        RoofNet(decoder_channels=(16, 16, 16, 16, 16))(torch.rand(1, 3, 70, 64))


def test_encoder_weights_come_from_a_local_file(tmp_path: Path) -> None:
    source = RoofNet(decoder_channels=(16, 16, 16, 16, 16))
    path = tmp_path / "encoder.safetensors"
    save_file({k: v.contiguous() for k, v in source.encoder.state_dict().items()}, str(path))
    loaded = RoofNet(decoder_channels=(16, 16, 16, 16, 16), encoder_weights_path=str(path))
    assert torch.equal(loaded.encoder.conv1.weight, source.encoder.conv1.weight)
    save_file({"unrelated": torch.zeros(3)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match=r"bad\.safetensors: no tensor matches"):
        RoofNet(encoder_weights_path=str(tmp_path / "bad.safetensors"))


def test_each_dataset_trains_only_the_losses_it_has_labels_for(synthetic_root: Path) -> None:
    task = RoofTask(**SMALL)
    rid = default_collate([RIDDataset(synthetic_root / "rid", "train", 1, 32)[i] for i in range(2)])
    roofline = default_collate(
        [RooflineDataset(synthetic_root / "roofline", "train", image_size=32)[i] for i in range(2)]
    )
    # RID labels only the roofs it annotates: no footprint or boundary loss from its masks
    assert set(task.task_losses(task(rid["image"]), rid)) == {"segments", "superstructures", "pitch"}
    airs = default_collate([AIRSDataset(synthetic_root / "airs", "val", 64)[i] for i in range(2)])
    assert set(task.task_losses(task(airs["image"]), airs)) == {"building", "boundary"}
    assert set(task.task_losses(task(roofline["image"]), roofline)) == {"lines", "height"}
    assert set(
        RoofTask(loss_weights={"height": 0}, **SMALL).task_losses(task(roofline["image"]), roofline)
    ) == {"lines"}
    with pytest.raises(ValueError, match=r"unknown tasks \['depth'\]"):
        RoofTask(loss_weights={"depth": 1.0})


def test_training_steps_reduce_the_loss_with_uncertainty_weighting(synthetic_root: Path) -> None:
    torch.manual_seed(0)
    task = RoofTask(uncertainty_weighting=True, lr=3e-3, **SMALL)
    batch = default_collate([RIDDataset(synthetic_root / "rid", "train", 1, 32)[i] for i in range(2)])
    optimizer = task.configure_optimizers()
    losses = []
    for _ in range(10):
        loss = task.total_loss(task.task_losses(task(batch["image"]), batch))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert task.log_variances.grad is not None and task.log_variances.grad[:4].abs().sum() > 0
    assert losses[-1] < 0.6 * losses[0], losses


def test_class_balanced_weights_favour_rare_classes_and_keep_the_loss_scale() -> None:
    from roofnet.task import class_balanced_weights

    shares = torch.tensor([0.74, 0.06, 0.2 - 1e-4, 1e-4])
    assert torch.equal(class_balanced_weights(shares, 0.0), torch.ones(4))
    weights = class_balanced_weights(shares, 0.5)
    assert torch.isclose((shares * weights).sum(), torch.tensor(1.0))  # pixel-mean weight 1
    assert float(weights[1] / weights[0]) == pytest.approx((0.74 / 0.06) ** 0.5)
    assert weights[3] / weights[0] == pytest.approx((0.74 / 1e-3) ** 0.5)  # rare shares floored at 0.1 %


def test_task_weights_its_cross_entropy_by_the_class_shares_of_rid(synthetic_root: Path) -> None:
    dm = RoofDataModule(str(synthetic_root), phases=["rid", "roofline"], image_size=32)
    dm.setup("fit")
    statistics = dm.fitted_statistics()
    assert set(statistics) == {"image_mean", "image_std", "segments_shares", "superstructures_shares"}
    shares = statistics["segments_shares"]
    assert float(shares.sum()) == pytest.approx(1.0)
    assert shares[17] == shares.max()  # background: most pixels
    rid = default_collate([RIDDataset(synthetic_root / "rid", "train", 1, 32)[i] for i in range(2)])
    losses = {}
    for balance in (0.0, 0.5):
        task = RoofTask(class_balance=balance, **SMALL)
        task.receive_statistics(statistics)  # what BaseTask.setup("fit") hands over
        with torch.no_grad():
            losses[balance] = task.task_losses(task(rid["image"]), rid)["segments"]
        if balance:
            weights = task.segments_class_weights
            assert weights[17] < 1 < weights[:16].min()  # background down, azimuth classes up
            # kept in checkpoints, so validating or testing a checkpoint weighs as its fit did
            assert torch.equal(task.state_dict()["segments_class_weights"], weights)
            assert torch.equal(task.image_mean, statistics["image_mean"])
    assert losses[0.0] != losses[0.5]


def test_class_iou_ignores_classes_that_never_occur() -> None:
    metric = ClassIoU(4)
    target = torch.tensor([[0, 0, 1, 1]])
    metric.update(torch.tensor([[0, 1, 1, 1]]), target)
    result = metric.compute()
    assert result["iou"][:2].tolist() == pytest.approx([0.5, 2 / 3])
    assert result["iou"][2:].isnan().all()
    assert result["miou"].item() == pytest.approx((0.5 + 2 / 3) / 2)


def reference_mask_to_boundary(mask: np.ndarray, dilation_ratio: float = 0.02) -> np.ndarray:
    """Boundary IoU's band as bowenc0221/boundary-iou-api's `mask_to_boundary` defines it, written
    here with scipy: pad the mask with one ring of zeros, erode `d` times with a 3 x 3 square (pixels
    beyond the padding do not erode), crop, subtract; d = round(ratio * diagonal), at least 1."""
    from scipy import ndimage

    height, width = mask.shape
    d = max(round(dilation_ratio * np.sqrt(height**2 + width**2)), 1)
    padded = np.pad(mask.astype(bool), 1, constant_values=False)
    eroded = ndimage.binary_erosion(padded, np.ones((3, 3), bool), iterations=d, border_value=1)
    return mask.astype(bool) & ~eroded[1 : height + 1, 1 : width + 1]


def reference_boundary_iou(pred: np.ndarray, target: np.ndarray) -> float:
    pred_band, true_band = reference_mask_to_boundary(pred), reference_mask_to_boundary(target)
    return (pred_band & true_band).sum() / (pred_band | true_band).sum()


def test_boundary_band_matches_the_reference_definition() -> None:
    rng = np.random.default_rng(0)
    for height, width in ((100, 100), (64, 160), (37, 23)):
        masks = np.zeros((3, height, width), bool)
        masks[0, 10:-10, 5:-5] = True  # inside the image
        masks[1, : height // 2, : width // 2] = True  # cut by the top and left borders
        masks[2] = rng.random((height, width)) > 0.4  # ragged
        ours = boundary_band(torch.from_numpy(masks)).numpy()
        for i in range(3):
            assert np.array_equal(ours[i], reference_mask_to_boundary(masks[i])), (height, width, i)


def test_a_mask_cut_by_the_border_has_boundary_along_the_border() -> None:
    target = torch.zeros(1, 100, 100, dtype=torch.bool)
    target[:, :50, :] = True  # the top half: cut by the top, left and right borders
    band = boundary_band(target)[0]
    assert band[0].all() and band[:3, 0].all() and band[:50, 99].all()  # d = round(2.83) = 3 px
    assert not band[10:47, 3:97].any()  # inside, away from every edge
    training = boundary_band(target, border_is_boundary=False)[0]  # the boundary head's target
    assert not training[0, 10:90].any() and training[47:50].all()  # only where the roof ends


def test_boundary_iou_is_about_the_outline_and_equals_the_reference() -> None:
    target = torch.zeros(2, 100, 100)
    target[0, 20:80, 20:80] = 1
    target[1, :60, 30:] = 1  # cut by the border
    assert boundary_band(target[:1] > 0).sum() == 60 * 60 - 54 * 54  # d = 2 % of the diagonal = 3 px
    metric = BuildingIoU()
    metric.update(target * 20 - 10, target)
    assert metric.compute()["boundary_iou"] == 1.0
    shifted = torch.roll(target, 3, dims=2)
    metric = BuildingIoU()
    metric.update(shifted * 20 - 10, target, torch.tensor([0.075, float("nan")]))
    result = metric.compute()
    assert result["iou"] > 0.85 and result["boundary_iou"] < 0.6  # the outline moved, the area hardly
    per_image = [reference_boundary_iou(shifted[i].numpy() > 0, target[i].numpy() > 0) for i in range(2)]
    assert result["image_boundary_iou"] == pytest.approx(np.mean(per_image), abs=1e-6)
    pooled_bands = [
        (
            reference_mask_to_boundary(shifted[i].numpy() > 0),
            reference_mask_to_boundary(target[i].numpy() > 0),
        )
        for i in range(2)
    ]
    pooled = sum((p & t).sum() for p, t in pooled_bands) / sum((p | t).sum() for p, t in pooled_bands)
    assert result["boundary_iou"] == pytest.approx(pooled, abs=1e-6)
    assert result["boundary_px"] == 3 and result["boundary_m"] == pytest.approx(3 * 0.075)


def test_per_image_mean_weighs_a_small_building_like_a_large_one() -> None:
    target = torch.zeros(2, 64, 64)
    target[0, 4:60, 4:60] = 1  # large, predicted exactly
    target[1, 30:34, 30:34] = 1  # small, missed
    logits = target.clone()
    logits[1] = 0
    metric = BuildingIoU()
    metric.update(logits * 20 - 10, target)
    result = metric.compute()
    assert result["image_iou"] == pytest.approx(0.5) and result["iou"] > 0.99


def test_annotated_roof_recall_ignores_roofs_rid_did_not_label() -> None:
    annotated = torch.zeros(1, 32, 32)
    annotated[:, 8:16, 8:16] = 1
    prediction = annotated.clone()
    prediction[:, 20:30, 20:30] = 1  # another roof, unlabelled in RID
    metric = AnnotatedRoofRecall()
    metric.update(prediction * 20 - 10, annotated)
    assert metric.compute() == 1.0
    prediction[:, 8:12] = 0  # half the annotated roof missed
    metric.reset()
    metric.update(prediction * 20 - 10, annotated)
    assert metric.compute() == pytest.approx(0.5)


def test_line_fscore_tolerates_small_offsets_only() -> None:
    target = torch.zeros(1, 2, 32, 32)
    target[0, 0, 10, :] = 1
    logits = torch.full((1, 4, 32, 32), -10.0)
    logits[0, 0, 11, :] = 10.0  # one pixel off
    channels = torch.tensor([0, 1])
    strict, tolerant = LineFScore(4, tolerance=0), LineFScore(4, tolerance=2)
    strict.update(logits, target, channels)
    tolerant.update(logits, target, channels)
    assert strict.compute()["fscore"][0] == 0.0
    result = tolerant.compute()
    assert result["fscore"][0] == 1.0
    assert result["fscore"][1:].isnan().all()  # no true ridge, hip or valley pixels: not scored


def test_height_errors() -> None:
    metric = HeightErrors(min_height=1.0)
    target = torch.tensor([[0.0, 2.0, 4.0, 8.0]])
    metric.update(target + torch.tensor([[0.0, 0.2, -2.0, 0.2]]), target)
    result = metric.compute()
    assert result["mae"] == pytest.approx(0.6)
    assert result["rmse"] == pytest.approx((4.08 / 4) ** 0.5)
    assert result["delta1"] == pytest.approx(2 / 3)
    assert result["nmad"] == pytest.approx(1.4826 * 0.1, rel=1e-3)


def test_prediction_windows_are_stitched_exactly(tmp_path: Path) -> None:
    """Writing each window's own pixels back must rebuild the input, georeferencing included."""
    from rasterio.transform import from_origin

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 17, (300, 500, 3), dtype=np.uint8)
    source = tmp_path / "tile.tif"
    write_geotiff(source, pixels, from_origin(1570000.0, 5180000.0, 0.075, 0.075), "EPSG:2193")
    windows = PredictionWindows([source], window=128, overlap=32)
    writer = PredictionRasterWriter(tmp_path / "out")
    for start in range(0, len(windows), 3):
        batch = default_collate([windows[i] for i in range(start, min(start + 3, len(windows)))])
        red = (batch["image"][:, 0] * 255).round().to(torch.uint8).numpy()
        outputs = {
            "segments": red,
            "superstructures": red,
            "building": red,
            "lines": np.repeat(red[:, None], 4, 1),
            "height": red.astype(np.float32),
            "pitch": red,
        }
        writer.write(batch, outputs)
    assert not writer.open  # every file closed once its last window is written
    import rasterio

    with rasterio.open(tmp_path / "out" / "tile_segments.tif") as result:
        assert result.crs.to_epsg() == 2193 and result.transform.c == 1570000.0
        assert np.array_equal(result.read(1), pixels[..., 0])


@pytest.mark.parametrize("architecture", ["Unet", "FPN"])  # FPN decodes at 1/4 and upsamples
def test_bundle_with_onnx_matches_pytorch(tmp_path: Path, architecture: str) -> None:
    from common.export import export_bundle, load_bundle

    task = RoofTask(architecture=architecture, **SMALL)
    task.image_mean.fill_(0.4)
    export_bundle(task, tmp_path, onnx=True)
    manifest = json.loads((tmp_path / "bundle.json").read_text())
    assert manifest["checks"]["onnx"]["outputs"] == 7  # every head, checked with onnxruntime
    assert torch.equal(load_bundle(tmp_path).image_mean, torch.full((3,), 0.4))  # statistics travel along

    # The check ran at the example's 64 x 64; the model also runs at other multiples of 32.
    import onnxruntime

    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    image = torch.rand(2, 3, 128, 96)
    actual = session.run(None, {"input_0": image.numpy()})
    with torch.no_grad():
        expected = task.eval()(image)
    assert len(actual) == len(expected)
    for onnx_output, (name, torch_output) in zip(actual, expected.items(), strict=True):  # in head order
        assert onnx_output.shape == tuple(torch_output.shape) and onnx_output.shape[-2:] == (128, 96), name
        np.testing.assert_allclose(onnx_output, torch_output.numpy(), atol=1e-4, rtol=1e-4, err_msg=name)
