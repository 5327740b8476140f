"""AIRS window reads vs whole-tile reads: windows per second and peak RSS, in one run.

Writes one 10000 x 10000 RGB tile (tiled GeoTIFF, like the synthetic AIRS layout; about 300 MB) into a
temporary folder once, then in fresh subprocesses measures
  - windows: `AIRSDataset` random 512 x 512 crops (image + label) through the real loader;
  - baseline: reading the whole tile into memory (what a naive loader does) and cropping from it;
  - with `--striped`: the same windows from the same tile written striped (one strip per row) and
    LZW-compressed, as real tiles may be (`mtl roofnet check` reports a tile's layout).
Prints windows/s, peak RSS and the RSS added by reading (peak minus the RSS after imports) and their
ratios. Goal (issue 4): >= 50 windows/s and < 500 MB for reading a 10000 x 10000 tile.

    .venv/bin/python benchmarks/roofnet_airs_windows.py [--size 10000] [--windows 200] [--striped]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MEASURE = r"""
import json, resource, sys, time
from pathlib import Path
import numpy as np
sys.path.insert(0, {repo!r})
mode, root, windows, size = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), 512
from roofnet.data.datasets import AIRSDataset
from roofnet.data.formats import read_image, read_label
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # after imports (torch alone: ~0.5 GB)
if mode == "windows":
    dataset = AIRSDataset(root, "train", image_size=size, random_crops=True, crops=windows)
    dataset[0]
    start = time.perf_counter()
    for index in range(windows):
        sample = dataset[index]
    elapsed = time.perf_counter() - start
else:
    start = time.perf_counter()
    image = read_image(root / "train/image/tile.tif")
    label = read_label(root / "train/label/tile.tif", (0, 1))
    rng = np.random.default_rng(0)
    for _ in range(windows):
        row, col = rng.integers(0, image.shape[0] - size, 2)
        crop = image[row:row + size, col:col + size].copy(), label[row:row + size, col:col + size].copy()
    elapsed = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"windows_per_s": windows / elapsed, "peak_rss_mb": peak, "added_rss_mb": peak - baseline}}))
"""


def write_tile(root: Path, size: int, striped: bool = False) -> None:
    """One tile of `size` x `size`, written 1024 x 1024 at a time so generating it never needs the whole
    tile; tiled (256 px blocks, uncompressed) or `striped` (one row per strip, LZW)."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    from roofnet.data.scenes import render_scene

    rng = np.random.default_rng(0)
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "transform": from_origin(1570000.0, 5180000.0, 0.075, 0.075),
        "crs": "EPSG:2193",
    }
    if striped:
        profile.update(blockysize=1, compress="lzw")
    else:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    strip = render_scene(1024, 1024, rng, cell=112)  # one rendered block, repeated: reading cost is the same
    for kind, count, dtype, block in (
        ("image", 3, "uint8", strip.image),
        ("label", 1, "uint8", strip.building[..., None]),
    ):
        path = root / "train" / kind / "tile.tif"
        path.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(path, "w", count=count, dtype=dtype, **profile) as dst:
            for row in range(0, size, 1024):
                for col in range(0, size, 1024):
                    height, width = min(1024, size - row), min(1024, size - col)
                    data = np.moveaxis(block[:height, :width], -1, 0)
                    dst.write(np.ascontiguousarray(data), window=Window(col, row, width, height))


def measure(mode: str, root: Path, windows: int) -> dict:
    script = MEASURE.format(repo=str(REPO))
    result = subprocess.run(
        [sys.executable, "-c", script, mode, str(root), str(windows)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=10000, help="tile side in pixels")
    parser.add_argument("--windows", type=int, default=200, help="512 px windows read per measurement")
    parser.add_argument("--striped", action="store_true", help="also read windows of a striped LZW copy")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="roofnet_airs_") as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        write_tile(root / "tiled", args.size)
        print(f"wrote a {args.size}x{args.size} tile in {time.perf_counter() - start:.1f} s")
        windows = measure("windows", root / "tiled", args.windows)
        whole = measure("whole", root / "tiled", args.windows)
        rows = [("AIRSDataset windows", windows), ("whole-tile read", whole)]
        if args.striped:
            write_tile(root / "striped", args.size, striped=True)
            striped = measure("windows", root / "striped", args.windows)
            rows.insert(1, ("windows, striped LZW", striped))
    print(f"{'':22s}{'windows/s':>12s}{'peak RSS MB':>14s}{'added by reads MB':>20s}")
    for label, row in rows:
        print(f"{label:22s}{row['windows_per_s']:12.1f}{row['peak_rss_mb']:14.0f}{row['added_rss_mb']:20.0f}")
    if args.striped:
        print(
            f"ratio striped/tiled windows: throughput x{striped['windows_per_s'] / windows['windows_per_s']:.2f}"
        )
    print(
        f"ratio windows/whole: throughput x{windows['windows_per_s'] / whole['windows_per_s']:.2f}, "
        f"memory added by reading x{windows['added_rss_mb'] / max(whole['added_rss_mb'], 1):.3f}"
    )
    ok = windows["windows_per_s"] >= 50 and windows["added_rss_mb"] < 500
    print(f"goal (>= 50 windows/s, < 500 MB added by reading): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
