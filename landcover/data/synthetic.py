"""Synthetic Sentinel-2 patches with class-specific spectra, texture and class imbalance.

The generator writes the real on-disk format (see `landcover.data.formats`), so the same loader reads
synthetic and real data. What makes the task non-trivial: classes that share spectra (moss/lichen,
grassland and cropland are all vegetation; glacier ice and snow both bright in the visible) and differ
in texture (cropland fields are stripes, urban is a block grid, lava is rough), a second class mixed
into each patch, per-patch illumination, sensor noise and optional no-data stripes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.ndimage import zoom

from landcover.data.formats import (
    BASELINE_0400_OFFSET,
    DEFAULT_BANDS,
    DEFAULT_CLASSES,
    UNITS,
    DatasetMetadata,
    reflectance_to_dn,
    write_archive,
    write_patch,
)
from landcover.data.splits import stratified_split

# Mean surface reflectance for B02, B03, B04, B08, B11, B12 (blue, green, red, NIR, SWIR1, SWIR2).
CLASS_SPECTRA = np.array(
    [
        [0.060, 0.050, 0.030, 0.020, 0.010, 0.005],  # water: dark, darkest in NIR/SWIR
        [0.450, 0.420, 0.380, 0.300, 0.030, 0.020],  # glacier ice: bright visible, SWIR absorbs
        [0.850, 0.830, 0.800, 0.700, 0.100, 0.060],  # snow: brighter than ice everywhere
        [0.050, 0.060, 0.070, 0.090, 0.120, 0.110],  # bare rock / lava: dark basalt, flat spectrum
        [0.040, 0.070, 0.060, 0.250, 0.180, 0.100],  # moss and lichen: weak red edge
        [0.040, 0.080, 0.050, 0.350, 0.220, 0.120],  # grassland
        [0.060, 0.090, 0.080, 0.400, 0.260, 0.160],  # cropland (striped fields, see texture)
        [0.120, 0.130, 0.140, 0.200, 0.220, 0.200],  # urban (block grid, see texture)
    ],
    dtype=np.float32,
)
# Class shares in the lab's Icelandic scenes: lots of rock and water, little cropland and urban.
CLASS_FREQUENCIES = np.array([0.20, 0.08, 0.10, 0.22, 0.16, 0.12, 0.07, 0.05])
TEXTURE_AMPLITUDE = np.array([0.03, 0.08, 0.05, 0.25, 0.15, 0.10, 0.05, 0.10], dtype=np.float32)


def smooth_field(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """A (size, size) random field with about `cells` blobs per side, zero mean, unit-ish std."""
    coarse = rng.standard_normal((cells + 1, cells + 1)).astype(np.float32)
    field = zoom(coarse, size / (cells + 1), order=1)[:size, :size]
    return (field - field.mean()) / (field.std() + 1e-6)


def class_texture(rng: np.random.Generator, cls: int, size: int) -> np.ndarray:
    """Multiplicative texture in [about 0.5, 1.5] that tells look-alike classes apart."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    name = DEFAULT_CLASSES[cls]
    if name == "cropland":  # parallel fields of alternating brightness
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(5, 10)
        stripes = np.sign(np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period))
        return 1 + 0.3 * stripes.astype(np.float32)
    if name == "urban":  # blocks of buildings separated by streets
        block = int(rng.integers(4, 8))
        grid = ((xx.astype(int) % block) < 1) | ((yy.astype(int) % block) < 1)
        roofs = rng.uniform(0.7, 1.5, size=(size // block + 1, size // block + 1)).astype(np.float32)
        return np.where(grid, 0.6, np.kron(roofs, np.ones((block, block), np.float32))[:size, :size])
    cells = {"bare_rock_lava": max(size // 3, 2), "water": 2}.get(name, 4)
    return 1 + TEXTURE_AMPLITUDE[cls] * smooth_field(rng, size, cells) * 2


def synthesize_patch(rng: np.random.Generator, cls: int, size: int, nodata_probability: float) -> np.ndarray:
    """One (6, size, size) float32 reflectance patch of class `cls` (NaN where no data)."""
    spectrum = CLASS_SPECTRA[cls] * rng.uniform(0.75, 1.25) + rng.normal(0, 0.02, 6).astype(np.float32)
    image = spectrum[:, None, None] * class_texture(rng, cls, size)[None]
    # A second land cover in part of the patch: the label stays the majority class.
    other = int(rng.integers(len(DEFAULT_CLASSES)))
    cover = smooth_field(rng, size, 3) > rng.uniform(0.2, 1.8)
    image = np.where(
        cover[None], CLASS_SPECTRA[other][:, None, None] * class_texture(rng, other, size), image
    )
    image = image + rng.normal(0, 0.01, image.shape).astype(np.float32)
    image = np.clip(image, 0.0001, 1.5).astype(np.float32)
    if rng.random() < nodata_probability:  # a swath edge: a band of columns without data
        width = int(rng.integers(1, max(size // 4, 2)))
        image[:, :, :width] = np.nan
    return image


def synthesize(
    samples: int, size: int = 64, seed: int = 0, nodata_probability: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """`samples` patches: images (N, 6, size, size) float32 reflectance and labels (N,) int64."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(len(DEFAULT_CLASSES), size=samples, p=CLASS_FREQUENCIES / CLASS_FREQUENCIES.sum())
    images = np.stack([synthesize_patch(rng, int(c), size, nodata_probability) for c in labels])
    return images, labels.astype(np.int64)


def synthetic_settings(samples: int, size: int, layout: str, units: str, seed: int) -> dict:
    """What dataset.json records about how a synthetic dataset was made."""
    return {"samples": samples, "size": size, "layout": layout, "units": units, "seed": seed}


def write_synthetic_dataset(
    out: str | Path,
    samples: int = 1000,
    size: int = 64,
    layout: str = "patches",
    units: str = "reflectance",
    dn_offset: int = BASELINE_0400_OFFSET,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    nodata_probability: float = 0.02,
    seed: int = 0,
    bands: Sequence[str] = DEFAULT_BANDS,
) -> dict[str, int]:
    """Write a stratified train/val/test synthetic dataset under `out`; returns samples per split."""
    if layout not in ("patches", "archive"):
        raise ValueError(f"layout must be 'patches' or 'archive', got {layout!r}")
    if units not in UNITS:
        raise ValueError(f"units must be one of {UNITS}, got {units!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    images, labels = synthesize(samples, size, seed, nodata_probability)
    stored = reflectance_to_dn(images, dn_offset) if units == "dn" else images
    counts = {}
    for split, idx in stratified_split(labels, val_fraction, test_fraction, seed).items():
        counts[split] = len(idx)
        if not len(idx):
            continue
        if layout == "archive":
            write_archive(out / f"{split}.npz", stored[idx], labels[idx], bands)
            continue
        folder = out / split
        folder.mkdir(exist_ok=True)
        for i in idx:
            write_patch(
                folder / f"{DEFAULT_CLASSES[labels[i]]}_{i:06d}.npz", stored[i], int(labels[i]), bands
            )
    DatasetMetadata(
        classes=list(DEFAULT_CLASSES),
        bands=list(bands),
        units=units,
        dn_offset=dn_offset if units == "dn" else 0,
        synthetic=synthetic_settings(samples, size, layout, units, seed),
    ).write(out)
    return counts
