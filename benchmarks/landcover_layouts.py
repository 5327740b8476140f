"""Loading speed of the two NPZ layouts at the lab's real patch size (6, 224, 224), uint16 DN.

Baseline: one compressed file per patch (what the lab hands out). Compared: one archive per split
(read once into memory, then indexed). Prints patches/s through the real DataLoader for each and the
ratio against the baseline, measured in the same run.

    .venv/bin/python benchmarks/landcover_layouts.py [--samples 64] [--size 224]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from landcover.data import LandCoverDataModule
from landcover.data.synthetic import write_synthetic_dataset


def patches_per_second(root: Path, batch_size: int, epochs: int) -> tuple[float, float]:
    """(setup seconds: finding files and the statistics scan, then patches/s over `epochs` epochs)."""
    start = time.perf_counter()
    datamodule = LandCoverDataModule(root=str(root), batch_size=batch_size, augment=True)
    datamodule.setup("fit")
    setup = time.perf_counter() - start
    start, seen = time.perf_counter(), 0
    for _ in range(epochs):
        for batch in datamodule.train_dataloader():
            seen += batch["image"].shape[0]
    return setup, seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for layout in ("patches", "archive"):
            root = Path(tmp) / layout
            write_synthetic_dataset(root, samples=args.samples, size=args.size, layout=layout, units="dn",
                                    val_fraction=0.1, test_fraction=0.0)  # fmt: skip
            results[layout] = patches_per_second(root, batch_size=16, epochs=args.epochs)
    base_rate = results["patches"][1]
    print("| layout | setup s | patches/s | ratio vs per-patch files |\n|---|---|---|---|")
    for layout, (setup, rate) in results.items():
        print(f"| {layout} | {setup:.2f} | {rate:.1f} | {rate / base_rate:.2f}x |")


if __name__ == "__main__":
    main()
