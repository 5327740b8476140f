"""Step-time overhead of `mtl fit` (Lightning + the platform's default callbacks) against a plain loop.

    .venv/bin/python benchmarks/platform_overhead.py [--steps 300]

Same model, same data, same optimizer, same number of steps, one process, CPU. The plain loop is the
baseline a user would write by hand (zero_grad, forward, backward, step). The mtl run is the real CLI
with its defaults: TensorBoard logger, periodic checkpoints, rich progress bar, MemoryProbe and the
export at the end (not timed: it happens once). Timing covers the training steps only, from the first
step's start to the last step's end, for both. MemoryProbe's own hooks are timed inside the mtl run.
Goal: mtl / plain < 1.05, and MemoryProbe under 1% of step time.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningDataModule, LightningModule
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.callbacks import MemoryProbe
from common.cli import MtlCLI

SAMPLES, BATCH = 2048, 32


def make_network() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 10),
    )


def make_dataset() -> TensorDataset:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(SAMPLES, 3, 48, 48, generator=generator)
    labels = torch.randint(0, 10, (SAMPLES,), generator=generator)
    return TensorDataset(images, labels)


class BenchModule(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.network = make_network()

    def training_step(self, batch, batch_idx):
        images, labels = batch
        loss = nn.functional.cross_entropy(self.network(images), labels)
        self.log("train/loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01, momentum=0.9)


class BenchData(LightningDataModule):
    def train_dataloader(self) -> DataLoader:
        return DataLoader(make_dataset(), batch_size=BATCH, shuffle=True)


class TimedMemoryProbe(MemoryProbe):
    """MemoryProbe that adds up the time spent in its own per-step hooks."""

    seconds = 0.0

    def on_train_batch_start(self, *args, **kwargs):
        start = time.perf_counter()
        super().on_train_batch_start(*args, **kwargs)
        self.seconds += time.perf_counter() - start

    def on_train_batch_end(self, *args, **kwargs):
        start = time.perf_counter()
        super().on_train_batch_end(*args, **kwargs)
        self.seconds += time.perf_counter() - start


class StepTimer(Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == 0:
            self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module):
        self.seconds = time.perf_counter() - self.start


def plain_loop(steps: int) -> float:
    torch.manual_seed(0)
    network = make_network()
    optimizer = torch.optim.SGD(network.parameters(), lr=0.01, momentum=0.9)
    loader = DataLoader(make_dataset(), batch_size=BATCH, shuffle=True)
    done, start = 0, time.perf_counter()
    while done < steps:
        for images, labels in loader:
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(network(images), labels)
            loss.backward()
            optimizer.step()
            done += 1
            if done == steps:
                break
    return time.perf_counter() - start


def mtl_run(steps: int, runs_dir: Path, extra: list[str]) -> tuple[float, float]:
    """Seconds of training steps, and seconds of them spent inside MemoryProbe's hooks."""
    timer = StepTimer()
    cli = MtlCLI(
        args=[
            "--model",
            f"{__name__}.BenchModule"
            if __name__ != "__main__"
            else "benchmarks.platform_overhead.BenchModule",
            "--data",
            "benchmarks.platform_overhead.BenchData",
            "--runs_dir",
            str(runs_dir),
            "--name",
            "overhead",
            "--trainer.max_steps",
            str(steps),
            "--trainer.accelerator",
            "cpu",
            "--trainer.enable_model_summary",
            "false",
            "--seed_everything",
            "0",
            *extra,
        ],
        run=False,
    )
    probe = TimedMemoryProbe()
    callbacks = [c for c in cli.trainer.callbacks if not isinstance(c, MemoryProbe)]
    cli.trainer.callbacks = [*callbacks, probe, timer]
    cli.trainer.fit(cli.model, cli.datamodule)
    return timer.seconds, probe.seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)  # steadier timings on a shared machine
    runs_dir = Path(tempfile.mkdtemp(prefix="mtl-bench-"))
    try:
        # Interleaved, best of each: the machine's speed drifts between runs more than the overhead.
        plains, mtls = [], []
        for _ in range(args.repeats):
            plains.append(plain_loop(args.steps))
            mtls.append(mtl_run(args.steps, runs_dir, []))
        plain = min(plains)
        with_defaults, probe_seconds = min(mtls)
    finally:
        shutil.rmtree(runs_dir, ignore_errors=True)
    per_step = 1000 / args.steps
    print(f"steps: {args.steps}, batch {BATCH}, best of {args.repeats}")
    print(f"plain PyTorch loop (baseline): {plain * per_step:.2f} ms/step")
    print(f"mtl fit with defaults:         {with_defaults * per_step:.2f} ms/step")
    print(f"  of which MemoryProbe hooks:  {probe_seconds * per_step:.3f} ms/step")
    print(f"ratio mtl / plain loop: {with_defaults / plain:.3f} (goal < 1.05)")
    print(f"MemoryProbe cost: {100 * probe_seconds / with_defaults:.2f}% of step time (goal < 1%)")


if __name__ == "__main__":
    main()
