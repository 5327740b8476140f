"""LandCoverTask: the LightningModule for Sentinel-2 patch classification.

It owns the classifier, the normalisation statistics (buffers `band_mean`, `band_std`, copied from
the DataModule's training split when fit starts, so every checkpoint and export carries them), the
losses and the metrics. `forward` takes reflectance (B, C, H, W) with NaN for no-data and returns
logits (B, K): what an exported bundle needs for inference.

Logged: train/loss (per step); {train,val,test}/{loss,acc,macro_f1,precision,recall} per epoch
(macro averages; micro F1 equals accuracy for single-label classification); val/f1_<class>; a
per-class report (text) and the confusion matrix (image) in TensorBoard after each validation and test.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torchmetrics import ConfusionMatrix, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from common.errors import UserInputError
from common.task import BaseTask
from landcover.data.formats import DEFAULT_BANDS, DEFAULT_CLASSES
from landcover.models import build_classifier
from landcover.models.losses import class_weights, focal_loss


def per_class_report(confusion: Tensor, class_names: list[str]) -> list[dict[str, Any]]:
    """Precision, recall, F1 and support per class from a (K, K) confusion matrix (rows: truth)."""
    confusion = confusion.double()
    tp = confusion.diag()
    support = confusion.sum(1)
    predicted = confusion.sum(0)
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), torch.zeros_like(tp))
    recall = torch.where(support > 0, tp / support.clamp(min=1), torch.zeros_like(tp))
    f1 = torch.where(
        precision + recall > 0, 2 * precision * recall / (precision + recall).clamp(min=1e-12), 0 * tp
    )
    return [
        {
            "class": name,
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(class_names)
    ]


def report_markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    lines += [
        f"| {r['class']} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | {r['support']} |"
        for r in rows
    ]
    return "\n".join(lines)


def confusion_figure(confusion: Tensor, class_names: list[str], title: str):
    """A matplotlib figure of the row-normalised confusion matrix with counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = confusion.cpu().numpy()
    rates = counts / counts.sum(1, keepdims=True).clip(min=1)
    k = len(class_names)
    figure, axes = plt.subplots(figsize=(1.0 + 0.7 * k, 1.0 + 0.6 * k))
    axes.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(k), class_names, rotation=45, ha="right", fontsize=8)
    axes.set_yticks(range(k), class_names, fontsize=8)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title, fontsize=9)
    for i in range(k):
        for j in range(k):
            axes.text(j, i, int(counts[i, j]), ha="center", va="center", fontsize=7,
                      color="white" if rates[i, j] > 0.5 else "black")  # fmt: skip
    figure.tight_layout()
    return figure


class LandCoverTask(BaseTask):
    """Patch classifier: baseline CNN or a timm backbone, CE/focal loss, AdamW/SGD and LR schedules.

    Args:
        class_names: class names in label order (the data must have the same; link them in the recipe).
        bands: band names in channel order (the data must have the same; link them in the recipe).
        model: "baseline_cnn" or a timm model name (resnet18, resnet34, efficientnet_b0, ...).
        width: baseline CNN: channels of the first block (doubling per block, up to 8x).
        depth: baseline CNN: number of conv blocks (4-5 in the lab).
        dropout: dropout before the classifier.
        weights: local file of pretrained weights for a timm model (3-channel ImageNet weights are
            adapted to the bands); never downloaded.
        loss: "ce" (cross-entropy) or "focal".
        label_smoothing: label smoothing of the loss (0.1 is common).
        focal_gamma: focusing parameter of the focal loss.
        class_weighting: loss weights from the training class counts: "none", "balanced" or "sqrt".
        optimizer: "adamw", "adam" or "sgd" (momentum 0.9, Nesterov); see `common.task`.
        lr: learning rate (the peak for one-cycle).
        weight_decay: decoupled weight decay (AdamW) or L2 (SGD).
        scheduler: "none", "cosine", "linear", "onecycle" (per step, see `common.task.lr_factor`) or
            "plateau" (halve the LR when val/macro_f1 stops improving for `plateau_patience` epochs).
        warmup_steps: linear warm-up steps before the schedule (onecycle: its warm-up, default 30 %).
        plateau_patience: epochs without improvement before the plateau scheduler lowers the LR.
        example_size: height/width of `example_input_array` (model summary, ONNX export).
    """

    monitor = "val/macro_f1"
    monitor_mode = "max"

    def __init__(
        self,
        class_names: list[str] | None = None,
        bands: list[str] | None = None,
        model: str = "baseline_cnn",
        width: int = 32,
        depth: int = 4,
        dropout: float = 0.2,
        weights: str | None = None,
        loss: Literal["ce", "focal"] = "ce",
        label_smoothing: float = 0.0,
        focal_gamma: float = 2.0,
        class_weighting: Literal["none", "balanced", "sqrt"] = "none",
        optimizer: Literal["adamw", "adam", "sgd"] = "adamw",
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        scheduler: Literal["none", "cosine", "linear", "onecycle", "plateau"] = "none",
        warmup_steps: int = 0,
        plateau_patience: int = 3,
        example_size: int = 64,
    ) -> None:
        super().__init__()

    # -- hooks ----------------------------------------------------------------------------------------
    def configure_models(self) -> None:
        hp = self.hparams
        self.class_names = list(hp.class_names or DEFAULT_CLASSES)
        self.bands = list(hp.bands or DEFAULT_BANDS)
        channels, classes = len(self.bands), len(self.class_names)
        self.model = build_classifier(hp.model, channels, classes, hp.width, hp.depth, hp.dropout, hp.weights)
        # Statistics of the training split (see `receive_statistics`), saved in every checkpoint.
        self.register_buffer("band_mean", torch.zeros(channels))
        self.register_buffer("band_std", torch.ones(channels))
        self.register_buffer("class_weight", torch.ones(classes))
        self.register_buffer("train_class_counts", torch.zeros(classes, dtype=torch.long))
        self.example_input_array = torch.zeros(1, channels, hp.example_size, hp.example_size)

    def configure_metrics(self) -> MetricCollection:
        classes = len(self.class_names)
        self.confusion = torch.nn.ModuleDict(
            {
                f"{stage}_confusion": ConfusionMatrix(task="multiclass", num_classes=classes)
                for stage in ("val", "test")
            }
        )
        return MetricCollection(
            {
                "acc": MulticlassAccuracy(classes, average="micro"),
                "macro_f1": MulticlassF1Score(classes, average="macro"),
                "precision": MulticlassPrecision(classes, average="macro"),
                "recall": MulticlassRecall(classes, average="macro"),
            }
        )

    # -- inference ----------------------------------------------------------------------------------
    def normalise(self, image: Tensor) -> Tensor:
        """(B, C, H, W) reflectance -> standardised per band; no-data (NaN) becomes 0, the band mean."""
        x = (image - self.band_mean[:, None, None]) / self.band_std[:, None, None]
        return torch.where(torch.isnan(x), torch.zeros_like(x), x)

    def forward(self, image: Tensor) -> Tensor:
        return self.model(self.normalise(image))

    # -- statistics from the data -------------------------------------------------------------------
    def receive_statistics(self, statistics: Mapping[str, Any]) -> None:
        """The training split's band statistics and class counts; the data's bands and class names must
        be the model's (the recipes link them), else every logit would mean something else."""
        statistics = dict(statistics)
        for what, ours in (("bands", self.bands), ("class_names", self.class_names)):
            theirs = list(statistics.pop(what, ours))
            if theirs != ours:
                raise UserInputError(
                    f"model.init_args.{what}: {ours}, but the data has {theirs}; make model.init_args.{what} "
                    f"and data.init_args.{what} (or the dataset's dataset.json) agree"
                )
        super().receive_statistics(statistics)
        self.class_weight.copy_(class_weights(self.train_class_counts, self.hparams.class_weighting))

    # -- steps --------------------------------------------------------------------------------------
    def compute_loss(self, logits: Tensor, target: Tensor) -> Tensor:
        weight = None if self.hparams.class_weighting == "none" else self.class_weight
        if self.hparams.loss == "focal":
            return focal_loss(logits, target, self.hparams.focal_gamma, weight, self.hparams.label_smoothing)
        return F.cross_entropy(logits, target, weight=weight, label_smoothing=self.hparams.label_smoothing)

    def _shared_step(self, batch: dict[str, Tensor], stage: str) -> Tensor:
        logits = self(batch["image"])
        target = batch["label"]
        loss = self.compute_loss(logits, target)
        batch_size = target.shape[0]
        self.log_stage_metrics(stage, logits, target, batch_size=batch_size)
        if stage == "train":
            self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=batch_size)
            self.log("train/loss_epoch", loss, on_step=False, on_epoch=True, batch_size=batch_size)
        else:
            self.confusion[f"{stage}_confusion"].update(logits, target)
            self.log(f"{stage}/loss", loss, on_epoch=True, prog_bar=stage == "val", batch_size=batch_size)
        return loss

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "test")

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        probabilities = torch.softmax(self(batch["image"]), dim=1)
        return {"probabilities": probabilities, "prediction": probabilities.argmax(1)}

    # -- per-class report and confusion matrix ------------------------------------------------------
    def _report(self, stage: str) -> tuple[list[dict[str, Any]], Tensor]:
        confusion = self.confusion[f"{stage}_confusion"].compute()
        self.confusion[f"{stage}_confusion"].reset()
        rows = per_class_report(confusion, self.class_names)
        for row in rows:
            self.log(f"{stage}/f1_{row['class']}", row["f1"], sync_dist=False)
        experiment = getattr(self.logger, "experiment", None)
        if hasattr(experiment, "add_figure") and not self.trainer.sanity_checking:
            experiment.add_text(f"{stage}/per_class_report", report_markdown(rows), self.global_step)
            title = f"{stage} confusion matrix, step {self.global_step}"
            experiment.add_figure(f"{stage}/confusion_matrix", confusion_figure(confusion, self.class_names, title),
                                  self.global_step)  # fmt: skip
        return rows, confusion

    def on_validation_epoch_end(self) -> None:
        self._report("val")

    def on_test_epoch_end(self) -> None:
        """Besides TensorBoard: test_report.json, test_confusion_matrix.png and the table on the console."""
        rows, confusion = self._report("test")
        log_dir = self.trainer.log_dir  # on every process: under DDP it is a collective call
        if not (self.trainer.is_global_zero and log_dir):
            return
        out = Path(log_dir)
        report = {
            "classes": rows,
            "confusion_matrix": confusion.tolist(),
            "rows": "true class",
            "columns": "predicted",
        }
        (out / "test_report.json").write_text(json.dumps(report, indent=2) + "\n")
        figure = confusion_figure(
            confusion, self.class_names, f"test confusion matrix, step {self.global_step}"
        )
        figure.savefig(out / "test_confusion_matrix.png", dpi=100)
        import matplotlib.pyplot as plt

        plt.close(figure)
        rank_zero_info(f"landcover test report ({out}):\n{report_markdown(rows)}")
