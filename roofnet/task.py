"""RoofTask: the multi-task LightningModule (losses, metrics, TensorBoard overlays, prediction rasters).

A batch holds only the labels its dataset has (see `roofnet.data.datasets`); each loss runs only
when its label is present, so RID batches train segments, superstructures and (where RID's
segments CSV gives slopes) pitch, Roofline batches lines and height, AIRS batches building and
boundary. The pitch loss ignores the pixels no segment slope covers.

RID trains neither the building nor the boundary head: RID labels only the roofs of the buildings
it annotates (the centre roof and a few around it), the other roofs in its images are background.
Taking its masks as footprints would teach those heads that real, unlabelled roofs are "not roof",
the opposite of what AIRS (every building labelled) teaches. An ignore band (negatives only near an
annotated roof) still punishes terraced and adjoining houses, which sit exactly there, so the loss is
off; RID is scored by `rid_annotated_roof_recall` (annotated roof pixels predicted as building), which
unlabelled roofs cannot lower. The total loss is the weighted
sum of the present losses, or with `uncertainty_weighting` Kendall et al.'s
`sum_i exp(-s_i) * w_i * L_i + s_i` with a learned log-variance s_i per task.

Validation metrics, per dataset dataloader (logged as `val/<metric>`; `mtl test`: `test/<metric>` on
RID's shared test split and the Roofline/AIRS validation data):
    segments_miou, segments_iou/<class>, superstructures_miou      RID
    rid_annotated_roof_recall                                       RID
    airs_building_iou, airs_boundary_iou (pooled over pixels),
    airs_image_building_iou, airs_image_boundary_iou (mean per image),
    airs_boundary_d_px, airs_boundary_d_m (Boundary IoU's d)         AIRS
    line_fscore, line_fscore/<eave|ridge|hip|valley>                Roofline
    height_rmse, height_mae, height_nmad, height_delta1             Roofline
    pitch_miou, pitch_mae_deg (over pixels with a slope label)      RID with segments_reviewed.csv
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common.errors import UserInputError
from common.run_directory import run_directory
from common.task import BaseTask
from roofnet.data.datasets import DATASET_NAMES
from roofnet.data.formats import PITCH_IGNORE, PITCH_PRESETS, RoofDataError
from roofnet.data.scenes import LINE_NAMES
from roofnet.metrics import (
    AnnotatedRoofRecall,
    BuildingIoU,
    ClassIoU,
    HeightErrors,
    LineFScore,
    boundary_band,
)
from roofnet.models import RoofNet

TASKS = ("segments", "superstructures", "building", "boundary", "lines", "height", "pitch")
DEFAULT_LOSS_WEIGHTS = {
    "segments": 1.0,
    "superstructures": 0.5,
    "building": 1.0,
    "boundary": 0.5,
    "lines": 1.0,
    "height": 0.2,
    "pitch": 0.5,
}


class RoofTask(BaseTask):
    """One shared encoder-decoder with heads for roof segments, superstructures, footprint, boundary,
    lines, height and pitch, trained across RID, Roofline and AIRS.

    Statistics of the training data (image mean/std, RID's class shares) arrive once at fit through
    `BaseTask`'s hand-off (`RoofDataModule.fitted_statistics`) and live in buffers, so checkpoints and
    bundles carry them and validating or testing a checkpoint uses the fit's class weights.

    Args:
        encoder: smp encoder name, or "tu-<timm name>".
        architecture: smp architecture ("Unet", "FPN", "UnetPlusPlus", ...).
        encoder_depth: encoder stages (inputs must be multiples of 2**depth).
        decoder_channels: decoder widths per stage.
        encoder_weights_path: local encoder weights file (nothing is downloaded).
        loss_weights: weight per task (segments, superstructures, building, boundary, lines, height,
            pitch); missing tasks keep their defaults, 0 switches a task off.
        uncertainty_weighting: learn one log-variance per task to balance the losses.
        optimizer: "adamw", "adam" or "sgd" (see `common.task`).
        lr: learning rate.
        weight_decay: weight decay.
        scheduler: "none", "cosine", "linear", "onecycle" or "plateau" (on val/segments_miou).
        warmup_steps: linear warm-up steps before the schedule.
        plateau_patience: validations without improvement before the plateau scheduler lowers the LR.
        line_pos_weight: BCE weight of line pixels (lines are thin: a few % of pixels).
        boundary_pos_weight: BCE weight of boundary-band pixels.
        line_tolerance: pixels of tolerance for the line F-score.
        class_balance: exponent p of the segments and superstructures cross-entropy class weights
            share**-p (normalised to a pixel mean of 1), from RID's training masks; 0 = plain CE,
            0.5 = inverse square root, 1 = inverse frequency.
        overlays: log prediction overlays to TensorBoard at every validation.
        predict_out_dir: where `mtl predict` writes rasters (default `<run dir>/predictions`).
        predict_vectors: also write the predictions as vectors, "gpkg" or "geojson", into
            `<predict_out_dir>/roofs.<ext>` (as `mtl roofnet vectorize` does; refused before predicting
            if that file exists); None writes rasters only.
        vector_simplify: simplification tolerance in metres for `predict_vectors`.
    """

    # The exported ONNX model takes images of any size the network does (multiples of 2**encoder_depth).
    onnx_dynamic_axes = {0: {2: "height", 3: "width"}}
    metric_stages = ("val", "test")
    monitor, monitor_mode = "val/segments_miou", "max"

    def __init__(
        self,
        encoder: str = "resnet18",
        architecture: str = "Unet",
        encoder_depth: int = 5,
        decoder_channels: list[int] | None = None,
        encoder_weights_path: str | None = None,
        loss_weights: dict[str, float] | None = None,
        uncertainty_weighting: bool = False,
        optimizer: str = "adamw",
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        scheduler: str = "none",
        warmup_steps: int = 0,
        plateau_patience: int = 3,
        line_pos_weight: float = 5.0,
        boundary_pos_weight: float = 3.0,
        line_tolerance: int = 2,
        class_balance: float = 0.5,
        overlays: bool = True,
        predict_out_dir: str | None = None,
        predict_vectors: str | None = None,
        vector_simplify: float = 0.2,
    ) -> None:
        unknown = set(loss_weights or {}) - set(TASKS)
        if unknown:
            raise UserInputError(
                f"model.loss_weights: unknown tasks {sorted(unknown)}; expected some of {TASKS}"
            )
        if predict_vectors not in (None, "gpkg", "geojson"):
            raise UserInputError(
                f"model.predict_vectors: expected gpkg, geojson or null, got {predict_vectors!r}"
            )
        super().__init__()
        self._writer = None

    def configure_losses(self) -> None:
        self.loss_weights = {**DEFAULT_LOSS_WEIGHTS, **(self.hparams.loss_weights or {})}

    def configure_models(self) -> None:
        hp = self.hparams
        self.model = RoofNet(
            hp.encoder,
            hp.architecture,
            hp.encoder_depth,
            tuple(hp.decoder_channels or (256, 128, 64, 32, 32)),
            hp.encoder_weights_path,
        )
        self.log_variances = nn.Parameter(torch.zeros(len(TASKS))) if hp.uncertainty_weighting else None
        # Statistics of the training data (`receive_statistics`), saved in checkpoints and bundles.
        self.register_buffer("image_mean", torch.tensor([0.5, 0.5, 0.5]))
        self.register_buffer("image_std", torch.tensor([0.25, 0.25, 0.25]))
        self.register_buffer("segments_class_weights", torch.ones(18))
        self.register_buffer("superstructures_class_weights", torch.ones(9))
        self.example_input_array = torch.zeros(1, 3, 2**hp.encoder_depth * 2, 2**hp.encoder_depth * 2)

    def configure_metrics(self) -> nn.ModuleDict:
        """One metric per task, accumulated over an epoch and computed in `compute_metrics` (the base
        keeps one copy for validation and one for test)."""
        return nn.ModuleDict(
            {
                "segments": ClassIoU(18),
                "superstructures": ClassIoU(9),
                "rid_annotated_roof": AnnotatedRoofRecall(),
                "airs_building": BuildingIoU(),
                "lines": LineFScore(len(LINE_NAMES), self.hparams.line_tolerance),
                "height": HeightErrors(),
                "pitch": ClassIoU(len(PITCH_PRESETS), ignore_index=PITCH_IGNORE),
            }
        )

    # -- model -----------------------------------------------------------------------------------------
    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """`image` (B, 3, H, W) RGB in [0, 1] -> the head outputs of `RoofNet`."""
        mean, std = self.image_mean.view(1, 3, 1, 1), self.image_std.view(1, 3, 1, 1)
        return self.model((image - mean) / std)

    def receive_statistics(self, statistics: Mapping[str, Any]) -> None:
        """Image mean/std into their buffers; RID's class shares (`segments_shares`,
        `superstructures_shares`) become the cross-entropy class weights (see `class_balance`)."""
        statistics = dict(statistics)
        for key in ("segments", "superstructures"):
            share = statistics.pop(f"{key}_shares", None)
            if share is not None:
                weights = class_balanced_weights(torch.as_tensor(share), self.hparams.class_balance)
                statistics[f"{key}_class_weights"] = weights
        super().receive_statistics(statistics)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage == "fit" and self._trainer is not None:
            self._let_ddp_skip_heads_without_labels()

    def _let_ddp_skip_heads_without_labels(self) -> None:
        """Turn on DDP's unused-parameter detection (before the strategy wraps the model).

        A batch trains only the heads its dataset has labels for, so in every step some heads get no
        gradient, which plain DDP refuses at the next step ("Expected to have finished reduction in
        the prior iteration"); the platform profiles say `strategy: ddp`. With detection on, a head
        some process used gets the average gradient and one no process used keeps none, as on one
        device (AdamW skips it). An explicit `find_unused_parameters` in the strategy is respected.
        """
        from lightning.pytorch.strategies import DDPStrategy
        from lightning.pytorch.utilities import rank_zero_info

        from common.lightning_private import ddp_kwargs as private_ddp_kwargs

        strategy = self.trainer.strategy
        if not isinstance(strategy, DDPStrategy):
            return
        ddp_kwargs = private_ddp_kwargs(strategy)
        if ddp_kwargs is None:  # a Lightning without this attribute: say what to do
            raise RuntimeError(
                "RoofTask under DDP: batches train only the heads their dataset has labels for; "
                "set --trainer.strategy ddp_find_unused_parameters_true"
            )
        if "find_unused_parameters" not in ddp_kwargs and not ddp_kwargs.get("static_graph"):
            ddp_kwargs["find_unused_parameters"] = True
            rank_zero_info("RoofTask: DDP find_unused_parameters=True (heads without labels in a batch)")

    # -- losses ----------------------------------------------------------------------------------------
    def task_losses(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The loss of every task whose label the batch has (and whose weight is not 0)."""
        losses: dict[str, torch.Tensor] = {}
        weights = self.loss_weights
        if "segments" in batch and weights["segments"]:
            losses["segments"] = F.cross_entropy(
                outputs["segments"], batch["segments"], weight=self.segments_class_weights
            )
        if "superstructures" in batch and weights["superstructures"]:
            losses["superstructures"] = F.cross_entropy(
                outputs["superstructures"],
                batch["superstructures"],
                weight=self.superstructures_class_weights,
            )
        if "building" in batch:
            building = batch["building"]
            if weights["building"]:
                losses["building"] = F.binary_cross_entropy_with_logits(outputs["building"], building)
            if weights["boundary"]:
                band = boundary_band(building > 0.5, border_is_boundary=False).float()
                pos_weight = torch.tensor(self.hparams.boundary_pos_weight, device=band.device)
                losses["boundary"] = F.binary_cross_entropy_with_logits(
                    outputs["boundary"], band, pos_weight=pos_weight
                )
        if "lines" in batch and weights["lines"]:
            channels = batch["line_channels"][0]
            pos_weight = torch.full((len(channels), 1, 1), self.hparams.line_pos_weight, device=self.device)
            losses["lines"] = F.binary_cross_entropy_with_logits(
                outputs["lines"][:, channels], batch["lines"], pos_weight=pos_weight
            )
        if "height" in batch and weights["height"]:
            losses["height"] = F.smooth_l1_loss(outputs["height"], batch["height"])
        if "pitch" in batch and weights["pitch"] and (batch["pitch"] != PITCH_IGNORE).any():
            losses["pitch"] = F.cross_entropy(outputs["pitch"], batch["pitch"], ignore_index=PITCH_IGNORE)
        return losses

    def total_loss(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        total = torch.zeros((), device=self.device)
        for name, loss in losses.items():
            weighted = self.loss_weights[name] * loss
            if self.log_variances is not None:
                s = self.log_variances[TASKS.index(name)]
                weighted = torch.exp(-s) * weighted + s
            total = total + weighted
        return total

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        outputs = self(batch["image"])
        losses = self.task_losses(outputs, batch)
        if not losses:
            raise ValueError(f"batch from {batch.get('dataset')} has no label any enabled loss can use")
        loss = self.total_loss(losses)
        size = batch["image"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        for name, value in losses.items():
            self.log(f"train/{name}_loss", value, batch_size=size)
        # which dataset trained this step (sequential mode: the phase), from the batch itself
        self.log("train/phase", float(DATASET_NAMES.index(batch["dataset"][0])), batch_size=size)
        return loss

    # -- validation -------------------------------------------------------------------------------------
    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        outputs = self(batch["image"])
        losses = self.task_losses(outputs, batch)
        dataset = batch["dataset"][0]
        size = batch["image"].shape[0]
        stage = self.stage
        if losses:
            total = self.total_loss(losses)
            self.log(
                f"{stage}/{dataset}_loss", total, batch_size=size, add_dataloader_idx=False, sync_dist=True
            )
        self.update_metrics(outputs, batch, dataset)
        if self.hparams.overlays and batch_idx == 0:
            self.log_overlay(batch, outputs, dataset)

    def update_metrics(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any], dataset: str) -> None:
        metrics = self.stage_metrics(self.stage)
        if "segments" in batch:
            metrics["segments"].update(outputs["segments"], batch["segments"])
            metrics["superstructures"].update(outputs["superstructures"], batch["superstructures"])
        if "building" in batch and f"{dataset}_building" in metrics:
            metrics[f"{dataset}_building"].update(
                outputs["building"], batch["building"], batch.get("metres_per_pixel")
            )
        if "annotated_roof" in batch:
            metrics["rid_annotated_roof"].update(outputs["building"], batch["annotated_roof"])
        if "lines" in batch:
            metrics["lines"].update(outputs["lines"], batch["lines"], batch["line_channels"][0])
        if "height" in batch:
            metrics["height"].update(outputs["height"], batch["height"])
        if "pitch" in batch:
            metrics["pitch"].update(outputs["pitch"], batch["pitch"])

    def on_validation_epoch_end(self) -> None:
        for name, value in self.compute_metrics("val").items():
            self.log(f"val/{name}", value)

    def test_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        self.validation_step(batch, batch_idx, dataloader_idx)

    def on_test_epoch_end(self) -> None:
        for name, value in self.compute_metrics("test").items():
            self.log(f"test/{name}", value)

    def compute_metrics(self, stage: str = "val") -> dict[str, torch.Tensor]:
        """Scalars of every metric of `stage` that saw data this epoch (then reset)."""
        values: dict[str, torch.Tensor] = {}
        for key, metric in self.stage_metrics(stage).items():
            if metric.update_count == 0:
                continue
            result = metric.compute()
            metric_confusion = getattr(metric, "confusion", None)
            metric_confusion = metric_confusion.clone() if metric_confusion is not None else None
            metric.reset()
            if key == "pitch":
                values["pitch_miou"] = result["miou"]
                values["pitch_mae_deg"] = preset_mean_absolute_error(metric_confusion)
            elif key in ("segments", "superstructures"):
                values[f"{key}_miou"] = result["miou"]
                if key == "segments":
                    values.update(
                        {f"segments_iou/{i}": v for i, v in enumerate(result["iou"]) if not v.isnan()}
                    )
            elif key == "rid_annotated_roof":
                values["rid_annotated_roof_recall"] = result
            elif key.endswith("_building"):
                prefix = key.removesuffix("_building")
                values[f"{prefix}_building_iou"] = result["iou"]
                values[f"{prefix}_boundary_iou"] = result["boundary_iou"]
                values[f"{prefix}_image_building_iou"] = result["image_iou"]
                values[f"{prefix}_image_boundary_iou"] = result["image_boundary_iou"]
                values[f"{prefix}_boundary_d_px"] = result["boundary_px"]
                if not result["boundary_m"].isnan():
                    values[f"{prefix}_boundary_d_m"] = result["boundary_m"]
            elif key == "lines":
                values["line_fscore"] = result["mean_fscore"]
                values.update(
                    {
                        f"line_fscore/{LINE_NAMES[i]}": v
                        for i, v in enumerate(result["fscore"])
                        if not v.isnan()
                    }
                )
            else:
                values.update({f"height_{k}": v for k, v in result.items()})
        return {k: v for k, v in values.items() if torch.isfinite(v)}

    def log_overlay(self, batch: dict[str, Any], outputs: dict[str, torch.Tensor], dataset: str) -> None:
        """Input, predicted segments (or footprint) and predicted lines, side by side, to TensorBoard."""
        experiment = getattr(self.logger, "experiment", None)
        if not hasattr(experiment, "add_image"):
            return
        image = batch["image"][0].detach().float().cpu()
        segments = SEGMENT_PALETTE[outputs["segments"][0].argmax(0).cpu()].permute(2, 0, 1)
        building = torch.sigmoid(outputs["building"][0]).detach().cpu()
        lines = torch.sigmoid(outputs["lines"][0]).detach().cpu().amax(0)
        panels = [
            image,
            0.5 * image + 0.5 * segments,
            image * (1 - 0.5 * building) + 0.5 * building * torch.tensor([1.0, 0.2, 0.2]).view(3, 1, 1),
            torch.maximum(image * 0.5, lines.expand(3, -1, -1)),
        ]
        experiment.add_image(f"overlay/{dataset}", torch.cat(panels, dim=2).clamp(0, 1), self.global_step)

    # -- prediction -------------------------------------------------------------------------------------
    def on_predict_start(self) -> None:
        from roofnet.data.writers import PredictionRasterWriter

        out = self.hparams.predict_out_dir or str(Path(run_directory(self.trainer)) / "predictions")
        vectors = self._vector_path(Path(out))
        if vectors is not None and vectors.exists():
            raise RoofDataError(f"{vectors}: exists; move it away or set --model.predict_out_dir elsewhere")
        self._writer = PredictionRasterWriter(out)

    def _vector_path(self, out_dir: Path) -> Path | None:
        kind = self.hparams.get("predict_vectors")
        return out_dir / f"roofs.{kind}" if kind else None

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, int]:
        outputs = self(batch["image"])
        window = batch["image"].shape[-1]
        sides = [int(side) for side in batch.get("source_window", [window] * len(batch["image"]))]
        if all(side == window for side in sides):
            arrays = {k: v.cpu().numpy() for k, v in prediction_arrays(outputs).items()}
        else:  # windows resampled to the training pixel size: outputs back to each input's grid
            per_item = [
                prediction_arrays(resize_outputs({k: v[i : i + 1] for k, v in outputs.items()}, side))
                for i, side in enumerate(sides)
            ]
            arrays = {k: [item[k][0].cpu().numpy() for item in per_item] for k in per_item[0]}
        self._writer.write(batch, arrays)
        return {"windows": int(batch["image"].shape[0])}

    def on_predict_end(self) -> None:
        if self._writer is not None:
            self._writer.close()
            print(f"RoofTask: wrote {len(self._writer.written)} rasters to {self._writer.out_dir}")
            vectors = self._vector_path(self._writer.out_dir)
            if vectors is not None:
                from roofnet.data.vectors import VectorOptions, vectorize_folder

                stems = [path.stem for path in self._writer.sources]
                options = VectorOptions(simplify_m=self.hparams.get("vector_simplify", 0.2))
                counts = vectorize_folder(self._writer.out_dir, vectors, options, stems=stems)
                print(f"RoofTask: wrote {vectors}: " + ", ".join(f"{k}: {v}" for k, v in counts.items()))


def prediction_arrays(outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Head outputs -> what the prediction rasters hold: class ids, 0/1 footprint, line probability x 255
    (uint8), height in metres (float32)."""
    return {
        "segments": outputs["segments"].argmax(1).to(torch.uint8),
        "superstructures": outputs["superstructures"].argmax(1).to(torch.uint8),
        "building": (outputs["building"] > 0).to(torch.uint8),
        "lines": (torch.sigmoid(outputs["lines"]) * 255).round().to(torch.uint8),
        "height": outputs["height"].float(),
        "pitch": PITCH_DEGREES.to(outputs["pitch"].device)[outputs["pitch"].argmax(1)],
    }


def preset_mean_absolute_error(confusion: torch.Tensor) -> torch.Tensor:
    """Mean |predicted - true| pitch in degrees from a presets confusion matrix (rows: true)."""
    degrees = PITCH_DEGREES.double().to(confusion.device)
    error = (degrees[:, None] - degrees[None, :]).abs()
    return ((confusion.double() * error).sum() / confusion.sum().clamp_min(1)).float()


def resize_outputs(outputs: dict[str, torch.Tensor], side: int) -> dict[str, torch.Tensor]:
    """Head outputs `(B, C, H, W)` / `(B, H, W)` resampled bilinearly (logits, metres) to `side` x `side`."""
    resized = {}
    for key, value in outputs.items():
        squeeze = value.ndim == 3
        value = value[:, None] if squeeze else value
        value = F.interpolate(value.float(), (side, side), mode="bilinear", align_corners=False)
        resized[key] = value[:, 0] if squeeze else value
    return resized


def class_balanced_weights(shares: torch.Tensor, power: float, floor: float = 1e-3) -> torch.Tensor:
    """Cross-entropy weights `shares**-power` for classes with pixel `shares` `(C,)` (floored at `floor`,
    so a class absent from the sample gets a large but finite weight), scaled so the mean weight over
    the pixels is 1 (the loss keeps its scale); `power` 0 gives ones."""
    weights = shares.clamp_min(floor) ** -power
    return weights / (shares * weights).sum().clamp_min(1e-12)


def _palette(classes: int = 18) -> torch.Tensor:
    """Azimuth classes around the hue circle, flat grey, background black: `(classes, 3)` in [0, 1]."""
    import colorsys

    colours = [colorsys.hsv_to_rgb(k / 16, 0.9, 1.0) for k in range(16)] + [(0.6, 0.6, 0.6), (0.0, 0.0, 0.0)]
    return torch.tensor(np.array(colours[:classes]), dtype=torch.float32)


SEGMENT_PALETTE = _palette()
PITCH_DEGREES = torch.tensor(PITCH_PRESETS, dtype=torch.uint8)
