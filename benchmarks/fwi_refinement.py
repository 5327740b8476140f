"""Physics refinement: MAE before and after K FWI steps, per family and prior, on generated models.

The start is each true model blurred over 7 depth cells and shifted by +80 m/s: the smooth, biased map a
network typically predicts. (With `--checkpoint` the start is that model's prediction instead.) The
baseline is the start itself, so the ratio `after / before` is what refinement buys.

    python benchmarks/fwi_refinement.py --samples 4 --steps 10 [--checkpoint runs/fwi/quickstart/export]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from fwi.data.generator import forward_model
from fwi.data.velocity_models import velocity_model
from fwi.physics_refinement import refine_velocity


def blurred_start(true: torch.Tensor) -> torch.Tensor:
    padded = torch.nn.functional.pad(true[:, None], (0, 0, 3, 3), mode="replicate")
    return torch.nn.functional.conv2d(padded, torch.ones(1, 1, 7, 1) / 7)[:, 0] + 80


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--families", nargs="+", default=["FlatVel-A", "CurveVel-A"])
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--step_size", type=float, default=40.0)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    task = None
    if args.checkpoint:
        from fwi.submission import load_task, predict_velocity

        task = load_task(args.checkpoint)
    print(
        "| family | prior | MAE before (m/s) | MAE after | after / before | misfit before -> after | s/sample |"
    )
    print("|---|---|---|---|---|---|---|")
    for family in args.families:
        models = [velocity_model(family, np.random.default_rng(1000 + i)) for i in range(args.samples)]
        true = torch.as_tensor(np.stack(models)).float().reshape(-1, 70, 70)
        observed = forward_model(true)
        start = predict_velocity(task, observed) if task is not None else blurred_start(true)
        before = float((start - true).abs().mean())
        for prior in ("none", "tv", "flat") if family.startswith("FlatVel") else ("none", "tv"):
            began = time.perf_counter()
            result = refine_velocity(start, observed, args.steps, args.step_size, prior)
            seconds = (time.perf_counter() - began) / args.samples
            after = float((result.velocity - true).abs().mean())
            print(
                f"| {family} | {prior} | {before:.1f} | {after:.1f} | {after / before:.3f} | "
                f"{result.misfit[0]:.4f} -> {result.misfit[-1]:.4f} | {seconds:.1f} |"
            )


if __name__ == "__main__":
    main()
