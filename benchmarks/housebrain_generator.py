"""Generator throughput: procedural house designs per second (baseline: one process, no validation).

    .venv/bin/python benchmarks/housebrain_generator.py [--samples 4000] [--workers 2]

Prints samples/s for: generation only (baseline), generation + validator, and generation with
--workers processes, with each as a ratio against the baseline, plus the time 500k samples would take.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from housebrain.data.generator import write_dataset


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    runs = [("1 process, no validation (baseline)", 1, False), ("1 process + validator", 1, True)]
    runs += [
        (f"{args.workers} workers, no validation", args.workers, False),
        (f"{args.workers} workers + validator", args.workers, True),
    ]
    baseline = None
    with tempfile.TemporaryDirectory() as tmp:
        for i, (label, workers, validate) in enumerate(runs):
            meta = write_dataset(
                Path(tmp) / str(i), args.samples, workers=workers, validate=validate, chunk_size=500
            )
            rate = meta["samples_per_second"]
            baseline = baseline or rate
            print(
                f"{label:40s} {rate:9.0f} samples/s  x{rate / baseline:4.2f}  500k in {500_000 / rate / 60:5.1f} min"
            )


if __name__ == "__main__":
    main()
