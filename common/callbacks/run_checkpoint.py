"""RunCheckpoint: Lightning's ModelCheckpoint, plus `last.ckpt` always written at the final step and
an exception's checkpoint kept apart from the good ones."""

from __future__ import annotations

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info

from common.lightning_private import (
    last_global_step_saved,
    save_checkpoint_file,
    save_last_checkpoint,
)
from common.run_directory import join

EXCEPTION_CHECKPOINT = "exception-step{step:08d}.ckpt"


class RunCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose `last.ckpt` is always the state at the end of training.

    Lightning's own `on_train_end` writes `last` only when no checkpoint was saved during the run, so
    a run saving every 7 steps that stops at step 20 would leave `last` at step 14 and a later
    `--ckpt_path last` would redo 6 steps. Here `last` is written whenever the final step is newer
    than the last save.

    With `save_on_exception=True`, Lightning saves an exception's state as a numbered checkpoint and
    as `last.ckpt`, so a run that dies on bad data or NaN weights replaces the newest good state with
    its own. Here it goes to `exception-stepNNNNNNNN.ckpt` only: `last.ckpt` and the numbered ones
    stay the newest good states, and `--ckpt_path last` never picks the exception's file.
    """

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if (
            self.save_last
            and not trainer.fast_dev_run
            and trainer.global_step > 0
            and last_global_step_saved(self) != trainer.global_step
        ):
            save_last_checkpoint(self, trainer)
            return
        super().on_train_end(trainer, pl_module)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if not self.save_on_exception or trainer.fast_dev_run or trainer.sanity_checking:
            return
        if self.dirpath is None or last_global_step_saved(self) == trainer.global_step:
            return  # the newest good checkpoint is this very step
        filepath = join(str(self.dirpath), EXCEPTION_CHECKPOINT.format(step=trainer.global_step))
        save_checkpoint_file(self, trainer, filepath)
        rank_zero_info(
            f"RunCheckpoint: {type(exception).__name__} at step {trainer.global_step}; its state is in "
            f"{filepath} (last.ckpt is still the newest good checkpoint)"
        )
