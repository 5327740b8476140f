"""Synthetic data, the two NPZ layouts, units, no-data, splits, augmentation and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from landcover.data import DEFAULT_BANDS, DEFAULT_CLASSES, LandCoverDataModule, PatchFormatError
from landcover.data.datasets import augment
from landcover.data.formats import read_patch
from landcover.data.splits import stratified_split
from landcover.data.synthetic import synthesize, write_synthetic_dataset
from landcover.tools import split

CLS = {name: i for i, name in enumerate(DEFAULT_CLASSES)}


def ready(root: Path, **kwargs) -> LandCoverDataModule:
    kwargs.setdefault("stats_cache", None)
    datamodule = LandCoverDataModule(root=str(root), batch_size=8, **kwargs)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def test_synthetic_classes_have_their_spectra_and_imbalance() -> None:
    images, labels = synthesize(400, size=16, seed=1)
    assert images.shape == (400, 6, 16, 16) and images.dtype == np.float32
    mean = {name: np.nanmean(images[labels == i], axis=(0, 2, 3)) for name, i in CLS.items()}
    b02, b04, b08, b11 = 0, 2, 3, 4
    assert mean["water"][b08] < 0.08 and mean["grassland"][b08] > 2 * mean["grassland"][b04]  # red edge
    assert mean["snow"][b02] > mean["glacier_ice"][b02] > mean["bare_rock_lava"][b02]
    assert mean["snow"][b11] < 0.3 * mean["snow"][b02]  # snow is dark in SWIR
    counts = np.bincount(labels, minlength=8)
    assert counts[CLS["bare_rock_lava"]] > 2 * counts[CLS["urban"]]  # imbalanced like the lab's scenes


def test_both_layouts_load_to_the_same_batches(tmp_path: Path) -> None:
    write_synthetic_dataset(tmp_path / "p", samples=80, size=16, layout="patches", nodata_probability=0)
    write_synthetic_dataset(tmp_path / "a", samples=80, size=16, layout="archive", nodata_probability=0)
    image, label = read_patch(next((tmp_path / "p/train").glob("*.npz")), DEFAULT_BANDS, DEFAULT_CLASSES)
    assert image.shape == (6, 16, 16) and 0 <= label < 8
    with np.load(tmp_path / "a/train.npz", allow_pickle=False) as npz:
        assert set(npz.files) == {"images", "labels", "bands"} and npz["images"].shape[1:] == (6, 16, 16)
    patches, archive = ready(tmp_path / "p", augment=False), ready(tmp_path / "a", augment=False)
    np.testing.assert_allclose(patches.band_mean, archive.band_mean, rtol=1e-5)
    batch = next(iter(archive.val_dataloader()))
    assert batch["image"].shape == (8, 6, 16, 16) and batch["label"].dtype == torch.int64


def test_dn_with_baseline_offset_gives_reflectance(tmp_path: Path) -> None:
    write_synthetic_dataset(tmp_path / "r", samples=40, size=8, units="reflectance")
    write_synthetic_dataset(tmp_path / "dn", samples=40, size=8, units="dn", dn_offset=1000)
    with np.load(next((tmp_path / "dn/train").glob("*.npz")), allow_pickle=False) as npz:
        assert npz["image"].dtype == np.uint16
    reflectance = ready(tmp_path / "r").band_mean
    assert np.allclose(ready(tmp_path / "dn").band_mean, reflectance, atol=2e-4)  # offset from dataset.json
    # Told the wrong offset (pre-04.00 products have none), everything is 0.1 brighter.
    assert np.allclose(ready(tmp_path / "dn", dn_offset=0).band_mean, reflectance + 0.1, atol=2e-4)


def test_nodata_is_counted_and_filled_or_refused(tmp_path: Path) -> None:
    write_synthetic_dataset(tmp_path, samples=60, size=8, nodata_probability=0.5, layout="archive")
    datamodule = ready(tmp_path)
    assert (
        datamodule.report["train"]["nodata_patches"] > 5 and datamodule.report["train"]["nodata_pixels"] > 5
    )
    assert np.isfinite(datamodule.band_mean).all()
    with pytest.raises(PatchFormatError, match=r"train\.npz\[\d+\]: \d+ no-data pixel"):
        ready(tmp_path, nodata="error")


def test_stratified_split_keeps_class_shares(tmp_path: Path) -> None:
    labels = np.repeat(np.arange(4), [100, 40, 10, 3])
    parts = stratified_split(labels, 0.2, 0.1, seed=0)
    assert sorted(np.concatenate(list(parts.values()))) == list(range(len(labels)))
    assert np.bincount(labels[parts["val"]]).tolist() == [20, 8, 2, 1]
    assert np.bincount(labels[parts["test"]]).tolist() == [10, 4, 1, 1]

    # A flat folder of patches: the verb writes split lists that the DataModule reads.
    write_synthetic_dataset(tmp_path / "tmp", samples=60, size=8, nodata_probability=0)
    flat = tmp_path / "flat"
    flat.mkdir()
    for f in (tmp_path / "tmp").rglob("*.npz"):
        f.rename(flat / f.name)
    split(source=flat, val_fraction=0.2, test_fraction=0.2)
    assert len((flat / "splits/val.txt").read_text().splitlines()) >= 8
    datamodule = ready(flat)
    assert sum(len(d) for d in datamodule.datasets.values()) == 60

    # An archive is split into three archives.
    write_synthetic_dataset(
        tmp_path / "arch", samples=60, size=8, layout="archive", val_fraction=0, test_fraction=0
    )
    split(
        source=tmp_path / "arch/train.npz", out=tmp_path / "arch_split", val_fraction=0.2, test_fraction=0.2
    )
    assert len(ready(tmp_path / "arch_split").datasets["val"]) >= 8


def test_augmentation_is_a_flip_or_rotation() -> None:
    image = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4)
    dihedral = [np.rot90(image, k, axes=(1, 2)) for k in range(4)]
    dihedral += [d[:, :, ::-1] for d in dihedral]
    torch.manual_seed(0)
    seen = set()
    for _ in range(64):
        out = augment(image)
        seen.add(next(i for i, d in enumerate(dihedral) if np.array_equal(out, d)))
    assert len(seen) == 8


def test_loader_knobs_apply_when_dataloaders_are_rebuilt(tmp_path: Path) -> None:
    write_synthetic_dataset(tmp_path, samples=200, size=8, layout="archive")
    datamodule = ready(tmp_path)
    n_train = len(datamodule.datasets["train"])
    datamodule.max_samples, datamodule.batch_size = 50, 10  # what StagedScaling does between stages
    assert len(datamodule.train_dataloader()) == 5
    datamodule.max_samples, datamodule.sampler = None, "weighted"
    labels = torch.cat([b["label"] for _ in range(5) for b in datamodule.train_dataloader()])
    assert len(labels) == 5 * n_train
    shares = np.bincount(labels.numpy(), minlength=8) / len(labels)
    assert shares.min() > 0.08 and shares.max() < 0.18  # about 1/8 each despite the imbalance

    datamodule.crop_size = 4  # random crops for training, centre crops for evaluation
    assert next(iter(datamodule.train_dataloader()))["image"].shape[-2:] == (4, 4)
    first = next(iter(datamodule.val_dataloader()))["image"][0]
    whole, _, _ = datamodule.datasets["val"].raw(0)
    torch.testing.assert_close(first, torch.from_numpy(whole[:, 2:6, 2:6]), equal_nan=True)
    datamodule.crop_size = 16
    with pytest.raises(
        PatchFormatError, match=r"val\.npz\[0\]: crop_size 16 is larger than the patch \(8x8\)"
    ):
        next(iter(datamodule.val_dataloader()))


def write_npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        (
            {"image": np.zeros((4, 8, 8), np.float32), "label": np.int64(1)},
            r"field 'image' expected \(6, H, W\)",
        ),
        (
            {"image": np.zeros((6, 8, 8), bool), "label": np.int64(1)},
            "must be float or integer, got dtype bool",
        ),
        (
            {"image": np.zeros((8, 8, 6), np.float32), "label": np.int64(1)},
            r"got shape \(8, 8, 6\) \(bands last: store np\.moveaxis",
        ),
        ({"image": np.zeros((6, 8, 8), np.float32)}, r"missing field\(s\) \['label'\]"),
        (
            {"image": np.zeros((6, 8, 8), np.float32), "label": np.int64(9)},
            r"class index 9\.\.9, expected 0\.\.7",
        ),
        (
            {"image": np.zeros((6, 8, 8), np.float32), "label": np.float32(1)},
            "must be an integer class index",
        ),
        (
            {"image": np.zeros((6, 8, 8), np.float32), "label": np.array([1, None])},
            "holds an object array, which only pickle could read",
        ),
    ],
)
def test_bad_patch_files_are_named_in_the_error(tmp_path: Path, arrays: dict, message: str) -> None:
    for name in ("train", "val"):
        (tmp_path / name).mkdir()
        write_npz(tmp_path / name / "good.npz", image=np.ones((6, 8, 8), np.float32), label=np.int64(0))
    bad = write_npz(tmp_path / "train" / "bad.npz", **arrays)
    with pytest.raises(PatchFormatError, match=message) as error:
        ready(tmp_path)
    assert str(bad) in str(error.value)


def test_integer_pixels_need_dn_units_and_missing_splits_are_explained(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    write_npz(tmp_path / "train" / "a.npz", image=np.ones((6, 8, 8), np.uint16), label=np.int64(0))
    with pytest.raises(PatchFormatError, match="units are 'reflectance'; set units: dn"):
        LandCoverDataModule(root=str(tmp_path)).setup("test")
    with pytest.raises(PatchFormatError, match=r"needs 'train' and 'val' splits.*found \['train'\]"):
        ready(tmp_path, units="dn")
    with pytest.raises(FileNotFoundError, match="mtl landcover generate"):
        ready(tmp_path / "nowhere")


def test_real_size_dn_patches_go_through_loader_and_model(tmp_path: Path) -> None:
    from landcover.task import LandCoverTask

    write_synthetic_dataset(
        tmp_path, samples=12, size=224, units="dn", dn_offset=1000, nodata_probability=1.0
    )
    datamodule = ready(tmp_path, augment=True)
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["image"].shape[1:] == (6, 224, 224) and batch["image"].dtype == torch.float32
    assert torch.isnan(batch["image"]).any()  # DN 0 stripes arrive as NaN
    task = LandCoverTask(width=4, depth=5).eval()
    task.band_mean.copy_(torch.as_tensor(datamodule.band_mean))
    task.band_std.copy_(torch.as_tensor(datamodule.band_std))
    with torch.no_grad():
        logits = task(batch["image"][:2])
    assert logits.shape == (2, 8) and torch.isfinite(logits).all()


def test_bands_are_chosen_by_name_from_files_with_more_bands(tmp_path: Path) -> None:
    all_bands = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (20, 13, 8, 8)).astype(np.float32)
    images[:, :, 0, 0] = np.arange(13)[None, :]  # pixel (0, 0) of channel c holds c
    labels = np.arange(20) % 4
    for name in ("train", "val"):
        np.savez(tmp_path / f"{name}.npz", images=images, labels=labels, bands=np.array(all_bands))
    datamodule = ready(tmp_path, bands=["B02", "B03", "B04", "B08", "B11", "B12"], augment=False)
    batch = next(iter(datamodule.val_dataloader()))
    assert batch["image"].shape[1] == 6
    assert batch["image"][0, :, 0, 0].tolist() == [1, 2, 3, 7, 11, 12]
    with pytest.raises(PatchFormatError, match=r"data\.bands asks for \['B13'\], but the files hold"):
        ready(tmp_path, bands=["B02", "B13"])


def test_synthetic_root_made_with_other_settings_is_refused(tmp_path: Path) -> None:
    ready(tmp_path, synthetic_samples=40, synthetic_size=8)
    assert len(list((tmp_path / "train").glob("*.npz"))) > 20
    ready(tmp_path, synthetic_samples=40, synthetic_size=8)  # the same settings: reused as it is
    with pytest.raises(
        PatchFormatError, match=r"dataset\.json: this synthetic dataset was made with .*'size': 8"
    ):
        ready(tmp_path, synthetic_samples=40, synthetic_size=16)


def test_labels_may_be_class_names(tmp_path: Path) -> None:
    image = np.ones((6, 8, 8), np.float32)
    for folder, names in (("train", ["water", "snow", "urban", "water"]), ("val", ["snow", "water"])):
        (tmp_path / folder).mkdir()
        for i, name in enumerate(names):
            write_npz(tmp_path / folder / f"{i}.npz", image=image, label=np.array(name))
    datamodule = ready(tmp_path, augment=False)
    assert datamodule.class_counts.tolist() == [2, 0, 1, 0, 0, 0, 0, 1]
    assert sorted(b["label"].item() for b in datamodule.datasets["val"]) == [0, 2]

    write_npz(tmp_path / "train" / "bad.npz", image=image, label=np.array("forest"))
    with pytest.raises(PatchFormatError, match=r"bad\.npz: field 'label' has class name\(s\) \['forest'\]"):
        ready(tmp_path)


def test_synth_split_and_stats_verbs_through_the_command_line(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    from common.cli import main

    monkeypatch.chdir(tmp_path)  # the statistics cache goes to ./.cache

    main(["landcover", "synth", "--out", str(tmp_path / "s"), "--samples", "60", "--size", "8",
          "--layout", "archive", "--units", "dn", "--val_fraction", "0", "--test_fraction", "0"])  # fmt: skip
    with np.load(tmp_path / "s/train.npz", allow_pickle=False) as npz:
        assert npz["images"].shape == (60, 6, 8, 8) and npz["images"].dtype == np.uint16
    main(["landcover", "split", "--source", str(tmp_path / "s/train.npz"), "--out", str(tmp_path / "split")])
    assert sorted(p.name for p in (tmp_path / "split").glob("*.npz")) == ["test.npz", "train.npz", "val.npz"]
    capsys.readouterr()
    main(["landcover", "stats", "--root", str(tmp_path / "split"), "--units", "dn", "--dn_offset", "1000"])
    printed = capsys.readouterr().out
    assert '"band_mean"' in printed and '"nodata_pixels"' in printed
    with pytest.raises(SystemExit):
        main(["landcover", "synth", "--out", str(tmp_path / "x"), "--layout", "zip"])


def test_statistics_are_cached_until_a_file_changes(tmp_path: Path) -> None:
    import os

    rng = np.random.default_rng(0)
    for folder in ("train", "val"):
        (tmp_path / folder).mkdir()
        for i in range(3):
            image = rng.uniform(0.1, 0.2, (6, 8, 8)).astype(np.float32)
            write_npz(tmp_path / folder / f"{i}.npz", image=image, label=np.int64(i))
    cache = str(tmp_path / "cache")
    first = ready(tmp_path, stats_cache=cache).band_mean
    patch = tmp_path / "train/0.npz"
    before = patch.stat()
    write_npz(patch, image=np.ones((6, 8, 8), np.float32), label=np.int64(0))  # same size, other values
    os.utime(patch, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert patch.stat().st_size == before.st_size
    np.testing.assert_array_equal(ready(tmp_path, stats_cache=cache).band_mean, first)  # read from the cache
    os.utime(patch, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))  # touched: scanned again
    assert np.all(ready(tmp_path, stats_cache=cache).band_mean > first + 0.2)
    assert np.all(ready(tmp_path, stats_cache=None).band_mean > first + 0.2)


def test_a_truncated_patch_is_named_and_never_called_pickled_data(tmp_path: Path) -> None:
    for name in ("train", "val"):
        (tmp_path / name).mkdir()
        write_npz(tmp_path / name / "good.npz", image=np.ones((6, 8, 8), np.float32), label=np.int64(0))
    whole = write_npz(tmp_path / "train" / "cut.npz", image=np.ones((6, 8, 8), np.float32), label=np.int64(1))
    whole.write_bytes(whole.read_bytes()[:200])  # a download cut off
    with pytest.raises(PatchFormatError, match=r"cut\.npz: not a complete \.npz archive") as error:
        ready(tmp_path)
    assert "pickle" not in str(error.value)


def test_patches_without_any_valid_pixel_are_left_out_and_named(tmp_path: Path) -> None:
    for name in ("train", "val"):
        (tmp_path / name).mkdir()
        for index in range(3):
            image = np.full((6, 8, 8), 0.1 * (index + 1), np.float32)
            write_npz(tmp_path / name / f"p{index}.npz", image=image, label=np.int64(index % 2))
    write_npz(
        tmp_path / "train" / "void.npz", image=np.full((6, 8, 8), np.nan, np.float32), label=np.int64(1)
    )
    with pytest.warns(UserWarning, match=r"left 1 train patch\(es\) out .*void\.npz"):
        datamodule = ready(tmp_path, stats_cache=None)
    assert datamodule.report["train"]["class_counts"].tolist()[:2] == [2, 1]  # void.npz's label not counted
    images = torch.cat([batch["image"] for batch in datamodule.train_dataloader()])
    assert len(images) == 3 and not torch.isnan(images).all(dim=(1, 2, 3)).any()
    assert "| train | 4 | 1 | 64 | 1 |" in datamodule.data_summary()
