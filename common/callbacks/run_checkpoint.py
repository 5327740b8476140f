"""RunCheckpoint: Lightning's ModelCheckpoint, plus `last.ckpt` always written at the final step."""

from __future__ import annotations

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint


class RunCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose `last.ckpt` is always the state at the end of training.

    Lightning's own `on_train_end` writes `last` only when no checkpoint was saved during the run, so
    a run saving every 7 steps that stops at step 20 would leave `last` at step 14 and a later
    `--ckpt_path last` would redo 6 steps. Here `last` is written whenever the final step is newer
    than the last save.
    """

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if (
            self.save_last
            and not trainer.fast_dev_run
            and trainer.global_step > 0
            and self._last_global_step_saved != trainer.global_step
        ):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
            return
        super().on_train_end(trainer, pl_module)
