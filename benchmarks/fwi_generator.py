"""FWI generator: deepwave samples/s, batched against one model at a time, and CPU threads.

    .venv/bin/python benchmarks/fwi_generator.py [--samples 16] [--device cpu|cuda] [--family FlatVel-A]

Baseline: `forward_model` on one velocity model at a time (5 shots per call), single-threaded on the
CPU. Measured in the same run: batches of `--batch-size` models, and on the CPU the same with torch's
default thread count. Prints samples/s and the ratio against the baseline. On a GPU pass --device
cuda (the baseline then is batch 1 on that GPU).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import psutil
import torch

from fwi.data.generator import forward_model, sample_velocity


def samples_per_second(models: torch.Tensor, batch_size: int, device: str) -> float:
    forward_model(models[:1].to(device))  # warm-up (kernel selection, allocation)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(0, len(models), batch_size):
        forward_model(models[i : i + batch_size].to(device))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return len(models) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--family", default="FlatVel-A")
    args = parser.parse_args()
    models = torch.from_numpy(np.stack([sample_velocity(args.family, 0, i) for i in range(args.samples)]))
    default_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    baseline = samples_per_second(models, 1, args.device)
    batched = samples_per_second(models, args.batch_size, args.device)
    rows = [("batch 1, 1 thread (baseline)", baseline), (f"batch {args.batch_size}, 1 thread", batched)]
    if args.device == "cpu" and default_threads > 1:
        torch.set_num_threads(default_threads)
        rows.append(
            (
                f"batch {args.batch_size}, {default_threads} threads",
                samples_per_second(models, args.batch_size, "cpu"),
            )
        )
    load = ", ".join(f"{x:.1f}" for x in psutil.getloadavg())
    print(
        f"{args.family}, {args.samples} samples of 5 shots x 1000 steps on {args.device}; load average {load}"
    )
    for name, speed in rows:
        print(f"{name:32s} {speed:8.2f} samples/s   ratio {speed / baseline:5.2f}x")


if __name__ == "__main__":
    main()
