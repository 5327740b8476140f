"""StagedScaling: the users' "start tiny, grow in stages, roll back on OOM" ritual as a callback.

Like Lightning's `BatchSizeFinder`, it runs short trials when fit starts, then restores the model's
weights and the loops before real training begins. Unlike it, it climbs a ladder of several knobs
(any attributes of the datamodule, e.g. max_samples, batch_size, num_workers, image_size), in order:

    ladder:
      max_samples: [10, 20, 50, 100]
      batch_size: [2, 4, 8, 16]
      num_workers: [2, 4]
      image_size: [512, 1024]

The first stage uses the first value of every knob. Then each knob in turn climbs its values while
the others stay at their chosen values; a stage passes when its steps ran, the loss stayed finite and
memory stayed within the budget. The first failure ends that knob's climb (larger values would fail
too) and the knob rolls back to its best passing value: the largest one, or for the knobs in
`prefer_fastest` (batch size, workers) the one with the highest samples/s. On a GPU a failure is a
CUDA out-of-memory error or a peak above the budget; on the CPU a stage is not even run when its
memory, extrapolated from the growth per unit of the knob seen so far, would exceed the budget, so
the machine never swaps or meets the OOM killer.

The datamodule must read its knobs when it builds its dataloaders (`train_dataloader()`), which is
where the callback's changes take effect. Results: `scaling.json`, `scaling.md` (a table) and
`recommended.yaml` (pass it as an extra `--config` to the next run) in the run directory.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
import uuid
from copy import deepcopy
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
import torch
import yaml
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers.logger import DummyLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from lightning.pytorch.utilities.memory import garbage_collection_cuda, is_oom_error

from common.batches import batch_size_of, loss_of
from common.lightning_private import forget_dataloaders, restore_checkpoint
from common.memory import GIB, ProcessTreeMemory, read_memory, reset_cuda_peaks
from common.run_directory import run_directory

DEFAULT_EXPONENTS = {"image_size": 2.0, "patch_size": 2.0, "crop_size": 2.0}


@dataclass
class StageResult:
    """What one trial stage did."""

    index: int
    settings: dict[str, Any]
    status: str = "pending"  # passed | oom | over_budget | predicted_over_budget | non_finite_loss | error
    steps: int = 0
    samples_per_second: float = 0.0
    peak_memory_gib: float = 0.0
    predicted_memory_gib: float | None = None
    final_loss: float | None = None
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@dataclass
class _Recorder(Callback):
    """The only callback active during a trial: times steps, tracks loss and peak memory."""

    tree: ProcessTreeMemory
    device: torch.device
    step_times: list[float] = field(default_factory=list)
    samples: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    peak_bytes: int = 0

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if not self.step_times:
            self.step_times.append(time.perf_counter())

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.step_times.append(time.perf_counter())
        self.samples.append(batch_size_of(batch))
        loss = loss_of(outputs)
        self.losses.append(float(loss.detach()) if loss is not None else float("nan"))
        reading = read_memory(self.tree, self.device)
        self.peak_bytes = max(self.peak_bytes, reading.cuda_reserved_peak or reading.tree_rss)

    def throughput(self) -> float:
        """Samples per second, leaving out the first step (warm-up, worker start)."""
        if len(self.step_times) < 2:
            return 0.0
        skip = 1 if len(self.samples) > 1 else 0
        elapsed = self.step_times[-1] - self.step_times[skip]
        samples = sum(self.samples[skip:])
        return samples / elapsed if elapsed > 0 else 0.0


class StagedScaling(Callback):
    """Trial stages over datamodule knobs before training; applies and records the best passing stage.

    Args:
        ladder: knob name -> increasing values, tried in the order given (see module docstring).
        steps_per_stage: optimizer steps per trial (the first is not timed).
        memory_budget: fraction of GPU memory (CUDA) or of the memory this process may use (CPU:
            system total minus what other processes use) that a stage may peak at.
        memory_budget_gib: an absolute budget instead of the fraction.
        prefer_fastest: knobs whose best value is the fastest passing one rather than the largest.
        exponents: how a knob's value scales memory (image_size: 2.0, i.e. area); default 1.0.
        out_dir: where scaling.json/.md and recommended.yaml go; default the run directory.
        enabled: set False to skip the trials.
    """

    def __init__(
        self,
        ladder: dict[str, list[Any]],
        steps_per_stage: int = 4,
        memory_budget: float = 0.8,
        memory_budget_gib: float | None = None,
        prefer_fastest: list[str] | None = None,
        exponents: dict[str, float] | None = None,
        out_dir: str | None = None,
        enabled: bool = True,
    ) -> None:
        if not ladder or any(not values for values in ladder.values()):
            raise ValueError("StagedScaling.ladder needs at least one knob with at least one value")
        if steps_per_stage < 1:
            raise ValueError(f"StagedScaling.steps_per_stage must be >= 1, got {steps_per_stage}")
        self.ladder = {name: list(values) for name, values in ladder.items()}
        self.steps_per_stage = steps_per_stage
        self.memory_budget = memory_budget
        self.memory_budget_gib = memory_budget_gib
        self.prefer_fastest = list(
            prefer_fastest if prefer_fastest is not None else ["batch_size", "num_workers"]
        )
        self.exponents = {**DEFAULT_EXPONENTS, **(exponents or {})}
        self.out_dir = out_dir
        self.enabled = enabled
        self.results: list[StageResult] = []
        self.best: dict[str, Any] = {}
        self._tree = ProcessTreeMemory(refresh_every=1)

    # -- the search ---------------------------------------------------------------------------------
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.enabled or trainer.fast_dev_run:
            return
        datamodule = trainer.datamodule
        if datamodule is None:
            raise RuntimeError(
                "StagedScaling needs a LightningDataModule (its knobs are datamodule attributes)"
            )
        missing = [knob for knob in self.ladder if not hasattr(datamodule, knob)]
        if missing:
            raise AttributeError(
                f"StagedScaling: {type(datamodule).__name__} has no attribute(s) {missing} named in the ladder; "
                f"knobs must be datamodule attributes"
            )
        self._search(trainer, pl_module)

    def _budget_bytes(self, device: torch.device) -> int:
        if self.memory_budget_gib is not None:
            return int(self.memory_budget_gib * GIB)
        if device.type == "cuda":
            return int(self.memory_budget * torch.cuda.get_device_properties(device).total_memory)
        system = psutil.virtual_memory()
        own = sum(self._tree.read())
        used_by_others = max(system.total - system.available - own, 0)
        return int(self.memory_budget * system.total - used_by_others)

    def _search(self, trainer: Trainer, pl_module: LightningModule) -> None:
        datamodule = trainer.datamodule
        device = pl_module.device
        original = {knob: getattr(datamodule, knob) for knob in self.ladder}
        budget = self._budget_bytes(device)
        baseline = sum(self._tree.read())
        snapshot = Path(tempfile.gettempdir()) / f".staged_scaling_{uuid.uuid4().hex}.ckpt"
        trainer.save_checkpoint(snapshot)
        saved = self._enter_trial_mode(trainer)
        current = {knob: values[0] for knob, values in self.ladder.items()}
        try:
            chosen = self._run_stage(trainer, current, device, budget, predicted=None)
            if not chosen.passed:
                rank_zero_info(
                    f"StagedScaling: the first stage failed ({chosen.status}); keeping the config's values"
                )
            for knob, values in self.ladder.items():
                if not chosen.passed:
                    break
                passing = [chosen]  # the current stage holds this knob at its first value
                for value in values[1:]:
                    settings = {**current, knob: value}
                    predicted = self._predict_bytes(knob, value, passing, baseline)
                    if device.type != "cuda" and predicted is not None and predicted > budget:
                        self.results.append(
                            StageResult(
                                index=len(self.results),
                                settings=settings,
                                status="predicted_over_budget",
                                predicted_memory_gib=predicted / GIB,
                                detail=f"budget {budget / GIB:.2f} GiB",
                            )
                        )
                        break
                    result = self._run_stage(trainer, settings, device, budget, predicted)
                    if not result.passed:
                        break
                    passing.append(result)
                chosen = self._choose(knob, passing)
                current = dict(chosen.settings)
        finally:
            self._leave_trial_mode(trainer, saved)
        self.best = current if chosen.passed else original
        for knob, value in self.best.items():
            setattr(datamodule, knob, value)
        _reset_dataloaders(trainer)
        restore_checkpoint(trainer, str(snapshot))
        snapshot.unlink(missing_ok=True)
        garbage_collection_cuda()
        self._write_reports(trainer, Path(self.out_dir or run_directory(trainer)))

    def _choose(self, knob: str, passing: list[StageResult]) -> StageResult:
        if knob in self.prefer_fastest:
            return max(passing, key=lambda r: r.samples_per_second)
        return passing[-1]

    def _predict_bytes(
        self, knob: str, value: Any, passing: list[StageResult], baseline: int
    ) -> float | None:
        """Peak memory at `value`, extrapolated linearly in value**exponent from the stages that passed."""
        if not passing or not isinstance(value, int | float):
            return None
        exponent = self.exponents.get(knob, 1.0)

        def scale(stage: StageResult) -> float:
            return float(stage.settings[knob]) ** exponent

        last = passing[-1]
        last_peak = last.peak_memory_gib * GIB
        target = float(value) ** exponent
        if len(passing) >= 2 and scale(passing[-1]) != scale(passing[-2]):
            previous = passing[-2]
            slope = (last_peak - previous.peak_memory_gib * GIB) / (scale(last) - scale(previous))
            return last_peak + max(slope, 0.0) * (target - scale(last))
        if scale(last) <= 0:
            return None
        # One point: assume the memory above the pre-trial baseline grows in proportion.
        return baseline + max(last_peak - baseline, 0.0) * target / scale(last)

    def _run_stage(
        self,
        trainer: Trainer,
        settings: dict[str, Any],
        device: torch.device,
        budget: int,
        predicted: float | None,
    ) -> StageResult:
        result = StageResult(index=len(self.results), settings=dict(settings))
        result.predicted_memory_gib = None if predicted is None else predicted / GIB
        self.results.append(result)
        datamodule = trainer.datamodule
        for knob, value in settings.items():
            setattr(datamodule, knob, value)
        recorder = _Recorder(tree=self._tree, device=device)
        trainer.callbacks = [recorder]
        reset_cuda_peaks(device)
        loop = trainer.fit_loop
        try:
            _reset_dataloaders(trainer)
            loop.load_state_dict(deepcopy(self._loop_state))
            loop.restarting = False
            loop.epoch_loop.max_steps = self.steps_per_stage
            loop.run()
        except Exception as error:
            if not is_oom_error(error):
                result.status, result.detail = "error", f"{type(error).__name__}: {error}"
                raise
            result.status, result.detail = "oom", str(error).splitlines()[0][:200]
            garbage_collection_cuda()
        result.steps = len(recorder.samples)
        result.samples_per_second = recorder.throughput()
        result.peak_memory_gib = recorder.peak_bytes / GIB
        if recorder.losses:
            result.final_loss = recorder.losses[-1]
        if result.status == "pending":
            if recorder.peak_bytes > budget:
                result.status = "over_budget"
                result.detail = f"peak {recorder.peak_bytes / GIB:.2f} GiB > budget {budget / GIB:.2f} GiB"
            elif not all(math.isfinite(loss) for loss in recorder.losses):
                result.status = "non_finite_loss"
            elif result.steps == 0:
                result.status, result.detail = "error", "no training step ran (empty dataloader?)"
            else:
                result.status = "passed"
        passed = trainer.strategy.reduce_boolean_decision(result.passed, all=True)
        if not passed and result.passed:
            result.status, result.detail = "failed_on_other_rank", "another process failed this stage"
        rank_zero_info(
            f"StagedScaling stage {result.index} {settings}: {result.status}, "
            f"{result.samples_per_second:.1f} samples/s, peak {result.peak_memory_gib:.2f} GiB"
        )
        return result

    # -- entering and leaving trial mode (the same state BatchSizeFinder saves) -----------------------
    def _enter_trial_mode(self, trainer: Trainer) -> dict[str, Any]:
        loop = trainer.fit_loop
        saved = {
            "callbacks": trainer.callbacks,
            "loggers": trainer.loggers,
            "max_steps": loop.epoch_loop.max_steps,
            "max_epochs": loop.max_epochs,
            "limit_train_batches": trainer.limit_train_batches,
            "limit_val_batches": trainer.limit_val_batches,
        }
        self._loop_state = deepcopy(loop.state_dict())
        trainer.logger = DummyLogger() if trainer.logger is not None else None
        trainer.limit_train_batches = 1.0
        trainer.limit_val_batches = 0
        loop.max_epochs = 10**6
        if trainer.progress_bar_callback:
            trainer.progress_bar_callback.disable()
        return saved

    def _leave_trial_mode(self, trainer: Trainer, saved: dict[str, Any]) -> None:
        loop = trainer.fit_loop
        trainer.callbacks = saved["callbacks"]
        trainer.loggers = saved["loggers"]
        loop.epoch_loop.max_steps = saved["max_steps"]
        loop.max_epochs = saved["max_epochs"]
        trainer.limit_train_batches = saved["limit_train_batches"]
        trainer.limit_val_batches = saved["limit_val_batches"]
        loop.load_state_dict(deepcopy(self._loop_state))
        loop.restarting = False
        loop.reset()
        if trainer.progress_bar_callback:
            trainer.progress_bar_callback.enable()

    # -- reports --------------------------------------------------------------------------------------
    def report_rows(self) -> list[dict[str, Any]]:
        chosen = next((r.index for r in self.results if r.passed and r.settings == self.best), None)
        return [{**asdict(r), "chosen": r.index == chosen} for r in self.results]

    def markdown_table(self) -> str:
        knobs = list(self.ladder)
        header = ["stage", *knobs, "status", "samples/s", "peak GiB", "predicted GiB", "loss"]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in self.report_rows():
            cells = [
                f"{row['index']}{' (chosen)' if row['chosen'] else ''}",
                *(str(row["settings"][k]) for k in knobs),
                row["status"],
                f"{row['samples_per_second']:.1f}",
                f"{row['peak_memory_gib']:.3f}",
                "" if row["predicted_memory_gib"] is None else f"{row['predicted_memory_gib']:.3f}",
                "" if row["final_loss"] is None else f"{row['final_loss']:.4g}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    @rank_zero_only
    def _write_reports(self, trainer: Trainer, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        datamodule = trainer.datamodule
        summary = {"ladder": self.ladder, "chosen": self.best, "stages": self.report_rows()}
        (out / "scaling.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
        (out / "scaling.md").write_text(
            f"# Staged scaling\n\nChosen: `{self.best}`\n\n{self.markdown_table()}"
        )
        class_path = f"{type(datamodule).__module__}.{type(datamodule).__qualname__}"
        recommended = {"data": {"class_path": class_path, "init_args": dict(self.best)}}
        (out / "recommended.yaml").write_text(
            "# Written by StagedScaling: pass with an extra --config to use the chosen stage.\n"
            + yaml.safe_dump(recommended, sort_keys=False)
        )
        rank_zero_info(f"StagedScaling: chose {self.best}; reports in {out}\n{self.markdown_table()}")


def _reset_dataloaders(trainer: Trainer) -> None:
    loop = trainer.fit_loop
    forget_dataloaders(loop)  # force the dataloaders to be rebuilt with the new knob values
    loop.setup_data()
    forget_dataloaders(loop.epoch_loop.val_loop)
    loop.epoch_loop.val_loop.setup_data()
