"""Roof metrics as torchmetrics `Metric`s (accumulated over an epoch, synchronised across processes).

- `ClassIoU`: per-class IoU from a confusion matrix; mIoU over the classes that occur (in the target
  or the prediction), so classes absent from a small validation set do not count as 0.
- `BuildingIoU`: IoU of the building footprint and Boundary IoU as the reference implementation
  defines it (Cheng et al. 2021, bowenc0221/boundary-iou-api `mask_to_boundary`): the band
  `mask - erode(mask, d)`, the mask zero-padded first so that a mask cut by the image border has a
  band along that border, d = round(2 % of the image diagonal), at least 1 px; both pooled over all
  pixels of the epoch and as the mean over images (MapAI's way; images where prediction and target
  are both empty are left out of the mean).
- `AnnotatedRoofRecall`: share of the roof pixels RID annotated that are predicted as building. RID
  labels only the buildings it annotates, so predicted building pixels elsewhere are not errors and
  IoU against its masks would count them as such.
- `LineFScore`: per line class, precision = predicted line pixels within `tolerance` px of a true line,
  recall = true line pixels within `tolerance` px of a predicted one; F = 2PR / (P + R).
- `HeightErrors`: RMSE, MAE, NMAD = 1.4826 * median(|e - median(e)|) and delta<1.25 (share of pixels
  with max(pred/true, true/pred) < 1.25, over pixels at least `min_height` m high, where the ratio means something).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import Metric


def dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Binary dilation of `(B, H, W)` or `(B, C, H, W)` masks with a square of side 2*radius+1."""
    if radius <= 0:
        return mask.bool()
    squeeze = mask.ndim == 3
    x = mask.float()[:, None] if squeeze else mask.float()
    x = F.max_pool2d(x, 2 * radius + 1, stride=1, padding=radius)
    return (x[:, 0] if squeeze else x) > 0.5


def erode(mask: torch.Tensor, radius: int, outside_is_mask: bool = True) -> torch.Tensor:
    """Binary erosion of `(B, H, W)` masks with a square of side 2*radius+1.

    `outside_is_mask`: pixels beyond the image count as mask (a mask cut by the border is not eroded
    there) or, False, as background (the reference Boundary IoU's zero padding).
    """
    if radius <= 0:
        return mask.bool()
    if outside_is_mask:
        return ~dilate(~mask.bool(), radius)
    padded = F.pad(mask.float()[:, None], (radius,) * 4, value=0.0)
    return -F.max_pool2d(-padded, 2 * radius + 1, stride=1)[:, 0] > 0.5


def boundary_radius(height: int, width: int, fraction: float = 0.02) -> int:
    """Boundary IoU's d in pixels: round(`fraction` of the image diagonal), at least 1."""
    return max(round(fraction * (height**2 + width**2) ** 0.5), 1)


def boundary_band(
    mask: torch.Tensor, fraction: float = 0.02, border_is_boundary: bool = True
) -> torch.Tensor:
    """`mask - erode(mask, d)`, d = `boundary_radius` (Boundary IoU's band).

    `border_is_boundary` (the reference's definition, used by the metric): where the image border cuts
    the mask, the band runs along the border. False (the boundary head's training target): only the
    mask's own edges are boundary, as a window border is not where a roof ends.
    """
    radius = boundary_radius(*mask.shape[-2:], fraction)
    return mask.bool() & ~erode(mask, radius, outside_is_mask=not border_is_boundary)


class ClassIoU(Metric):
    """Per-class IoU and mIoU of `(B, C, H, W)` logits (or `(B, H, W)` class ids) against `(B, H, W)` ids."""

    full_state_update = False

    def __init__(self, num_classes: int, ignore_index: int | None = None) -> None:
        super().__init__()
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.add_state(
            "confusion", torch.zeros(num_classes, num_classes, dtype=torch.long), dist_reduce_fx="sum"
        )

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        if preds.ndim == target.ndim + 1:
            preds = preds.argmax(1)
        preds, target = preds.flatten(), target.flatten()
        keep = (
            target != self.ignore_index
            if self.ignore_index is not None
            else torch.ones_like(target, dtype=torch.bool)
        )
        index = target[keep] * self.num_classes + preds[keep]
        self.confusion += torch.bincount(index, minlength=self.num_classes**2).reshape(self.num_classes, -1)

    def compute(self) -> dict[str, torch.Tensor]:
        confusion = self.confusion.double()
        true_positive = confusion.diag()
        union = confusion.sum(0) + confusion.sum(1) - true_positive
        iou = torch.where(union > 0, true_positive / union.clamp_min(1), torch.full_like(union, float("nan")))
        return {"iou": iou.float(), "miou": torch.nanmean(iou).float()}


class BuildingIoU(Metric):
    """Building IoU and Boundary IoU of footprint logits `(B, H, W)` against 0/1 targets, pooled over
    the epoch's pixels and averaged per image.

    `compute()` -> iou, boundary_iou (pooled), image_iou, image_boundary_iou (mean over images),
    boundary_px (d of the last batch, pixels) and boundary_m (d in metres, mean over the images whose
    `metres_per_pixel` was known; NaN if none).
    """

    full_state_update = False

    def __init__(self, boundary_fraction: float = 0.02) -> None:
        super().__init__()
        self.boundary_fraction = boundary_fraction
        for name in ("intersection", "union", "boundary_intersection", "boundary_union"):
            self.add_state(name, torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        for name in ("image_iou_sum", "image_iou_count", "image_boundary_sum", "image_boundary_count"):
            self.add_state(name, torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        for name in ("metres_sum", "metres_count", "radius_px"):
            self.add_state(
                name,
                torch.zeros((), dtype=torch.float64),
                dist_reduce_fx="sum" if name != "radius_px" else "max",
            )

    def update(
        self, logits: torch.Tensor, target: torch.Tensor, metres_per_pixel: torch.Tensor | None = None
    ) -> None:
        pred, true = logits > 0, target > 0.5
        inter, union = (pred & true).sum((1, 2)), (pred | true).sum((1, 2))
        pred_band = boundary_band(pred, self.boundary_fraction)
        true_band = boundary_band(true, self.boundary_fraction)
        band_inter, band_union = (pred_band & true_band).sum((1, 2)), (pred_band | true_band).sum((1, 2))
        self.intersection += inter.sum()
        self.union += union.sum()
        self.boundary_intersection += band_inter.sum()
        self.boundary_union += band_union.sum()
        for total, count, a, b in (
            ("image_iou_sum", "image_iou_count", inter, union),
            ("image_boundary_sum", "image_boundary_count", band_inter, band_union),
        ):
            seen = b > 0
            setattr(self, total, getattr(self, total) + (a[seen].double() / b[seen]).sum())
            setattr(self, count, getattr(self, count) + seen.sum())
        radius = boundary_radius(*pred.shape[-2:], self.boundary_fraction)
        self.radius_px = torch.maximum(
            self.radius_px, torch.tensor(float(radius), dtype=torch.float64, device=self.radius_px.device)
        )
        if metres_per_pixel is not None:
            known = torch.as_tensor(metres_per_pixel, dtype=torch.float64, device=self.metres_sum.device)
            known = known[~known.isnan()]
            self.metres_sum += (known * radius).sum()
            self.metres_count += known.numel()

    def compute(self) -> dict[str, torch.Tensor]:
        def ratio(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return a.double() / b if b > 0 else torch.tensor(float("nan"), dtype=torch.float64)

        return {
            "iou": ratio(self.intersection, self.union).float(),
            "boundary_iou": ratio(self.boundary_intersection, self.boundary_union).float(),
            "image_iou": ratio(self.image_iou_sum, self.image_iou_count).float(),
            "image_boundary_iou": ratio(self.image_boundary_sum, self.image_boundary_count).float(),
            "boundary_px": self.radius_px.float(),
            "boundary_m": ratio(self.metres_sum, self.metres_count).float(),
        }


class AnnotatedRoofRecall(Metric):
    """Share of annotated roof pixels `(B, H, W)` 0/1 that the footprint logits predict as building."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        for name in ("hits", "total"):
            self.add_state(name, torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, annotated: torch.Tensor) -> None:
        roof = annotated > 0.5
        self.hits += (roof & (logits > 0)).sum()
        self.total += roof.sum()

    def compute(self) -> torch.Tensor:
        if self.total == 0:
            return torch.tensor(float("nan"))
        return (self.hits.double() / self.total).float()


class LineFScore(Metric):
    """F-score per line class with a pixel tolerance, from `(B, C, H, W)` logits and 0/1 targets.

    `channels` names which of the `num_classes` line classes the C target channels are (Roofline has
    no valley channel), so only real labels are scored.
    """

    full_state_update = False

    def __init__(self, num_classes: int = 4, tolerance: int = 2, threshold: float = 0.5) -> None:
        super().__init__()
        self.num_classes, self.tolerance, self.threshold = num_classes, tolerance, threshold
        for name in ("pred_hits", "pred_total", "true_hits", "true_total"):
            self.add_state(name, torch.zeros(num_classes, dtype=torch.long), dist_reduce_fx="sum")

    def update(
        self, logits: torch.Tensor, target: torch.Tensor, channels: torch.Tensor | None = None
    ) -> None:
        channels = torch.arange(target.shape[1], device=target.device) if channels is None else channels
        pred = torch.sigmoid(logits[:, channels]) > self.threshold
        true = target > 0.5
        near_true, near_pred = dilate(true, self.tolerance), dilate(pred, self.tolerance)
        self.pred_hits.index_add_(0, channels, (pred & near_true).sum((0, 2, 3)))
        self.pred_total.index_add_(0, channels, pred.sum((0, 2, 3)))
        self.true_hits.index_add_(0, channels, (true & near_pred).sum((0, 2, 3)))
        self.true_total.index_add_(0, channels, true.sum((0, 2, 3)))

    def compute(self) -> dict[str, torch.Tensor]:
        precision = self.pred_hits.double() / self.pred_total.clamp_min(1)
        recall = self.true_hits.double() / self.true_total.clamp_min(1)
        fscore = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
        fscore = torch.where(self.true_total > 0, fscore, torch.full_like(fscore, float("nan")))
        return {"fscore": fscore.float(), "mean_fscore": torch.nanmean(fscore).float()}


class HeightErrors(Metric):
    """nDSM errors in metres: RMSE, MAE, NMAD, delta<1.25; NMAD's medians use a capped sample of errors."""

    full_state_update = False

    def __init__(self, min_height: float = 1.0, max_kept: int = 200_000) -> None:
        super().__init__()
        self.min_height, self.max_kept = min_height, max_kept
        for name in ("squared", "absolute", "count", "delta_hits", "delta_count"):
            self.add_state(name, torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("errors", [], dist_reduce_fx="cat")

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        error = (pred.float() - target.float()).flatten()
        self.squared += error.double().pow(2).sum()
        self.absolute += error.double().abs().sum()
        self.count += error.numel()
        raised = target.flatten() >= self.min_height
        if raised.any():
            p, t = pred.flatten()[raised].clamp_min(1e-3), target.flatten()[raised]
            self.delta_hits += (torch.maximum(p / t, t / p) < 1.25).sum()
            self.delta_count += raised.sum()
        kept = sum(e.numel() for e in self.errors) if isinstance(self.errors, list) else self.errors.numel()
        room = self.max_kept - kept
        if room > 0:
            step = max(error.numel() // room, 1)
            self.errors.append(error[::step][:room].detach())

    def compute(self) -> dict[str, torch.Tensor]:
        errors = torch.cat(self.errors) if isinstance(self.errors, list) else self.errors
        nmad = (
            1.4826 * _median((errors - _median(errors)).abs())
            if errors.numel()
            else torch.tensor(float("nan"))
        )
        count = self.count.clamp_min(1)
        return {
            "rmse": (self.squared / count).sqrt().float(),
            "mae": (self.absolute / count).float(),
            "nmad": nmad.float(),
            "delta1": (self.delta_hits / self.delta_count.clamp_min(1)).float(),
        }


def _median(values: torch.Tensor) -> torch.Tensor:
    """The median (the mean of the two middle values for even counts, unlike `Tensor.median`)."""
    return torch.quantile(values.float(), 0.5)
