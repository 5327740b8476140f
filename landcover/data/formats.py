"""The on-disk formats of Sentinel-2 land-cover patches, and their checks.

Two NPZ layouts, the ones the lab hands out, both read with `np.load(allow_pickle=False)`:

    per-patch   <root>/<split>/<anything>.npz    image (C, H, W), label (), optional bands (C,) str
    archive     <root>/<split>.npz               images (N, C, H, W), labels (N,), optional bands

Labels are class indexes (integers) or class names (strings), checked against the class list.

`<split>` is `train`, `val` or `test`. A third way to name a split is a list file
`<root>/splits/<split>.txt` of per-patch files relative to `<root>` (what `mtl landcover split`
writes for a flat folder of patches). `<root>/dataset.json` (optional) records the class names, the
band list, the units (`reflectance` or `dn`) and the DN offset; arguments of the DataModule take
precedence over it.

Pixel values are surface reflectance (float, about 0..1) or Sentinel-2 L2A digital numbers (uint16).
DN -> reflectance is `(DN - offset) / 10000`, where the offset is 1000 for products of processing
baseline 04.00 (January 2022) and later, 0 before. DN 0 and NaN are no-data.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common.errors import UserInputError

DEFAULT_BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")
DEFAULT_CLASSES = (
    "water",
    "glacier_ice",
    "snow",
    "bare_rock_lava",
    "moss_lichen",
    "grassland",
    "cropland",
    "urban",
)
SPLITS = ("train", "val", "test")
METADATA_FILE = "dataset.json"
REFLECTANCE_SCALE = 10000.0
BASELINE_0400_OFFSET = 1000
NODATA_DN = 0
UNITS = ("reflectance", "dn")


class PatchFormatError(UserInputError):
    """A patch file that is not what the loader expects; the message names the file and the field."""


@dataclass
class DatasetMetadata:
    """What `<root>/dataset.json` records about a patch dataset."""

    classes: list[str] = field(default_factory=lambda: list(DEFAULT_CLASSES))
    bands: list[str] = field(default_factory=lambda: list(DEFAULT_BANDS))
    units: str = "reflectance"
    dn_offset: int = 0
    synthetic: dict | None = None  # the generator's settings, for synthetic datasets

    def write(self, root: str | Path) -> Path:
        path = Path(root) / METADATA_FILE
        path.write_text(json.dumps(self.__dict__, indent=2) + "\n")
        return path

    @classmethod
    def read(cls, root: str | Path) -> DatasetMetadata | None:
        path = Path(root) / METADATA_FILE
        if not path.is_file():
            return None
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise PatchFormatError(f"{path}: not valid JSON ({error})") from error
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise PatchFormatError(
                f"{path}: unknown field(s) {sorted(unknown)}; expected {sorted(cls.__dataclass_fields__)}"
            )
        metadata = cls(**raw)
        if metadata.units not in UNITS:
            raise PatchFormatError(f"{path}: field 'units' must be one of {UNITS}, got {metadata.units!r}")
        return metadata


def dn_to_reflectance(dn: np.ndarray, offset: int = 0) -> np.ndarray:
    """Sentinel-2 L2A digital numbers -> reflectance, (DN - offset) / 10000; DN 0 (no data) -> NaN."""
    reflectance = (dn.astype(np.float32) - np.float32(offset)) / np.float32(REFLECTANCE_SCALE)
    reflectance[dn == NODATA_DN] = np.nan
    return reflectance


def reflectance_to_dn(reflectance: np.ndarray, offset: int = 0) -> np.ndarray:
    """Reflectance -> uint16 DN with the given offset; NaN becomes DN 0 (no data)."""
    dn = np.round(np.nan_to_num(reflectance, nan=0.0) * REFLECTANCE_SCALE + offset)
    dn = np.clip(dn, 1, np.iinfo(np.uint16).max).astype(np.uint16)
    dn[np.isnan(reflectance)] = NODATA_DN
    return dn


def check_image(image: np.ndarray, source: str, bands: Sequence[str], batched: bool = False) -> None:
    """Raise PatchFormatError unless `image` is (C, H, W) (or (N, C, H, W)) numeric with C == len(bands)."""
    name = "images" if batched else "image"
    expected = f"({'N, ' if batched else ''}{len(bands)}, H, W) for bands {list(bands)}"
    if image.dtype.kind not in "fiu":
        raise PatchFormatError(f"{source}: field '{name}' must be float or integer, got dtype {image.dtype}")
    if image.ndim != (4 if batched else 3) or image.shape[-3] != len(bands):
        hint = ""
        if image.ndim == (4 if batched else 3) and image.shape[-1] == len(bands):
            hint = " (bands last: store np.moveaxis(image, -1, -3))"
        raise PatchFormatError(f"{source}: field '{name}' expected {expected}, got shape {image.shape}{hint}")


def label_indices(
    label: np.ndarray, source: str, class_names: Sequence[str], name: str = "label"
) -> np.ndarray:
    """Class indexes (int64, same shape) from integer labels or class-name strings; checked against the classes."""
    if label.dtype.kind in "US":
        names = label.astype(str)
        unknown = sorted(set(names.reshape(-1).tolist()) - set(class_names))
        if unknown:
            raise PatchFormatError(
                f"{source}: field '{name}' has class name(s) {unknown[:5]}, expected one of {list(class_names)}"
            )
        lookup = {class_name: i for i, class_name in enumerate(class_names)}
        return np.array([lookup[n] for n in names.reshape(-1).tolist()], dtype=np.int64).reshape(names.shape)
    if label.dtype.kind not in "iu":
        raise PatchFormatError(
            f"{source}: field '{name}' must be an integer class index or a class name, got dtype {label.dtype}"
        )
    if label.size and (label.min() < 0 or label.max() >= len(class_names)):
        raise PatchFormatError(
            f"{source}: field '{name}' has class index {int(label.min())}..{int(label.max())}, "
            f"expected 0..{len(class_names) - 1}"
        )
    return label.astype(np.int64)


def check_bands(recorded: np.ndarray | None, source: str, bands: Sequence[str]) -> None:
    if recorded is not None and [str(b) for b in recorded.tolist()] != list(bands):
        raise PatchFormatError(f"{source}: field 'bands' is {recorded.tolist()}, expected {list(bands)}")


def _open(path: Path, required: Sequence[str]) -> dict[str, np.ndarray]:
    if not Path(path).is_file():
        raise PatchFormatError(f"{path}: patch file not found")
    # An .npz is a zip archive: a cut-off download has no zip directory and np.load would fall through to
    # its other formats and call the bytes "pickled data".
    if not zipfile.is_zipfile(path):
        raise PatchFormatError(
            f"{path}: not a complete .npz archive (no zip directory): the file is truncated or of another kind"
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except ValueError as error:  # an object array inside would need pickle: refused
        raise PatchFormatError(
            f"{path}: holds an object array, which only pickle could read; save plain numeric/string arrays"
        ) from error
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise PatchFormatError(f"{path}: a damaged .npz archive ({type(error).__name__}: {error})") from error
    missing = [key for key in required if key not in arrays]
    if missing:
        raise PatchFormatError(f"{path}: missing field(s) {missing}; the file has {sorted(arrays)}")
    return arrays


def read_patch(path: str | Path, bands: Sequence[str], class_names: Sequence[str]) -> tuple[np.ndarray, int]:
    """One per-patch file: its image (C, H, W) as stored and its label."""
    path = Path(path)
    arrays = _open(path, ("image", "label"))
    image, label = arrays["image"], arrays["label"]
    check_image(image, str(path), bands)
    if label.size != 1:
        raise PatchFormatError(f"{path}: field 'label' must hold one class index, got shape {label.shape}")
    index = label_indices(label, str(path), class_names)
    check_bands(arrays.get("bands"), str(path), bands)
    return image, int(index.reshape(()))


def read_patch_label(path: str | Path) -> int | str:
    """Only the label of a per-patch file, as stored (for splitting without reading pixels)."""
    arrays = _open(Path(path), ("label",))
    return np.asarray(arrays["label"]).reshape(-1)[0].item()


def read_archive(
    path: str | Path, bands: Sequence[str], class_names: Sequence[str] | None
) -> tuple[np.ndarray, np.ndarray]:
    """One split archive: images (N, C, H, W) as stored and labels (N,) as class indexes
    (`class_names` None: labels as stored, unchecked)."""
    path = Path(path)
    arrays = _open(path, ("images", "labels"))
    images, labels = arrays["images"], arrays["labels"]
    check_image(images, str(path), bands, batched=True)
    if labels.shape != (images.shape[0],):
        raise PatchFormatError(
            f"{path}: field 'labels' expected shape ({images.shape[0]},) to match 'images', got {labels.shape}"
        )
    if class_names is not None:
        labels = label_indices(labels, str(path), class_names, name="labels")
    check_bands(arrays.get("bands"), str(path), bands)
    return images, labels


def write_patch(path: str | Path, image: np.ndarray, label: int, bands: Sequence[str]) -> None:
    np.savez_compressed(path, image=image, label=np.int64(label), bands=np.array(list(bands)))


def write_archive(path: str | Path, images: np.ndarray, labels: np.ndarray, bands: Sequence[str]) -> None:
    labels = labels if labels.dtype.kind in "US" else labels.astype(np.int64)
    np.savez_compressed(path, images=images, labels=labels, bands=np.array(list(bands)))
