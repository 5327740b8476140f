"""RoofTask: the multi-task LightningModule (losses, metrics, TensorBoard overlays, prediction rasters).

A batch holds only the labels its dataset has (see `roofnet.data.datasets`); each loss runs only
when its label is present, so RID batches train segments, superstructures, building and boundary,
Roofline batches lines and height, AIRS batches building and boundary. The total loss is the weighted
sum of the present losses, or with `uncertainty_weighting` Kendall et al.'s
`sum_i exp(-s_i) * w_i * L_i + s_i` with a learned log-variance s_i per task.

Validation metrics, per dataset dataloader (logged as `val/<metric>`; `mtl test`: `test/<metric>` on
RID's shared test split and the Roofline/AIRS validation data):
    segments_miou, segments_iou/<class>, superstructures_miou      RID
    rid_building_iou, airs_building_iou, airs_boundary_iou          RID, AIRS
    line_fscore, line_fscore/<eave|ridge|hip|valley>                Roofline
    height_rmse, height_mae, height_nmad, height_delta1             Roofline
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import nn

from common.run_directory import run_directory
from roofnet.data.scenes import LINE_NAMES
from roofnet.metrics import BuildingIoU, ClassIoU, HeightErrors, LineFScore, boundary_band
from roofnet.models import RoofNet

TASKS = ("segments", "superstructures", "building", "boundary", "lines", "height")
DEFAULT_LOSS_WEIGHTS = {
    "segments": 1.0,
    "superstructures": 0.5,
    "building": 1.0,
    "boundary": 0.5,
    "lines": 1.0,
    "height": 0.2,
}


class RoofTask(LightningModule):
    """One shared encoder-decoder with heads for roof segments, superstructures, footprint, boundary,
    lines and height, trained across RID, Roofline and AIRS.

    Args:
        encoder: smp encoder name, or "tu-<timm name>".
        architecture: smp architecture ("Unet", "FPN", "UnetPlusPlus", ...).
        encoder_depth: encoder stages (inputs must be multiples of 2**depth).
        decoder_channels: decoder widths per stage.
        encoder_weights_path: local encoder weights file (nothing is downloaded).
        loss_weights: weight per task (segments, superstructures, building, boundary, lines, height);
            missing tasks keep their defaults, 0 switches a task off.
        uncertainty_weighting: learn one log-variance per task to balance the losses.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        line_pos_weight: BCE weight of line pixels (lines are thin: a few % of pixels).
        boundary_pos_weight: BCE weight of boundary-band pixels.
        line_tolerance: pixels of tolerance for the line F-score.
        class_balance: exponent p of the segments and superstructures cross-entropy class weights
            share**-p (normalised to a pixel mean of 1), from RID's training masks; 0 = plain CE,
            0.5 = inverse square root, 1 = inverse frequency.
        overlays: log prediction overlays to TensorBoard at every validation.
        predict_out_dir: where `mtl predict` writes rasters (default `<run dir>/predictions`).
    """

    # The exported ONNX model takes images of any size the network does (multiples of 2**encoder_depth).
    onnx_dynamic_axes = {0: {2: "height", 3: "width"}}

    def __init__(
        self,
        encoder: str = "resnet18",
        architecture: str = "Unet",
        encoder_depth: int = 5,
        decoder_channels: list[int] | None = None,
        encoder_weights_path: str | None = None,
        loss_weights: dict[str, float] | None = None,
        uncertainty_weighting: bool = False,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        line_pos_weight: float = 5.0,
        boundary_pos_weight: float = 3.0,
        line_tolerance: int = 2,
        class_balance: float = 0.5,
        overlays: bool = True,
        predict_out_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        unknown = set(loss_weights or {}) - set(TASKS)
        if unknown:
            raise ValueError(
                f"RoofTask.loss_weights: unknown tasks {sorted(unknown)}; expected some of {TASKS}"
            )
        self.loss_weights = {**DEFAULT_LOSS_WEIGHTS, **(loss_weights or {})}
        self.model = RoofNet(
            encoder,
            architecture,
            encoder_depth,
            tuple(decoder_channels or (256, 128, 64, 32, 32)),
            encoder_weights_path,
        )
        self.log_variances = nn.Parameter(torch.zeros(len(TASKS))) if uncertainty_weighting else None
        # Normalisation statistics of the training images, filled from the DataModule in `setup`.
        self.register_buffer("image_mean", torch.tensor([0.5, 0.5, 0.5]))
        self.register_buffer("image_std", torch.tensor([0.25, 0.25, 0.25]))
        # Cross-entropy class weights from RID's class shares (see `class_balance`), recomputed from the
        # data in every run, so not saved.
        self.register_buffer("segments_class_weights", torch.ones(18), persistent=False)
        self.register_buffer("superstructures_class_weights", torch.ones(9), persistent=False)
        self.example_input_array = torch.zeros(1, 3, 2**encoder_depth * 2, 2**encoder_depth * 2)
        self.metrics = nn.ModuleDict(
            {
                "segments": ClassIoU(18),
                "superstructures": ClassIoU(9),
                "rid_building": BuildingIoU(),
                "airs_building": BuildingIoU(),
                "lines": LineFScore(len(LINE_NAMES), line_tolerance),
                "height": HeightErrors(),
            }
        )
        self._writer = None

    # -- model -----------------------------------------------------------------------------------------
    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """`image` (B, 3, H, W) RGB in [0, 1] -> the head outputs of `RoofNet`."""
        mean, std = self.image_mean.view(1, 3, 1, 1), self.image_std.view(1, 3, 1, 1)
        return self.model((image - mean) / std)

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        mean = getattr(datamodule, "image_mean", None)
        if stage == "fit" and mean is not None:
            self.image_mean.copy_(mean)
            self.image_std.copy_(datamodule.image_std)
        shares = getattr(datamodule, "class_shares", None) or {}
        for key, share in shares.items():
            weights = class_balanced_weights(share, self.hparams.class_balance)
            getattr(self, f"{key}_class_weights").copy_(weights)
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

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )

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
                band = boundary_band(building > 0.5).float()
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
        phase = getattr(self.trainer.datamodule, "current_phase", None) if self.trainer.datamodule else None
        if phase in ("rid", "roofline", "airs"):
            self.log("train/phase", float(("rid", "roofline", "airs").index(phase)), batch_size=size)
        return loss

    # -- validation -------------------------------------------------------------------------------------
    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        outputs = self(batch["image"])
        losses = self.task_losses(outputs, batch)
        dataset = batch["dataset"][0]
        size = batch["image"].shape[0]
        stage = "test" if self.trainer.testing else "val"
        if losses:
            total = self.total_loss(losses)
            self.log(
                f"{stage}/{dataset}_loss", total, batch_size=size, add_dataloader_idx=False, sync_dist=True
            )
        self.update_metrics(outputs, batch, dataset)
        if self.hparams.overlays and batch_idx == 0:
            self.log_overlay(batch, outputs, dataset)

    def update_metrics(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any], dataset: str) -> None:
        if "segments" in batch:
            self.metrics["segments"].update(outputs["segments"], batch["segments"])
            self.metrics["superstructures"].update(outputs["superstructures"], batch["superstructures"])
        if "building" in batch and f"{dataset}_building" in self.metrics:
            self.metrics[f"{dataset}_building"].update(outputs["building"], batch["building"])
        if "lines" in batch:
            self.metrics["lines"].update(outputs["lines"], batch["lines"], batch["line_channels"][0])
        if "height" in batch:
            self.metrics["height"].update(outputs["height"], batch["height"])

    def on_validation_epoch_end(self) -> None:
        for name, value in self.compute_metrics().items():
            self.log(f"val/{name}", value)

    def test_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        self.validation_step(batch, batch_idx, dataloader_idx)

    def on_test_epoch_end(self) -> None:
        for name, value in self.compute_metrics().items():
            self.log(f"test/{name}", value)

    def compute_metrics(self) -> dict[str, torch.Tensor]:
        """Scalars of every metric that saw data this epoch (then reset)."""
        values: dict[str, torch.Tensor] = {}
        for key, metric in self.metrics.items():
            if metric.update_count == 0:
                continue
            result = metric.compute()
            metric.reset()
            if key in ("segments", "superstructures"):
                values[f"{key}_miou"] = result["miou"]
                if key == "segments":
                    values.update(
                        {f"segments_iou/{i}": v for i, v in enumerate(result["iou"]) if not v.isnan()}
                    )
            elif key.endswith("_building"):
                prefix = key.removesuffix("_building")
                values[f"{prefix}_building_iou"] = result["iou"]
                values[f"{prefix}_boundary_iou"] = result["boundary_iou"]
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

        datamodule = self.trainer.datamodule
        dataset = getattr(datamodule, "predict_dataset", None)
        if dataset is None:
            raise ValueError("RoofTask.predict needs RoofDataModule (with --data.predict_path)")
        out = self.hparams.predict_out_dir or str(Path(run_directory(self.trainer)) / "predictions")
        self._writer = PredictionRasterWriter(out, dataset)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, int]:
        outputs = self(batch["image"])
        arrays = {
            "segments": outputs["segments"].argmax(1).to(torch.uint8),
            "superstructures": outputs["superstructures"].argmax(1).to(torch.uint8),
            "building": (outputs["building"] > 0).to(torch.uint8),
            "lines": (torch.sigmoid(outputs["lines"]) * 255).round().to(torch.uint8),
            "height": outputs["height"].float(),
        }
        self._writer.write(batch, {k: v.cpu().numpy() for k, v in arrays.items()})
        return {"windows": int(batch["image"].shape[0])}

    def on_predict_end(self) -> None:
        if self._writer is not None:
            self._writer.close()
            print(f"RoofTask: wrote {len(self._writer.written)} rasters to {self._writer.out_dir}")


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
