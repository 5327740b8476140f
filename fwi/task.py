"""VelocityInversionTask: gathers -> velocity maps, with the reference normalisation in its buffers.

Losses are on normalised velocity ([-1, 1]): `l1_weight * L1 + l2_weight * MSE` (OpenFWI's published
rows are trained with L1 alone or L2 alone). Metrics, overall and per family: MAE, RMSE and SSIM on the
[-1, 1] scale (as the OpenFWI paper reports; `ssim` is OpenFWI's own formula, `fwi.metrics`, and
`ssim_reflect` torchmetrics' reflect-padded one) and MAE in m/s (as Kaggle scores). TensorBoard gets, once per
validation, predicted against true velocity maps and a few input shot gathers.

The seismic limits per family (raw amplitude min/max of the training files) are copied from the
datamodule into buffers when fit starts, so checkpoints and export bundles carry them; `forward`
takes raw gathers and returns m/s, which is all inference needs. So does a description of the
training data (families, samples per split, split, generator version, normalisation: the datamodule's
`training_data()`), kept as UTF-8 JSON in a uint8 buffer so that checkpoints, safetensors bundles
and ensembles carry it like the limits; `export_extras` writes it out as `training_data.json`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from torchmetrics import MeanAbsoluteError, MeanSquaredError, Metric, MetricCollection
from torchmetrics.image import StructuralSimilarityIndexMeasure

from common.errors import UserInputError
from common.task import BaseTask
from fwi.data.decimation import decimate_time, decimated_length
from fwi.data.families import FAMILIES, N_TIME, SEISMIC_SHAPE, VELOCITY_MAX, VELOCITY_MIN
from fwi.data.normalization import denormalize_velocity, normalize_seismic, normalize_velocity
from fwi.metrics import OpenFwiSSIM, openfwi_ssim
from fwi.models import build_model

VELOCITY_SCALE = (VELOCITY_MAX - VELOCITY_MIN) / 2  # 1500: [-1, 1] MAE -> m/s
TRAINING_DATA_FILE = "training_data.json"


def encode_json(value: Any) -> torch.Tensor:
    """Plain data -> (N,) uint8 UTF-8 JSON (an empty tensor for None)."""
    if value is None:
        return torch.zeros(0, dtype=torch.uint8)
    return torch.frombuffer(bytearray(json.dumps(value, sort_keys=True).encode()), dtype=torch.uint8).clone()


def decode_json(tensor: torch.Tensor) -> Any:
    """(N,) uint8 UTF-8 JSON -> plain data (None for an empty tensor)."""
    if tensor.numel() == 0:
        return None
    return json.loads(bytes(tensor.cpu().tolist()).decode())


class PerFamilyMetrics(Metric):
    """MAE, RMSE and SSIM on [-1, 1] for each OpenFWI family: (3, n_families), NaN where none was seen.

    MAE and RMSE pool pixels over the family's samples; SSIM (OpenFWI's formula) is the mean of
    per-sample SSIMs.
    """

    full_state_update = False
    NAMES = ("mae", "rmse", "ssim")

    def __init__(self) -> None:
        super().__init__()
        for name in ("abs_total", "square_total", "ssim_total", "count"):
            self.add_state(name, torch.zeros(len(FAMILIES), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, target: torch.Tensor, family: torch.Tensor) -> None:
        known = family >= 0
        if not known.any():
            return
        pred, target, family = pred[known], target[known], family[known].long()
        error = (pred - target).flatten(1)
        ssim = openfwi_ssim(pred, target)
        self.abs_total.index_add_(0, family, error.abs().mean(1).double())
        self.square_total.index_add_(0, family, error.pow(2).mean(1).double())
        self.ssim_total.index_add_(0, family, ssim.double())
        self.count.index_add_(0, family, torch.ones_like(family, dtype=torch.float64))

    def compute(self) -> torch.Tensor:
        return torch.stack(
            [
                self.abs_total / self.count,
                (self.square_total / self.count).sqrt(),
                self.ssim_total / self.count,
            ]
        )


class VelocityInversionTask(BaseTask):
    """Train any registered velocity-inversion network (see `fwi.models.MODELS`).

    A `common.task.BaseTask`: optimiser and schedule come from the shared vocabulary; the datamodule's
    `fitted_statistics()` (seismic limits per family, float16 flag, time decimation) fill the buffers
    of the same names when fit starts.

    Args:
        model: registered model name: "inversionnet" or "specproj_unet".
        model_args: keyword arguments of that model (e.g. {"width": 0.25}).
        l1_weight: weight of the L1 loss on normalised velocity.
        l2_weight: weight of the MSE loss on normalised velocity.
        optimizer: adamw (OpenFWI's), adam or sgd.
        lr: learning rate (OpenFWI: 1e-4).
        weight_decay: weight decay (OpenFWI: 1e-4).
        scheduler: none (OpenFWI's constant rate), cosine, linear, onecycle or plateau.
        warmup_steps: linear warm-up steps before the schedule.
        normalization: "family" uses each sample's family limits, "global" the union over families
            (what a Kaggle test file, whose family is unknown, always gets).
        log_images: write velocity maps and gathers to TensorBoard at each validation.
    """

    metric_stages = ("val", "test")

    def __init__(
        self,
        model: str = "inversionnet",
        model_args: dict[str, Any] | None = None,
        l1_weight: float = 1.0,
        l2_weight: float = 0.0,
        optimizer: str = "adamw",
        lr: float = 1e-4,
        weight_decay: float = 1e-4,
        scheduler: str = "none",
        warmup_steps: int = 0,
        normalization: str = "family",
        log_images: bool = True,
    ) -> None:
        if normalization not in ("family", "global"):
            raise UserInputError(f"model.normalization: expected 'family' or 'global', got {normalization!r}")
        super().__init__()
        self.example_input_array = torch.zeros(1, *SEISMIC_SHAPE)

    def configure_models(self) -> None:
        self.net = build_model(self.hparams.model, **(self.hparams.model_args or {}))
        n = len(FAMILIES)
        self.register_buffer("seismic_low", torch.full((n,), float("nan")))
        self.register_buffer("seismic_high", torch.full((n,), float("nan")))
        self.register_buffer("float16_inputs", torch.tensor(False))
        self.register_buffer("time_decimation", torch.tensor(1))
        self.register_buffer("training_data", encode_json(None))
        self.val_family_metrics = PerFamilyMetrics()
        self.test_family_metrics = PerFamilyMetrics()

    def configure_metrics(self) -> MetricCollection:
        return MetricCollection(
            {
                "mae": MeanAbsoluteError(),
                "rmse": MeanSquaredError(squared=False),
                "ssim": OpenFwiSSIM(),
                "ssim_reflect": StructuralSimilarityIndexMeasure(data_range=2.0),
            }
        )

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Checkpoints from before time decimation existed have no `time_decimation` buffer: 1."""
        if "time_decimation" not in state_dict:
            state_dict = {**state_dict, "time_decimation": torch.tensor(1)}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        """The training-data buffer takes the stored length (it varies); states from before it existed
        load with none. Per module, so members inside an ensemble load the same way."""
        key = prefix + "training_data"
        if key in state_dict:
            self.training_data = torch.empty_like(state_dict[key], device=self.training_data.device)
        else:
            state_dict[key] = encode_json(None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # -- statistics -------------------------------------------------------------------------------
    def receive_statistics(self, statistics) -> None:
        """The datamodule's limits, float16 flag, decimation and training-data description; the model's
        input length must match the decimation."""
        statistics = dict(statistics)
        description = statistics.pop("training_data", None)
        if description is not None:
            self.training_data = encode_json(description).to(self.training_data.device)
        super().receive_statistics(statistics)
        expected = decimated_length(N_TIME, int(self.time_decimation))
        n_time = getattr(self.net, "n_time", expected)
        if n_time != expected:
            raise UserInputError(
                f"model.init_args.model_args.n_time: expected {expected} for data time_decimation "
                f"{int(self.time_decimation)}, got {n_time}"
            )

    def training_data_description(self) -> dict[str, Any] | None:
        """What the model was trained on (the datamodule's `training_data()` plus the task's input
        normalisation), None for a model never fitted through FwiDataModule."""
        description = decode_json(self.training_data)
        if description is None:
            return None
        return {**description, "normalization": self.hparams.normalization}

    def export_extras(self, directory: str | Path) -> None:
        """`training_data.json` in the export bundle, when the training data is known."""
        description = self.training_data_description()
        if description is not None:
            text = json.dumps(description, indent=2, sort_keys=True) + "\n"
            (Path(directory) / TRAINING_DATA_FILE).write_text(text)

    def limits(self, family: torch.Tensor | None, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw amplitude limits per sample (B,): the family's, or the global ones when unknown."""
        known = torch.isfinite(self.seismic_low)
        if not known.any():
            raise RuntimeError(
                "VelocityInversionTask has no seismic normalisation limits: train it with FwiDataModule "
                "(they are computed from the training files) or load a checkpoint/bundle that has them"
            )
        low = self.seismic_low[known].min().expand(batch)
        high = self.seismic_high[known].max().expand(batch)
        if family is not None and self.hparams.normalization == "family":
            family = family.to(self.seismic_low.device).long()
            safe = family.clamp(min=0)
            use = (family >= 0) & torch.isfinite(self.seismic_low[safe])
            low = torch.where(use, self.seismic_low[safe], low)
            high = torch.where(use, self.seismic_high[safe], high)
        return low, high

    def normalized_prediction(
        self, seismic: torch.Tensor, family: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Raw gathers (B, 5, 1000, 70) -> predicted velocity on [-1, 1], (B, 1, 70, 70)."""
        if bool(self.float16_inputs):
            seismic = seismic.half()  # what the model saw in training, even when given float32
        k = int(self.time_decimation)
        if k > 1 and seismic.shape[-2] == N_TIME:  # raw gathers: decimate as in training
            seismic = decimate_time(seismic, k)
        low, high = self.limits(family, seismic.shape[0])
        return self.net(normalize_seismic(seismic, low, high).to(self.dtype))

    def forward(self, seismic: torch.Tensor, family: torch.Tensor | None = None) -> torch.Tensor:
        """Raw gathers (B, 5, 1000, 70) -> velocity in m/s (B, 1, 70, 70), float32."""
        return denormalize_velocity(self.normalized_prediction(seismic, family).float())

    # -- steps ------------------------------------------------------------------------------------
    def _loss(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        l1 = F.l1_loss(pred, target)
        l2 = F.mse_loss(pred, target)
        return self.hparams.l1_weight * l1 + self.hparams.l2_weight * l2, {"l1": l1, "l2": l2}

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        if batch["seismic"].shape[0] == 0:
            return None  # every sample of the batch was skipped as bad (on_bad="skip")
        pred = self.normalized_prediction(batch["seismic"], batch["family"])
        loss, parts = self._loss(pred.float(), normalize_velocity(batch["velocity"]))
        size = batch["seismic"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        self.log_dict({f"train/{k}": v for k, v in parts.items()}, batch_size=size)
        return loss

    def _evaluate(
        self, batch: dict[str, Any], metrics: MetricCollection, per_family: PerFamilyMetrics, prefix: str
    ):
        if batch["seismic"].shape[0] == 0:
            return None
        pred = self.normalized_prediction(batch["seismic"], batch["family"]).float()
        target = normalize_velocity(batch["velocity"])
        loss, _ = self._loss(pred, target)
        metrics.update(pred, target)
        per_family.update(pred, target, batch["family"])
        self.log(f"{prefix}/loss", loss, prog_bar=True, batch_size=pred.shape[0])
        return pred

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        pred = self._evaluate(batch, self.stage_metrics("val"), self.val_family_metrics, "val")
        if batch_idx == 0 and pred is not None and self.hparams.log_images:
            self._log_images(batch, pred)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, self.stage_metrics("test"), self.test_family_metrics, "test")

    def _log_epoch_metrics(
        self, metrics: MetricCollection, per_family: PerFamilyMetrics, prefix: str
    ) -> None:
        values = metrics.compute()
        values[f"{prefix}/mae_ms"] = values[f"{prefix}/mae"] * VELOCITY_SCALE
        table = per_family.compute().float()
        for column, name in enumerate(FAMILIES):
            if not torch.isfinite(table[0, column]):
                continue
            for row, metric in enumerate(PerFamilyMetrics.NAMES):
                values[f"{prefix}/{metric}/{name}"] = table[row, column]
            values[f"{prefix}/mae_ms/{name}"] = table[0, column] * VELOCITY_SCALE
        self.log_dict(values)
        metrics.reset()
        per_family.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_metrics(self.stage_metrics("val"), self.val_family_metrics, "val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch_metrics(self.stage_metrics("test"), self.test_family_metrics, "test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        family = batch.get("family")
        return {
            "velocity": self(batch["seismic"], family if isinstance(family, torch.Tensor) else None),
            "oid": batch.get("oid"),
        }

    # -- TensorBoard ------------------------------------------------------------------------------
    def _log_images(self, batch: dict[str, Any], pred: torch.Tensor) -> None:
        logger = self.logger
        if not isinstance(logger, TensorBoardLogger) or self.trainer.sanity_checking:
            return
        from fwi.plots import gather_image, velocity_panel

        n = min(4, pred.shape[0])
        true = normalize_velocity(batch["velocity"][:n]).float()
        logger.experiment.add_image(
            "val/velocity_true_pred_error", velocity_panel(true, pred[:n]), self.global_step
        )
        logger.experiment.add_image("val/shot_gather", gather_image(batch["seismic"][0]), self.global_step)
