"""MemoryProbe, StagedScaling and CheckpointExport on small real Trainer runs."""

from __future__ import annotations

import json
import warnings

import psutil
import pytest
import torch
import yaml
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.demos.boring_classes import BoringDataModule, BoringModel
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from common.callbacks import MemoryProbe, StagedScaling
from common.memory import GIB
from tests.common.models import KnobDataModule, OutOfMemoryAtBatch


def trainer(tmp_path, callbacks, max_steps=6, **kwargs) -> Trainer:
    return Trainer(
        default_root_dir=tmp_path,
        logger=TensorBoardLogger(tmp_path, name="run", version=""),
        callbacks=callbacks,
        max_steps=max_steps,
        accelerator="cpu",
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
        **kwargs,
    )


def test_memory_probe_logs_every_reading_and_writes_a_summary(tmp_path):
    probe = MemoryProbe()
    trainer(tmp_path, [probe], max_steps=5).fit(BoringModel(), BoringDataModule())
    summary = json.loads((tmp_path / "run" / "memory.json").read_text())
    assert summary["steps_measured"] == 5
    rss = psutil.Process().memory_info().rss / GIB
    assert 0.5 * rss < summary["peak"]["process_rss_gib"] < 2 * rss
    assert 0 < summary["peak"]["system_fraction"] < 1
    assert summary["stopped"] is None
    events = EventAccumulator(str(tmp_path / "run"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"memory/process_rss_gib", "memory/workers_rss_gib", "memory/per_sample_mib"} <= tags
    assert len(events.Scalars("memory/process_rss_gib")) == 5


def test_memory_probe_counts_dataloader_workers(tmp_path):
    probe = MemoryProbe()

    class WorkerData(BoringDataModule):
        def train_dataloader(self):
            return torch.utils.data.DataLoader(
                self.random_train, batch_size=4, num_workers=2, persistent_workers=True
            )

    trainer(tmp_path, [probe], max_steps=25).fit(BoringModel(), WorkerData())
    assert probe.summary["peak"]["workers_rss_gib"] > 0.01


def test_memory_probe_warns_at_its_threshold(tmp_path):
    probe = MemoryProbe(warn_fraction=1e-6)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer(tmp_path, [probe], max_steps=3).fit(BoringModel(), BoringDataModule())
    assert any("MemoryProbe" in str(w.message) and "warning threshold" in str(w.message) for w in caught)
    assert len(probe.summary["warnings"]) == 1


def test_memory_probe_stops_cleanly_with_a_checkpoint(tmp_path):
    probe = MemoryProbe(stop_fraction=1e-6)
    fit = trainer(tmp_path, [probe], max_steps=50)
    fit.fit(BoringModel(), BoringDataModule())
    assert fit.global_step == 1
    stopped = json.loads((tmp_path / "run" / "memory.json").read_text())["stopped"]
    assert stopped["step"] == 1
    checkpoint = torch.load(stopped["checkpoint"], weights_only=True)
    assert checkpoint["global_step"] == 1


class WeightsAtFitStart(Callback):
    """Records the weights the real run starts from (runs after StagedScaling's on_fit_start)."""

    def on_fit_start(self, trainer, pl_module):
        self.weights = {k: v.clone() for k, v in pl_module.state_dict().items()}
        self.global_step = trainer.global_step


def test_staged_scaling_rolls_back_from_a_simulated_oom_and_restores_weights(tmp_path):
    model = OutOfMemoryAtBatch(oom_batch_size=8)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    scaling = StagedScaling(ladder={"max_samples": [8, 16], "batch_size": [2, 4, 8, 16]}, steps_per_stage=3)
    start = WeightsAtFitStart()
    data = KnobDataModule()
    fit = trainer(tmp_path, [scaling, start], max_steps=4)
    fit.fit(model, data)

    statuses = [(r.settings["batch_size"], r.status) for r in scaling.results]
    assert (8, "oom") in statuses and all(size != 16 for size, _ in statuses)  # stopped climbing at the OOM
    assert scaling.best["max_samples"] == 16 and scaling.best["batch_size"] in (2, 4)
    assert (data.max_samples, data.batch_size) == (scaling.best["max_samples"], scaling.best["batch_size"])
    for name, tensor in initial.items():  # the trials' updates were rolled back
        torch.testing.assert_close(start.weights[name], tensor)
    assert start.global_step == 0 and fit.global_step == 4  # the real run started from step 0

    report = json.loads((tmp_path / "run" / "scaling.json").read_text())
    assert report["chosen"] == scaling.best
    assert sum(stage["chosen"] for stage in report["stages"]) == 1
    recommended = yaml.safe_load((tmp_path / "run" / "recommended.yaml").read_text())
    assert recommended["data"]["class_path"] == "tests.common.models.KnobDataModule"
    assert recommended["data"]["init_args"] == scaling.best
    assert "| stage |" in (tmp_path / "run" / "scaling.md").read_text()


def test_staged_scaling_predicts_a_cpu_memory_breach_and_never_runs_it(tmp_path):
    mib = 1024**2
    rss = sum(p.memory_info().rss for p in [psutil.Process()])
    scaling = StagedScaling(
        ladder={"max_samples": [4, 8, 16, 64]},
        steps_per_stage=2,
        # 8 MiB per sample: 4 and 8 samples fit, 16 (about +128 MiB) would not.
        memory_budget_gib=(rss + 110 * mib) / GIB,
    )
    trainer(tmp_path, [scaling], max_steps=2).fit(BoringModel(), KnobDataModule(bytes_per_sample=8 * mib))
    statuses = {r.settings["max_samples"]: r.status for r in scaling.results}
    assert statuses[4] == statuses[8] == "passed"
    assert statuses[16] == "predicted_over_budget"
    assert 64 not in statuses
    assert scaling.best == {"max_samples": 8}
    predicted = next(r for r in scaling.results if r.status == "predicted_over_budget").predicted_memory_gib
    assert predicted * GIB > rss + 110 * mib


def test_staged_scaling_names_a_missing_knob(tmp_path):
    scaling = StagedScaling(ladder={"image_size": [64, 128]})
    with pytest.raises(AttributeError, match="image_size"):
        trainer(tmp_path, [scaling]).fit(BoringModel(), KnobDataModule())
