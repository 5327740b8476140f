"""BaseTask: the LightningModule every domain's task derives from (torchgeo's `BaseTask` pattern).

A task fills three hooks and its steps; the base owns what every task needs the same way:

- `configure_models()`: build the network(s) and register the buffers that carry statistics fitted on
  the training data (normalisation, class shares), so checkpoints and export bundles hold them.
- `configure_losses()`: build the criteria.
- `configure_metrics()`: return one torchmetrics `MetricCollection` (or any module of metrics); the base
  clones it once per stage in `metric_stages`, prefixed `train/`, `val/`, `test/`, so the stages never
  share state (`self.stage_metrics("val")`).
- The optimiser and the learning-rate schedule, from one vocabulary of hyperparameters that every task
  exposes under the same names (see `OPTIMIZATION_DEFAULTS`): `optimizer` (adamw, adam, sgd), `lr`,
  `weight_decay`, `scheduler` (none, cosine, linear, onecycle, plateau), `warmup_steps` (linear warm-up
  before any scheduler but plateau), `plateau_patience`. The schedule is one torch `LambdaLR` over
  `lr_factor`, which holds its end value past the planned total, so a longer resumed run or StagedScaling's
  trial steps never wrap a cosine back up (torch's `CosineAnnealingLR` does) or raise (`OneCycleLR` does).
- The hand-off of fitted statistics: in `setup` (fit, validate, test) the base asks the datamodule once for
  `fitted_statistics()` (a dict, see `common.data.BaseDataModule`) and gives it to `receive_statistics`,
  which by default copies each entry into the buffer of the same name (shape-checked). A resumed run then
  loads the checkpoint's buffers over them. No task reads datamodule attributes at run time. The
  datamodule's `data_summary()` (markdown: splits, counts, what was left out) goes to TensorBoard's text
  tab as `data/summary` at the same moment.

Every hyperparameter of the subclass's `__init__` is saved (`save_hyperparameters` collects the init
arguments of the whole class chain), so the subclass does not call it.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import torch
from lightning.pytorch import LightningModule
from torch import nn
from torchmetrics import MetricCollection

from common.errors import UserInputError

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULERS = ("none", "cosine", "linear", "onecycle", "plateau")
STAGES = ("train", "val", "test")
# The shared vocabulary and its defaults; a task lists the names it exposes in its own __init__
# (with its own defaults where the field's reference differs, e.g. OpenFWI's lr 1e-4).
OPTIMIZATION_DEFAULTS: dict[str, Any] = {
    "optimizer": "adamw",
    "lr": 1e-3,
    "weight_decay": 0.0,
    "scheduler": "none",
    "warmup_steps": 0,
    "plateau_patience": 3,
}
ONECYCLE_WARMUP_FRACTION = 0.3  # OneCycleLR's default pct_start
ONECYCLE_START = 1 / 25  # OneCycleLR's default div_factor


def lr_factor(step: int, scheduler: str, total: int, warmup_steps: int = 0) -> float:
    """Multiplier of the base learning rate at optimizer step `step` of a run of `total` steps.

    Linear warm-up from 1/warmup_steps to 1 over the first `warmup_steps` steps, then "none": 1,
    "cosine": half a cosine down to 0, "linear": a straight line down to 0, both over the remaining steps.
    "onecycle" is OneCycleLR's shape: a cosine warm-up from 1/25 to 1 over `warmup_steps` (default 30 % of
    the run), then a cosine down to 0. Past `total` the factor stays at its end value.
    """
    if scheduler == "onecycle":
        warmup = warmup_steps or round(ONECYCLE_WARMUP_FRACTION * total)
        if step < warmup:
            rise = 0.5 * (1 - math.cos(math.pi * step / warmup))
            return ONECYCLE_START + (1 - ONECYCLE_START) * rise
    else:
        warmup = warmup_steps
        if step < warmup:
            return (step + 1) / warmup
    if scheduler == "none":
        return 1.0
    span = max(total - warmup, 1)
    progress = min(max(step - warmup, 0), span) / span
    if scheduler == "linear":
        return 1.0 - progress
    return 0.5 * (1 + math.cos(math.pi * progress))  # cosine, and onecycle's annealing


def clone_per_stage(metrics: nn.Module, stage: str) -> nn.Module:
    """An independent copy of `metrics` for one stage; a MetricCollection gets the `<stage>/` prefix."""
    if isinstance(metrics, MetricCollection):
        return metrics.clone(prefix=f"{stage}/")
    return copy.deepcopy(metrics)


class BaseTask(LightningModule):
    """Base of every domain's LightningModule: hooks for models, losses and metrics; the optimiser,
    the schedule and the statistics hand-off are here (see the module docstring).

    Class attributes a task may set:
        metric_stages: the stages that get a clone of `configure_metrics()`'s metrics.
        monitor, monitor_mode: the validation metric the plateau scheduler (and a recipe's
            "best" checkpoint) follows, and whether higher ("max") or lower ("min") is better.
    """

    metric_stages: tuple[str, ...] = STAGES
    monitor: str = "val/loss"
    monitor_mode: str = "min"

    def __init__(self, ignore: Sequence[str] = ()) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=[*ignore, "ignore"])
        _check_choice("optimizer", self.optimization("optimizer"), OPTIMIZERS)
        _check_choice("scheduler", self.optimization("scheduler"), SCHEDULERS)
        if int(self.optimization("warmup_steps")) < 0:
            raise UserInputError(
                f"model.warmup_steps: expected 0 or more, got {self.optimization('warmup_steps')}"
            )
        self.configure_models()
        self.configure_losses()
        metrics = self.configure_metrics()
        # Keyed "<stage>_metrics": nn.Module reserves "train" (its train() method) as a name.
        self.metrics = nn.ModuleDict(
            {}
            if metrics is None
            else {f"{stage}_metrics": clone_per_stage(metrics, stage) for stage in self.metric_stages}
        )

    # -- hooks a task fills --------------------------------------------------------------------------
    def configure_models(self) -> None:
        """Build the network(s) from `self.hparams` and register statistics buffers."""

    def configure_losses(self) -> None:
        """Build the loss criteria from `self.hparams`."""

    def configure_metrics(self) -> nn.Module | None:
        """The metrics of one stage (cloned per stage by the base), or None."""
        return None

    # -- metrics --------------------------------------------------------------------------------------
    def stage_metrics(self, stage: str) -> nn.Module:
        """This stage's own copy of the metrics (`stage` in `metric_stages`)."""
        return self.metrics[f"{stage}_metrics"]

    @property
    def stage(self) -> str:
        """ "train", "val", "test" or "predict": what the trainer is running now (validation inside fit
        and the sanity check are "val")."""
        from lightning.pytorch.trainer.states import RunningStage

        running = self.trainer.state.stage
        if running in (RunningStage.VALIDATING, RunningStage.SANITY_CHECKING):
            return "val"
        if running == RunningStage.TESTING:
            return "test"
        if running == RunningStage.PREDICTING:
            return "predict"
        return "train"

    def log_stage_metrics(self, stage: str, *update_args: Any, batch_size: int) -> None:
        """Update this stage's MetricCollection and log it for the epoch (Lightning computes and resets)."""
        collection = self.stage_metrics(stage)
        collection.update(*update_args)
        self.log_dict(collection, on_step=False, on_epoch=True, batch_size=batch_size)

    # -- statistics fitted on the training data -------------------------------------------------------
    def setup(self, stage: str) -> None:
        # fit, validate and test: a checkpoint given as ckpt_path is restored after setup, so its
        # statistics win; without one (an untrained model evaluated) the data's are the right ones.
        if stage == "predict" or self._trainer is None:
            return
        provider = getattr(self.trainer, "datamodule", None)
        fitted = getattr(provider, "fitted_statistics", None)
        if callable(fitted):
            statistics = fitted()
            if statistics:
                self.receive_statistics(statistics)
        summary = getattr(provider, "data_summary", None)
        text = summary() if callable(summary) and stage == "fit" else None
        experiment = getattr(self.logger, "experiment", None)
        if text and hasattr(experiment, "add_text"):
            experiment.add_text("data/summary", text, self.global_step)

    def receive_statistics(self, statistics: Mapping[str, Any]) -> None:
        """Copy each statistic into the buffer of the same name; override to derive others from them."""
        buffers = dict(self.named_buffers())
        for name, value in statistics.items():
            if name not in buffers:
                raise UserInputError(
                    f"{type(self).__name__}: the datamodule hands over the statistic {name!r}, but the task "
                    f"has no buffer of that name (it has {sorted(buffers)})"
                )
            buffer = buffers[name]
            tensor = torch.as_tensor(value, dtype=buffer.dtype, device=buffer.device)
            if tensor.shape != buffer.shape:
                raise UserInputError(
                    f"{type(self).__name__}.{name}: expected a statistic of shape {tuple(buffer.shape)} from "
                    f"the data, got {tuple(tensor.shape)}"
                )
            buffer.copy_(tensor)

    # -- optimisation ---------------------------------------------------------------------------------
    def optimization(self, name: str) -> Any:
        """One hyperparameter of the shared optimisation vocabulary: the task's value or the default."""
        return self.hparams.get(name, OPTIMIZATION_DEFAULTS[name])

    def trainable_parameters(self) -> list[nn.Parameter]:
        """What the optimiser updates: every parameter that requires a gradient (LoRA: the adapters)."""
        return [p for p in self.parameters() if p.requires_grad]

    def configure_optimizers(self) -> Any:
        optimizer = self._build_optimizer()
        scheduler = self.optimization("scheduler")
        warmup = int(self.optimization("warmup_steps"))
        if scheduler == "plateau":
            plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode=self.monitor_mode, factor=0.5, patience=self.optimization("plateau_patience")
            )
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": plateau, "monitor": self.monitor, "interval": "epoch"},
            }
        if scheduler == "none" and not warmup:
            return optimizer
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total):
            raise UserInputError(
                f"model.scheduler {scheduler}: needs a run of known length; set trainer.max_steps or "
                "trainer.max_epochs"
            )
        schedule = partial(lr_factor, scheduler=scheduler, total=max(int(total), 1), warmup_steps=warmup)
        lambda_lr = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": lambda_lr, "interval": "step"}}

    def _build_optimizer(self) -> torch.optim.Optimizer:
        name = self.optimization("optimizer")
        params = self.trainable_parameters()
        lr, weight_decay = self.optimization("lr"), self.optimization("weight_decay")
        if name == "sgd":
            return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
        if name == "adam":
            return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
        return torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), weight_decay=weight_decay)


def _check_choice(field: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UserInputError(f"model.{field}: expected one of {', '.join(choices)}, got {value!r}")
