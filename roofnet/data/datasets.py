"""Map-style datasets over the real RID, Roofline and AIRS layouts; every sample is a dict.

Keys, with `S` the configured `image_size`:

    image            (3, S, S) float32 in [0, 1]                          all
    segments         (S, S) int64 0..17 (17 background)                   RID
    superstructures  (S, S) int64 0..8 (8 background)                     RID
    building         (S, S) float32 0/1 footprint                         AIRS
    annotated_roof   (S, S) float32 0/1: roofs RID annotated (segments != background); RID labels only the
                     buildings it annotates, other roofs in its images are background, so this is not
                     a footprint label and trains no loss (see `roofnet.task`)    RID
    metres_per_pixel float: pixel side of the sample in metres (NaN if unknown) RID, AIRS
    pitch            (S, S) int64 index into PITCH_PRESETS (0/15/25/30/35/45/60 degrees), 255 where
                     no segment slope is known; rasterised from segments_reviewed.csv   RID (with CSV)
    lines            (C, S, S) float32 0/1, C = 3 (eave, ridge, hip) or 4  Roofline
    line_channels    (C,) int64 indices into (eave, ridge, hip, valley)   Roofline
    height           (S, S) float32 nDSM metres                           Roofline
    dataset          str: "rid" | "roofline" | "airs"

A label a dataset does not have is absent from its samples (never zero-filled), so each loss
only sees real labels. AIRS tiles are read by windows; a whole tile is never loaded.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from roofnet.data.formats import (
    RID_IMAGES,
    RID_SEGMENTS,
    RID_SEGMENTS_CSV,
    RID_SUPERSTRUCTURES,
    RIDPitch,
    RoofDataError,
    RooflineFile,
    airs_pairs,
    image_files,
    raster_pixel_size,
    raster_size,
    read_image,
    read_label,
    read_rid_split,
    rid_dataset_root,
)
from roofnet.data.scenes import SEGMENT_BACKGROUND, SEGMENT_FLAT, SUPERSTRUCTURE_BACKGROUND

DATASET_NAMES = ("rid", "roofline", "airs")


def image_tensor(pixels: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 in [0, 1] (numpy: one pass, no thread pool in the loader)."""
    return torch.from_numpy(np.multiply(pixels.transpose(2, 0, 1), np.float32(1 / 255), dtype=np.float32))


def resize_sample(sample: dict, size: int) -> dict:
    """Resize every raster of a sample to `size` x `size`: images bilinear, classes nearest, lines so that
    one-pixel lines survive downsampling (max pooling), height bilinear."""
    height, width = sample["image"].shape[-2:]
    if (height, width) == (size, size):
        return sample
    out = dict(sample)
    out["image"] = F.interpolate(sample["image"][None], (size, size), mode="bilinear", align_corners=False)[0]
    if "metres_per_pixel" in sample:
        out["metres_per_pixel"] = sample["metres_per_pixel"] * max(height, width) / size
    for key in ("segments", "superstructures", "building", "annotated_roof", "pitch"):
        if key in sample:
            value = sample[key][None, None].float()
            out[key] = F.interpolate(value, (size, size), mode="nearest")[0, 0].to(sample[key].dtype)
    if "lines" in sample:
        lines = sample["lines"][None]
        if size < height:
            out["lines"] = F.adaptive_max_pool2d(lines, (size, size))[0]
        else:
            out["lines"] = F.interpolate(lines, (size, size), mode="nearest")[0]
    if "height" in sample:
        out["height"] = F.interpolate(sample["height"][None, None], (size, size), mode="bilinear")[0, 0]
    return out


def augment_sample(sample: dict, generator: torch.Generator) -> dict:
    """Random quarter turn and mirror, keeping azimuth classes right.

    A counter-clockwise quarter turn makes a north-facing roof face west: azimuth class k -> k - 4;
    a left-right mirror swaps east and west: k -> -k (mod 16). Flat and background stay.
    """
    turns = int(torch.randint(0, 4, (1,), generator=generator))
    mirror = bool(torch.randint(0, 2, (1,), generator=generator))
    out = {}
    for key, value in sample.items():
        if not isinstance(value, torch.Tensor) or value.ndim < 2:
            out[key] = value
            continue
        value = torch.rot90(value, turns, dims=(-2, -1))
        out[key] = torch.flip(value, dims=(-1,)) if mirror else value
    if "segments" in out:
        segments = out["segments"]
        azimuth = segments < SEGMENT_FLAT
        classes = (segments - 4 * turns) % 16
        if mirror:
            classes = (-classes) % 16
        out["segments"] = torch.where(azimuth, classes, segments)
    return {k: v.contiguous() if isinstance(v, torch.Tensor) else v for k, v in out.items()}


class RIDDataset(Dataset):
    """RID roof-centred images with segment and superstructure masks, for one split file.

    Args:
        root: RID folder (holds images_roof_centered_geotiff/, masks_*_reviewed/,
            filenames_train_val_test_split/), or a folder above it (`RID_dataset/`,
            `m1655470/RID_dataset/`, `data/`: see `roofnet.data.formats.RID_NESTINGS`).
        split: "train", "val" or "test".
        split_index: which of the five released splits (1..5).
        image_size: side length samples are resized to.
        augment: random quarter turns and mirrors (azimuth classes remapped).
        segments_csv: RID's segments_reviewed.csv, for the pitch label; "auto" (default) uses
            `<RID folder>/segments_reviewed.csv` when it exists (the TUMFTM/RID repository's `data/`),
            None never.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        split_index: int = 1,
        image_size: int = 512,
        augment: bool = False,
        segments_csv: str | Path | None = "auto",
    ) -> None:
        self.root = rid_dataset_root(Path(root))
        self.ids = read_rid_split(self.root, split, split_index)
        self.image_size = image_size
        self.augment = augment
        if segments_csv == "auto":
            segments_csv = self.root / RID_SEGMENTS_CSV if (self.root / RID_SEGMENTS_CSV).is_file() else None
        self.pitch = RIDPitch(Path(segments_csv)) if segments_csv else None

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        name = self.ids[index]
        image_path = self.root / RID_IMAGES / f"{name}.tif"
        pixels = read_image(image_path)
        shape = pixels.shape[:2]
        segments = read_label(self.root / RID_SEGMENTS / f"{name}.png", range(SEGMENT_BACKGROUND + 1), shape)
        supers = read_label(
            self.root / RID_SUPERSTRUCTURES / f"{name}.png", range(SUPERSTRUCTURE_BACKGROUND + 1), shape
        )
        segments_t = torch.from_numpy(segments).long()
        pixel_size = raster_pixel_size(image_path) if image_path.suffix.lower() in (".tif", ".tiff") else None
        sample = {
            "image": image_tensor(pixels),
            "segments": segments_t,
            "superstructures": torch.from_numpy(supers).long(),
            "annotated_roof": (segments_t != SEGMENT_BACKGROUND).float(),
            "metres_per_pixel": float("nan") if pixel_size is None else pixel_size,
            "dataset": "rid",
        }
        if self.pitch is not None:
            sample["pitch"] = torch.from_numpy(self.pitch.raster(image_path, shape)).long()
        sample = resize_sample(sample, self.image_size)
        return augment_sample(sample, _sample_generator(index)) if self.augment else sample


class RooflineDataset(Dataset):
    """Roofline's imdb.mat instances: image, nDSM height and eave/ridge/hip(/valley) line maps.

    Roofline ships no split; the last `val_fraction` of the instances are the validation split.

    Args:
        root: folder holding imdb.mat (or the path of the file itself).
        split: "train" or "val".
        val_fraction: share of instances (from the end) used for validation.
        image_size: side length samples are resized to.
        augment: random quarter turns and mirrors.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        val_fraction: float = 0.15,
        image_size: int = 224,
        augment: bool = False,
    ) -> None:
        path = Path(root)
        self.file = RooflineFile(path if path.suffix == ".mat" else path / "imdb.mat")
        n_val = max(round(len(self.file) * val_fraction), 1)
        if split not in ("train", "val"):
            raise ValueError(f"RooflineDataset.split: expected 'train' or 'val', got {split!r}")
        self.indices = (
            list(range(len(self.file) - n_val))
            if split == "train"
            else list(range(len(self.file) - n_val, len(self.file)))
        )
        self.image_size = image_size
        self.augment = augment

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict:
        i = self.indices[index]
        elements = self.file.elements(i)
        sample = {
            "image": image_tensor(self.file.image(i)),
            "lines": torch.from_numpy(elements).float(),
            "line_channels": torch.arange(elements.shape[0]),
            "height": torch.from_numpy(self.file.depth(i)),
            "dataset": "roofline",
        }
        sample = resize_sample(sample, self.image_size)
        return augment_sample(sample, _sample_generator(index)) if self.augment else sample


class _OpenRasters:
    """Keeps rasterio datasets open per process (reopening per window costs more than the read);
    handles are not pickled, so each DataLoader worker opens its own."""

    _handles: dict
    gdal_cache_mb = 64  # GDAL's block cache defaults to 5 % of RAM: random windows would fill it

    def _reading(self):
        import rasterio

        return rasterio.Env(GDAL_CACHEMAX=self.gdal_cache_mb)

    def _handle(self, path: Path):
        import rasterio

        if path not in self._handles:
            self._handles[path] = rasterio.open(path)
        return self._handles[path]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_handles": {}}


class AIRSDataset(_OpenRasters, Dataset):
    """AIRS building footprints read by windows from large tiles.

    Training (`random_crops=True`): `crops` random windows per epoch, each from a random tile.
    Validation: a grid of windows covering every tile (windows at the far edges overlap their
    neighbour so none is padded).

    Args:
        root: AIRS root (holds train/, val/, test/).
        split: "train", "val" or "test".
        image_size: window side in pixels.
        random_crops: random windows (training) instead of the covering grid.
        crops: number of random windows per epoch.
        augment: random quarter turns and mirrors.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        image_size: int = 512,
        random_crops: bool = False,
        crops: int = 100,
        augment: bool = False,
    ) -> None:
        self.root = Path(root)
        self.pairs = airs_pairs(self.root, split, labelled=split != "test")
        self.sizes = [raster_size(image) for image, _ in self.pairs]
        self.pixel_sizes = [raster_pixel_size(image) for image, _ in self.pairs]
        for (image, label), size in zip(self.pairs, self.sizes, strict=True):
            if label is not None and raster_size(label) != size:
                raise RoofDataError(
                    f"{label}: label is {raster_size(label)}, its image {image.name} is {size}"
                )
        self.image_size = image_size
        self.random_crops = random_crops
        self.crops = crops
        self.augment = augment
        self.windows = [] if random_crops else self._grid()
        self._handles: dict[Path, object] = {}

    def _grid(self) -> list[tuple[int, int, int]]:
        windows = []
        for tile, (height, width) in enumerate(self.sizes):
            for row in grid_starts(height, self.image_size, self.image_size):
                for col in grid_starts(width, self.image_size, self.image_size):
                    windows.append((tile, row, col))
        return windows

    def __len__(self) -> int:
        return self.crops if self.random_crops else len(self.windows)

    def __getitem__(self, index: int) -> dict:
        if self.random_crops:
            generator = _sample_generator(index)
            tile = int(torch.randint(0, len(self.pairs), (1,), generator=generator))
            height, width = self.sizes[tile]
            row = int(torch.randint(0, max(height - self.image_size, 0) + 1, (1,), generator=generator))
            col = int(torch.randint(0, max(width - self.image_size, 0) + 1, (1,), generator=generator))
        else:
            tile, row, col = self.windows[index]
        image_path, label_path = self.pairs[tile]
        window = (row, col, self.image_size, self.image_size)
        with self._reading():
            pixels = read_image(image_path, window, self._handle(image_path))
            label = None
            if label_path is not None:
                label = read_label(label_path, (0, 1), window=window, handle=self._handle(label_path))
        pixel_size = self.pixel_sizes[tile]
        sample = {
            "image": image_tensor(pixels),
            "metres_per_pixel": float("nan") if pixel_size is None else pixel_size,
            "dataset": "airs",
        }
        if label is not None:
            sample["building"] = torch.from_numpy(label.astype(np.float32))
        return augment_sample(sample, _sample_generator(index)) if self.augment else sample


def grid_starts(length: int, window: int, stride: int) -> list[int]:
    """Window starts covering [0, length): every `stride`, the last one flush with the end."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window, stride))
    return [*starts, length - window]


def keep_bounds(starts: Sequence[int], window: int, length: int) -> list[tuple[int, int]]:
    """For overlapping windows at `starts`, the [begin, end) each one keeps so that they tile
    [0, length) exactly, each boundary in the middle of the overlap (centres are predicted best)."""
    cuts = [0]
    for this, following in itertools.pairwise(starts):
        cuts.append((following + this + window) // 2)
    cuts.append(length)
    return list(itertools.pairwise(cuts))


PLAUSIBLE_PIXEL_METRES = (0.005, 50.0)  # aerial to coarse satellite; outside: a placeholder geotransform


def prediction_pixel_size(path: Path, predict_gsd: float | None) -> float | None:
    """Metres per pixel of an input to predict, or None when none can be derived.

    GeoTIFFs in a projected CRS give it directly, geographic ones (RID's EPSG:4326) from the degrees at
    their latitude. No CRS, or a size outside `PLAUSIBLE_PIXEL_METRES` (a GeoTIFF in EPSG:4326 whose
    transform is the one-degree placeholder of an image that was never georeferenced): refused when
    `predict_gsd` needs it, else a warning that nothing metric can follow (no areas from vectorize).
    """
    size = raster_pixel_size(path) if path.suffix.lower() in (".tif", ".tiff") else None
    if size is not None and not PLAUSIBLE_PIXEL_METRES[0] <= size <= PLAUSIBLE_PIXEL_METRES[1]:
        size = None
    if size is None:
        why = (
            f"{path}: no metric pixel size (no CRS, or a geographic CRS whose transform gives no plausible "
            f"size in metres, {PLAUSIBLE_PIXEL_METRES[0]}..{PLAUSIBLE_PIXEL_METRES[1]} m)"
        )
        if predict_gsd:
            raise RoofDataError(
                f"{why}; --data.predict_gsd {predict_gsd} needs it: georeference the image or unset it"
            )
        warnings.warn(
            f"{why}; predicting at its own resolution, and no areas can be computed from it", stacklevel=3
        )
    return size


class PredictionWindows(_OpenRasters, Dataset):
    """Overlapping windows over input images of any size, for `mtl predict`.

    Images no larger than `window` give one (zero-padded) window; larger ones (AIRS tiles) a grid with
    `overlap` pixels shared between neighbours. Each item says which part of the window to keep and
    where it goes in the full image, so the writer can stitch by windowed writes without ever
    holding a whole tile.

    With `predict_gsd` (metres per pixel the model was trained at), each input is read at its own pixel
    size (`prediction_pixel_size`) in windows covering `window * predict_gsd` metres, resampled to
    `window` pixels for the model; `source_window` tells the task the side to resample its outputs
    back to, so the rasters written keep the input's grid.

    Args:
        files: input rasters (GeoTIFF, PNG, JPEG).
        window: window side given to the model (a multiple of 32).
        overlap: model pixels shared by neighbouring windows.
        predict_gsd: training pixel size in metres, or None to predict at each input's own resolution.
    """

    def __init__(
        self,
        files: Sequence[str | Path],
        window: int = 512,
        overlap: int = 64,
        predict_gsd: float | None = None,
    ) -> None:
        if window % 32:
            raise ValueError(f"predict window {window} must be a multiple of 32")
        if not 0 <= overlap < window:
            raise ValueError(f"predict overlap {overlap} must be in [0, {window})")
        if predict_gsd is not None and predict_gsd <= 0:
            raise ValueError(f"predict_gsd must be a positive size in metres, got {predict_gsd}")
        self.files = [Path(f) for f in files]
        if not self.files:
            raise RoofDataError("no input images to predict")
        self.window, self.overlap, self.predict_gsd = window, overlap, predict_gsd
        self.items: list[dict] = []
        self.sizes = []
        self.pixel_sizes = []
        for index, path in enumerate(self.files):
            height, width = raster_size(path) if path.suffix.lower() in (".tif", ".tiff") else _pil_size(path)
            self.sizes.append((height, width))
            pixel_size = prediction_pixel_size(path, predict_gsd)
            self.pixel_sizes.append(pixel_size)
            scale = predict_gsd / pixel_size if predict_gsd else 1.0  # input pixels per model pixel
            side = max(round(window * scale), 1)
            shared = min(round(overlap * scale), side - 1)
            rows = grid_starts(height, side, side - shared)
            cols = grid_starts(width, side, side - shared)
            for row, (top, bottom) in zip(rows, keep_bounds(rows, side, height), strict=True):
                for col, (left, right) in zip(cols, keep_bounds(cols, side, width), strict=True):
                    self.items.append(
                        {
                            "file_index": index,
                            "row": row,
                            "col": col,
                            "side": side,
                            "keep": (top, bottom, left, right),
                        }
                    )
        self._handles: dict[Path, object] = {}

    def __len__(self) -> int:
        return len(self.items)

    def windows_of(self, file_index: int) -> int:
        if not hasattr(self, "_window_counts"):
            counts: dict[int, int] = {}
            for item in self.items:
                counts[item["file_index"]] = counts.get(item["file_index"], 0) + 1
            self._window_counts = counts
        return self._window_counts.get(file_index, 0)

    def __getitem__(self, index: int) -> dict:
        item = self.items[index]
        path, side = self.files[item["file_index"]], item["side"]
        window = (item["row"], item["col"], side, side)
        if path.suffix.lower() in (".tif", ".tiff"):
            with self._reading():
                pixels = read_image(path, window, self._handle(path))
        else:
            full = read_image(path)
            pixels = np.zeros((side, side, 3), np.uint8)
            part = full[item["row"] : item["row"] + side, item["col"] : item["col"] + side]
            pixels[: part.shape[0], : part.shape[1]] = part
        image = image_tensor(pixels)
        if side != self.window:  # to the training pixel size (antialiased when shrinking)
            image = F.interpolate(
                image[None], (self.window, self.window), mode="bilinear", align_corners=False, antialias=True
            )[0].clamp(0, 1)
        top, bottom, left, right = item["keep"]
        height, width = self.sizes[item["file_index"]]
        return {
            "image": image,
            "file_index": item["file_index"],
            "path": str(path),
            "height": height,
            "width": width,
            "windows": self.windows_of(item["file_index"]),
            "row": item["row"],
            "col": item["col"],
            "source_window": side,
            "keep": torch.tensor([top, bottom, left, right]),
        }


def _pil_size(path: Path) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.height, image.width
    except (UnidentifiedImageError, OSError) as error:
        raise RoofDataError(f"{path}: unreadable image ({error})") from error


def _sample_generator(index: int) -> torch.Generator:
    """The generator of one sample's random crop and augmentation.

    Seeded from torch's global RNG (seeded per worker by the DataLoader, per run by `seed_everything`),
    so crops and augmentations differ between epochs yet reproduce, and from the sample's `index`:
    `seed_everything` gives every DDP process the same global RNG, so without the index the processes
    would cut the same random AIRS windows in step and train on duplicated data.
    """
    draw = int(torch.randint(0, 2**62, (1,)))
    return torch.Generator().manual_seed((draw + index * 0x9E3779B97F4A7C15) % 2**63)


def list_prediction_inputs(path: str | Path) -> list[Path]:
    """Input images for prediction: one file, or the image files of a folder (no *_vis.tif)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise RoofDataError(f"{path}: no such file or folder to predict")
    return image_files(path)
