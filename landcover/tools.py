"""`mtl landcover <verb>`: data (synthetic, from GeoTIFF, splits, statistics) and prediction.

    mtl landcover generate --out data/synthetic --samples 2000 --size 224
    mtl landcover patches --scene S2_L2A.tif --labels landcover.tif --out data/scene1 --size 224
    mtl landcover split --source data/patches --val_fraction 0.15 --test_fraction 0.15
    mtl landcover check --root data/synthetic
    mtl landcover predict --bundle runs/landcover/quickstart/export --root data/synthetic --out predictions.csv
    mtl landcover map --bundle runs/landcover/baseline_cnn/export --scene S2_L2A.tif --size 64 --out map.tif

Learning-rate finder, sweeps, training curves and run monitoring are platform verbs for every domain:
`mtl lr_find`, `mtl sweep`, `mtl curves`, `mtl runs` (see docs/runs.md).

Heavy imports live inside the functions so `mtl --help` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal


def generate(
    out: Path,
    samples: int = 1000,
    size: int = 64,
    layout: Literal["patches", "archive"] = "patches",
    units: Literal["reflectance", "dn"] = "reflectance",
    dn_offset: int = 1000,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    nodata_probability: float = 0.02,
    seed: int = 0,
) -> dict[str, int]:
    """Write synthetic Sentinel-2 patches (8 Icelandic land-cover classes, imbalanced) in the NPZ layout.

    Args:
        out: dataset directory to write (train/val/test splits and dataset.json).
        samples: number of patches in all splits together.
        size: patch height and width in pixels (the lab's real patches are 224).
        layout: "patches" (<out>/<split>/<class>_<i>.npz with image, label) or "archive"
            (<out>/<split>.npz with images, labels).
        units: "reflectance" (float32, NaN for no data) or "dn" (uint16 L2A digital numbers, 0 for no data).
        dn_offset: DN offset of processing baseline 04.00 and later, used when units is "dn".
        val_fraction: share of every class that goes to the validation split.
        test_fraction: share of every class that goes to the test split.
        nodata_probability: probability that a patch has a stripe of no-data pixels.
        seed: random seed; the same seed writes the same dataset.
    """
    from landcover.data.synthetic import write_synthetic_dataset

    counts = write_synthetic_dataset(
        out,
        samples=samples,
        size=size,
        layout=layout,
        units=units,
        dn_offset=dn_offset,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        nodata_probability=nodata_probability,
        seed=seed,
    )
    print(f"wrote {sum(counts.values())} patches to {out}: {counts}")
    return counts


def patches(
    scene: Path,
    labels: Path,
    out: Path,
    size: int = 224,
    stride: int | None = None,
    min_purity: float = 0.6,
    bands: list[str] | None = None,
    units: Literal["reflectance", "dn"] = "dn",
    dn_offset: int = 1000,
) -> dict[str, int]:
    """Cut a Sentinel-2 GeoTIFF and its label raster (same grid) into per-patch NPZ files.

    Args:
        scene: multi-band GeoTIFF; bands are found by their descriptions (B02, ...) or taken in order.
        labels: single-band GeoTIFF of class indexes (its nodata value: unlabelled).
        out: dataset directory: patches go to <out>/patches/, metadata to <out>/dataset.json.
        size: patch height and width in pixels (224 in the lab).
        stride: step between patches (default: size, no overlap).
        min_purity: keep a patch when its majority class covers at least this share of its labelled pixels.
        bands: the bands to keep, in order (default B02, B03, B04, B08, B11, B12).
        units: what the scene holds: "dn" (L2A digital numbers) or "reflectance".
        dn_offset: DN offset of the scene: 1000 for processing baseline 04.00 and later, 0 before.
    """
    from landcover.data.formats import DEFAULT_BANDS
    from landcover.data.rasters import cut_patches

    counts = cut_patches(
        scene,
        labels,
        out,
        size=size,
        stride=stride,
        min_purity=min_purity,
        bands=bands or list(DEFAULT_BANDS),
        units=units,
        dn_offset=dn_offset,
    )
    print(f"{out}: {counts}; next: mtl landcover split --source {out}")
    return counts


def split(
    source: Path,
    out: Path | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
) -> dict[str, str]:
    """Stratified train/val/test split: each class keeps its share in every split.

    Args:
        source: a folder of per-patch .npz files (any sub-folders), or one archive .npz with
            `images` and `labels`.
        out: for an archive: the folder for train.npz, val.npz, test.npz (default: the archive's
            folder). For a folder: ignored; the lists go to <source>/splits/{train,val,test}.txt.
        val_fraction: share of every class for validation.
        test_fraction: share of every class for testing.
        seed: random seed of the shuffle within each class.
    """
    from landcover.data.splits import split_archive, split_patch_folder

    source = Path(source)
    if source.is_dir():
        written = split_patch_folder(source, val_fraction, test_fraction, seed)
    elif source.is_file():
        written = split_archive(
            source, Path(out) if out else source.parent, val_fraction, test_fraction, seed
        )
    else:
        raise FileNotFoundError(f"{source}: no such folder of patches or archive .npz")
    for name, path in written.items():
        print(f"{name}: {path}")
    return {name: str(path) for name, path in written.items()}


def check(
    root: Path, units: Literal["reflectance", "dn"] | None = None, dn_offset: int | None = None
) -> dict:
    """Per split: samples, class counts, no-data patches and pixels; per-band mean/std of the training split.

    Args:
        root: dataset directory (the layouts of `landcover.data.formats`).
        units: "reflectance" or "dn"; default from <root>/dataset.json.
        dn_offset: DN offset (1000 for processing baseline 04.00 and later); default from dataset.json.
    """
    from landcover.data.datamodule import LandCoverDataModule

    datamodule = LandCoverDataModule(root=str(root), units=units, dn_offset=dn_offset)
    datamodule.setup("test")
    summary: dict[str, Any] = {"bands": datamodule.bands, "classes": datamodule.class_names}
    for name, report in datamodule.report.items():
        summary[name] = {
            "samples": report["samples"],
            "class_counts": dict(zip(datamodule.class_names, report["class_counts"].tolist(), strict=True)),
            "nodata_patches": report["nodata_patches"],
            "nodata_pixels": report["nodata_pixels"],
        }
    if "train" in datamodule.report:
        summary["band_mean"] = [round(float(v), 5) for v in datamodule.band_mean]
        summary["band_std"] = [round(float(v), 5) for v in datamodule.band_std]
    import json

    print(json.dumps(summary, indent=2))
    return summary


def predict(
    bundle: Path,
    root: Path,
    out: Path = Path("predictions.csv"),
    split: Literal["train", "val", "test"] = "test",
    units: Literal["reflectance", "dn"] | None = None,
    dn_offset: int | None = None,
    batch_size: int = 64,
) -> dict[str, float]:
    """Classify one split with an exported model; write a CSV of predictions and print the accuracy.

    Args:
        bundle: export bundle directory (e.g. runs/landcover/quickstart/export) or a .ckpt of `mtl fit`.
        root: dataset directory (the layouts of `landcover.data.formats`).
        out: CSV to write: source, label, prediction, then one probability column per class.
        split: which split of `root` to classify.
        units: "reflectance" or "dn"; default from <root>/dataset.json.
        dn_offset: DN offset (1000 for processing baseline 04.00 and later); default from dataset.json.
        batch_size: patches per forward pass.
    """
    import csv

    import numpy as np
    import torch

    from common.export import load_module
    from landcover.data.datamodule import LandCoverDataModule

    task = load_module(bundle)
    datamodule = LandCoverDataModule(
        root=str(root), bands=task.bands, class_names=task.class_names, units=units, dn_offset=dn_offset
    )
    datamodule.setup("predict")
    if split not in datamodule.datasets:
        raise FileNotFoundError(f"{root}: no '{split}' split; found {sorted(datamodule.datasets)}")
    dataset = datamodule.datasets[split]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    correct = 0
    with out.open("w", newline="") as handle, torch.no_grad():
        writer = csv.writer(handle)
        writer.writerow(["source", "label", "prediction", *(f"p_{name}" for name in task.class_names)])
        for start in range(0, len(dataset), batch_size):
            items = [dataset.raw(i) for i in range(start, min(start + batch_size, len(dataset)))]
            images = torch.from_numpy(np.stack([image for image, _, _ in items]))
            probabilities = torch.softmax(task(images), dim=1)
            for (_, label, where), p in zip(items, probabilities, strict=True):
                predicted = int(p.argmax())
                correct += predicted == label
                writer.writerow(
                    [
                        where,
                        task.class_names[label],
                        task.class_names[predicted],
                        *(f"{v:.4f}" for v in p.tolist()),
                    ]
                )
    summary = {"samples": len(dataset), "accuracy": correct / max(len(dataset), 1)}
    print(f"wrote {out}: {summary['samples']} patches, accuracy {summary['accuracy']:.4f}")
    return summary


def map_scene(
    bundle: Path,
    scene: Path,
    out: Path = Path("landcover_map.tif"),
    size: int = 224,
    stride: int | None = None,
    units: Literal["reflectance", "dn"] = "dn",
    dn_offset: int = 1000,
    batch_size: int = 32,
) -> dict[str, int]:
    """Classify a whole Sentinel-2 scene window by window into a georeferenced land-cover map.

    One map pixel per window (size x size scene pixels, every `stride`); windows without any valid
    pixel get the map's nodata value 255. The GeoTIFF has a colour table and the class names as tags.

    Args:
        bundle: export bundle directory of a trained model, or a .ckpt of `mtl fit`.
        scene: multi-band GeoTIFF; bands found by their descriptions or taken in the model's order.
        out: class map GeoTIFF to write (uint8).
        size: window size in scene pixels: the patch size the model was trained on.
        stride: step between windows (default: size, so map pixels tile the scene).
        units: what the scene holds: "dn" (L2A digital numbers) or "reflectance".
        dn_offset: DN offset of the scene: 1000 for processing baseline 04.00 and later, 0 before.
        batch_size: windows per forward pass.
    """
    import numpy as np
    import torch

    from common.export import load_module
    from landcover.data.datasets import PixelConversion
    from landcover.data.rasters import MAP_NODATA, SceneWindows

    task = load_module(bundle)
    windows = SceneWindows(scene, size, stride, task.bands)
    conversion = PixelConversion(units=units, dn_offset=dn_offset, nodata="fill")
    classes = np.full(windows.grid, MAP_NODATA, dtype=np.uint8)
    with torch.no_grad():
        for positions, stored in windows.batches(batch_size):
            images = np.stack([conversion(image, f"{scene}") for image in stored])
            predicted = task(torch.from_numpy(images)).argmax(1).numpy()
            empty = np.isnan(images).all(axis=(1, 2, 3))
            for (row, col), label, skip in zip(positions, predicted, empty, strict=True):
                classes[row, col] = MAP_NODATA if skip else label
    windows.write_map(out, classes, task.class_names)
    counts = {name: int((classes == i).sum()) for i, name in enumerate(task.class_names)}
    print(f"wrote {out}: {windows.grid[0]}x{windows.grid[1]} windows of {size} px; {counts}")
    return counts


def commands() -> dict[str, Callable[..., Any]]:
    """The verbs of `mtl landcover`."""
    return {
        "generate": generate,
        "patches": patches,
        "split": split,
        "check": check,
        "predict": predict,
        "map": map_scene,
    }
