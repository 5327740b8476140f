"""Training and inference speed of the landcover models on one device, against the lab's baseline CNN.

For each model: parameters, training samples/s (forward, cross-entropy, backward, AdamW step) and
inference samples/s on random (B, 6, S, S) batches, and the ratio of each against the baseline CNN
(width 32, depth 4) measured in the same run. Helps choosing a backbone for a GPU-hour budget.

    .venv/bin/python benchmarks/landcover_models.py [--size 64] [--batch 32] [--steps 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from landcover.models import build_classifier

MODELS = ("baseline_cnn", "resnet18", "efficientnet_b0")


def samples_per_second(model: torch.nn.Module, batch: torch.Tensor, steps: int, train: bool) -> float:
    target = torch.randint(0, 8, (batch.shape[0],), device=batch.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train(train)

    def step() -> None:
        if train:
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(batch), target).backward()
            optimizer.step()
        else:
            with torch.inference_mode():
                model(batch)

    step()  # warm-up: allocations, cuDNN autotuning
    if batch.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if batch.device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch.shape[0] / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    batch = torch.randn(args.batch, 6, args.size, args.size, device=args.device)
    rows = []
    for name in MODELS:
        model = build_classifier(name, in_channels=6, num_classes=8).to(args.device)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        rows.append((name, params, samples_per_second(model, batch, args.steps, True),
                     samples_per_second(model, batch, args.steps, False)))  # fmt: skip
    base_train, base_infer = rows[0][2], rows[0][3]
    print(
        f"device {args.device}, batch ({args.batch}, 6, {args.size}, {args.size}), {torch.get_num_threads()} threads"
    )
    print("| model | M params | train samples/s | vs baseline CNN | inference samples/s | vs baseline CNN |")
    print("|---|---|---|---|---|---|")
    for name, params, train, infer in rows:
        print(
            f"| {name} | {params:.2f} | {train:.1f} | {train / base_train:.2f}x | {infer:.1f} | {infer / base_infer:.2f}x |"
        )


if __name__ == "__main__":
    main()
