"""A BoringModel that logs what real recipes log (`train/loss` per step, `val/loss` per epoch) and has
an `lr`, so sweeps, run monitors and curves have something to read; importable by class path."""

from __future__ import annotations

import time

import torch
from lightning.pytorch.demos.boring_classes import BoringModel


class LoggingBoringModel(BoringModel):
    """BoringModel with `lr` (SGD), a `hidden` width, logged losses, and an optional pause per step.

    `step_seconds` slows each training step down, so a test can look at (or kill) a run while it trains;
    `fail_at_step` raises in that step, as a run that dies on bad data would.
    """

    def __init__(
        self, lr: float = 0.1, hidden: int = 8, step_seconds: float = 0.0, fail_at_step: int = -1
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Sequential(torch.nn.Linear(32, hidden), torch.nn.Linear(hidden, 2))

    def training_step(self, batch, batch_idx):
        if self.hparams.step_seconds:
            time.sleep(self.hparams.step_seconds)
        if self.global_step == self.hparams.fail_at_step:
            raise RuntimeError(f"bad batch at step {self.global_step}")
        loss = self.loss(self(batch))
        self.log("train/loss", loss, on_step=True, on_epoch=False)
        return {"loss": loss}

    def validation_step(self, batch, batch_idx):
        loss = self.loss(self(batch))
        self.log("val/loss", loss, on_epoch=True)
        return {"x": loss}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


LOGGING_FIT = [
    "--model", "tests.common.logging_models.LoggingBoringModel",
    "--data", "lightning.pytorch.demos.boring_classes.BoringDataModule",
    "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
    "--trainer.log_every_n_steps", "2", "--trainer.val_check_interval", "16", "--trainer.limit_val_batches", "2",
    "--export.enabled", "false", "--memory.enabled", "false",
]  # fmt: skip
"""`mtl fit` arguments for a LoggingBoringModel run of a few seconds (add `--name`, `--trainer.max_steps`)."""
