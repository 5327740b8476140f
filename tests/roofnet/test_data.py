"""Synthetic scenes, the real layouts they are written in, and the loaders that read them."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from roofnet.data import AIRSDataset, RIDDataset, RoofDataError, RoofDataModule, RooflineDataset
from roofnet.data.datasets import augment_sample, grid_starts, keep_bounds
from roofnet.data.formats import RID_SEGMENTS, RID_SPLITS, RID_SUPERSTRUCTURES, read_rid_split
from roofnet.data.scenes import (
    BUILDING_KINDS,
    SEGMENT_BACKGROUND,
    SEGMENT_FLAT,
    SUPERSTRUCTURE_BACKGROUND,
    add_building,
    azimuth_class,
    empty_scene,
    finish_scene,
)


@pytest.mark.parametrize("kind", BUILDING_KINDS)
def test_scene_labels_agree_across_tasks(kind: str) -> None:
    rng = np.random.default_rng(3)
    scene = empty_scene(128, 128, rng)
    assert add_building(scene, rng, (64, 64), 80, kind=kind)
    scene = finish_scene(scene, rng)
    building = scene.building.astype(bool)
    assert ((scene.segments != SEGMENT_BACKGROUND) == building).all()
    assert ((scene.height > 0) == building).all()
    assert not scene.lines[:, ~building].any()
    assert (scene.superstructures[~building] == SUPERSTRUCTURE_BACKGROUND).all()
    faces = set(np.unique(scene.segments[building]).tolist())
    if kind == "flat":
        assert faces == {SEGMENT_FLAT}
        assert not scene.lines.any()
    else:
        assert SEGMENT_FLAT not in faces
        assert len(faces) == {"gable": 2, "hip": 4, "l_shaped": 4}[kind]
        assert scene.lines[0].any() and scene.lines[1].any()  # eave and ridge
        assert scene.lines[2].any() == (kind == "hip")
        assert scene.lines[3].any() == (kind == "l_shaped")


def test_segment_azimuth_is_the_downslope_direction_of_the_height_map() -> None:
    """Each face's class agrees with -grad(nDSM), also after augmentation (turns and mirrors)."""
    rng = np.random.default_rng(0)
    scene = empty_scene(128, 128, rng)
    assert add_building(scene, rng, (64, 64), 90, kind="hip")
    sample = {
        "segments": torch.from_numpy(scene.segments).long(),
        "height": torch.from_numpy(scene.height),
        "superstructures": torch.from_numpy(scene.superstructures).long(),
        "lines": torch.from_numpy(scene.lines).float(),
    }
    for seed in range(6):
        out = augment_sample(sample, torch.Generator().manual_seed(seed)) if seed else sample
        height = out["height"].numpy()
        d_south, d_east = np.gradient(height)
        interior = (
            (out["segments"].numpy() < SEGMENT_FLAT)
            & (out["superstructures"].numpy() == SUPERSTRUCTURE_BACKGROUND)
            & (torch.nn.functional.max_pool2d(out["lines"][None], 5, 1, 2)[0].amax(0).numpy() == 0)
        )
        expected = azimuth_class(-d_east[interior], -d_south[interior])
        agreement = (expected == out["segments"].numpy()[interior]).mean()
        assert interior.sum() > 500
        assert agreement > 0.95, f"seed {seed}: only {agreement:.2%} of face pixels agree"


def test_synthetic_data_is_written_in_the_real_layouts(synthetic_root: Path) -> None:
    rid = synthetic_root / "rid"
    assert len(list((rid / "images_roof_centered_geotiff").glob("*.tif"))) == 12
    mask = np.asarray(Image.open(next((rid / RID_SEGMENTS).glob("*.png"))))
    assert mask.ndim == 2 and mask.dtype == np.uint8 and mask.max() == SEGMENT_BACKGROUND
    supers = np.asarray(Image.open(next((rid / RID_SUPERSTRUCTURES).glob("*.png"))))
    assert supers.max() == SUPERSTRUCTURE_BACKGROUND
    for index in range(1, 6):
        test = read_rid_split(rid, "test", index)
        train, val = read_rid_split(rid, "train", index), read_rid_split(rid, "val", index)
        assert test == read_rid_split(rid, "test", 1)  # one shared test set
        assert not set(train) & set(val) and not set(train) & set(test)
    import rasterio

    with rasterio.open(next((rid / "images_roof_centered_geotiff").glob("*.tif"))) as src:
        # RID's images are EPSG:4326 at about 0.10 m: 1e-6 degrees, a little more in longitude at 48 N
        assert src.crs.to_epsg() == 4326 and 8.9e-7 < src.res[1] < 9.1e-7 and 1.3e-6 < src.res[0] < 1.4e-6
        assert 11.9 < src.bounds.left < 12.1 and 48.3 < src.bounds.top < 48.5
    imdb = synthetic_root / "roofline" / "imdb.mat"
    assert imdb.read_bytes()[:10] == b"MATLAB 7.3"
    with h5py.File(imdb, "r") as f:  # the real file: the struct imdb with three fields, 3 line channels
        assert list(f) == ["imdb"] and f["imdb"].attrs["MATLAB_class"] == b"struct"
        assert sorted(b"".join(field).decode() for field in f["imdb"].attrs["MATLAB_fields"]) == [
            "depths",
            "elements",
            "images",
        ]
        assert f["imdb/images"].shape == (12, 3, 64, 64) and f["imdb/images"].dtype == np.uint8
        assert f["imdb/depths"].shape == (12, 64, 64) and f["imdb/elements"].shape == (12, 3, 64, 64)
    airs = synthetic_root / "airs"
    assert len(list((airs / "train" / "image").glob("*.tif"))) == 2
    assert len(list((airs / "train" / "label").glob("*_vis.tif"))) == 2
    assert len(list((airs / "test" / "label").glob("*_vis.tif"))) == 1  # test/ is labelled too


def test_samples_hold_only_the_labels_their_dataset_has(synthetic_root: Path) -> None:
    rid = RIDDataset(synthetic_root / "rid", "train", 1, image_size=64)[0]
    assert set(rid) == {
        "pitch",
        "image",
        "segments",
        "superstructures",
        "annotated_roof",
        "metres_per_pixel",
        "dataset",
    }
    assert rid["image"].shape == (3, 64, 64) and rid["image"].dtype == torch.float32
    assert torch.equal(rid["annotated_roof"], (rid["segments"] != SEGMENT_BACKGROUND).float())
    # pitch from segments_reviewed.csv: a preset on every labelled roof pixel, ignored elsewhere
    assert torch.equal(rid["pitch"] != 255, rid["segments"] != SEGMENT_BACKGROUND)
    assert set(rid["pitch"].unique().tolist()) - {255} <= {2, 3, 4, 5}  # synthetic roofs: 25-45 degrees
    assert 0.099 < rid["metres_per_pixel"] < 0.101  # from degrees at the image's latitude
    roofline = RooflineDataset(synthetic_root / "roofline", "train", image_size=64)[0]
    assert set(roofline) == {"image", "lines", "line_channels", "height", "dataset"}
    assert roofline["lines"].shape == (3, 64, 64) and roofline["height"].max() > 2
    airs = AIRSDataset(synthetic_root / "airs", "train", image_size=128, random_crops=True, crops=5)
    sample = airs[0]
    assert set(sample) == {"image", "building", "metres_per_pixel", "dataset"}
    assert sample["image"].shape == (3, 128, 128) and sample["metres_per_pixel"] == pytest.approx(0.075)
    assert len(airs) == 5
    grid = AIRSDataset(synthetic_root / "airs", "val", image_size=256)
    assert len(grid) == 16  # 1024 / 256 squared: the whole tile, window by window


def test_roofline_reads_the_real_three_channel_file(tmp_path: Path, synthetic_root: Path) -> None:
    from roofnet.data.synthetic import SyntheticLayout, write_roofline

    write_roofline(
        tmp_path, SyntheticLayout(samples=4, roofline_size=32, valley_channel=False), np.random.default_rng(0)
    )
    sample = RooflineDataset(tmp_path, "train", val_fraction=0.25, image_size=32)[0]
    assert sample["lines"].shape == (3, 32, 32)
    assert sample["line_channels"].tolist() == [0, 1, 2]


def _roofline_arrays(n: int, height: int = 24, width: int = 40, channels: int = 4) -> tuple[np.ndarray, ...]:
    """Random non-square instances in numpy order, so a swapped H and W cannot go unnoticed."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, height, width, 3), dtype=np.uint8)
    depths = rng.uniform(0, 12, (n, height, width)).astype(np.float32)
    elements = rng.integers(0, 2, (n, height, width, channels), dtype=np.uint8)
    return images, depths, elements


def test_imdb_is_written_as_matlab_writes_it(tmp_path: Path) -> None:
    from roofnet.data.formats import write_imdb

    images, depths, elements = _roofline_arrays(5)
    write_imdb(tmp_path / "imdb.mat", images, depths, elements)
    with h5py.File(tmp_path / "imdb.mat", "r") as file:
        f = file["imdb"]  # the struct's fields
        # MATLAB's size [24 40 3 5] listed in reverse by HDF5; reversing every axis is MATLAB's view.
        assert f["images"].shape == (5, 3, 40, 24) and f["depths"].shape == (5, 40, 24)
        assert f["elements"].shape == (5, 4, 40, 24)
        assert np.array_equal(np.asarray(f["images"]).T, images.transpose(1, 2, 3, 0))  # [H W 3 N]
        assert np.array_equal(np.asarray(f["depths"]).T, depths.transpose(1, 2, 0))  # [H W N]
        assert (
            f["images"].attrs["MATLAB_class"] == b"uint8" and f["depths"].attrs["MATLAB_class"] == b"single"
        )
    header = (tmp_path / "imdb.mat").read_bytes()[:128]
    assert header.startswith(b"MATLAB 7.3 MAT-file") and header[124:] == b"\x00\x02IM"


def _matlab_to_hdf5(array: np.ndarray) -> np.ndarray:
    """How MATLAB (column-major) stores an array of its size `array.shape` in HDF5: axes reversed."""
    return np.ascontiguousarray(array.T)


# Each axis order as the test writes it with h5py, from numpy (N, H, W, C) arrays, independently of
# write_imdb: MATLAB's [H W C N], MATLAB's [H W C] with one instance, MATLAB's [N H W C], row-major.
WRITERS = {
    "MATLAB [H W C N]": lambda a: _matlab_to_hdf5(np.moveaxis(a, 0, -1)),
    "MATLAB [H W C] (one instance)": lambda a: _matlab_to_hdf5(a[0]),
    "MATLAB [N H W C]": _matlab_to_hdf5,
    "row-major (N, H, W, C)": np.ascontiguousarray,
}


@pytest.mark.parametrize(
    ("layout", "instances"),
    [
        ("MATLAB [H W C N]", 5),
        ("MATLAB [H W C] (one instance)", 1),
        ("MATLAB [N H W C]", 5),
        ("row-major (N, H, W, C)", 5),
        ("MATLAB [N H W C]", 3),  # 3 instances of 3 channels: the depths tell N from C
        ("row-major (N, H, W, C)", 3),
    ],
)
def test_roofline_reads_every_axis_order_a_file_can_have(tmp_path: Path, layout: str, instances: int) -> None:
    from roofnet.data.formats import RooflineFile

    images, depths, elements = _roofline_arrays(instances, channels=3)
    with h5py.File(tmp_path / "imdb.mat", "w") as f:
        for name, array in (("images", images), ("depths", depths), ("elements", elements)):
            f[name] = WRITERS[layout](array)
    file = RooflineFile(tmp_path / "imdb.mat")
    assert (file.layout, len(file), file.size, file.line_channels) == (layout, instances, (24, 40), 3)
    for i in range(instances):
        assert np.array_equal(file.image(i), images[i])
        assert np.array_equal(file.depth(i), depths[i])
        assert np.array_equal(file.elements(i), elements[i].transpose(2, 0, 1))


def test_roofline_axis_orders_the_sizes_cannot_tell_apart_are_refused(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "imdb.mat", "w") as f:  # 3 instances of 3 x 3 pixels
        f["images"] = np.zeros((3, 3, 3, 3), np.uint8)
        f["depths"] = np.zeros((3, 3, 3), np.float32)
        f["elements"] = np.zeros((3, 3, 3, 3), np.uint8)
    with pytest.raises(
        RoofDataError, match=r"imdb\.mat: ambiguous axis order: images \(3, 3, 3, 3\).*fit MATLAB"
    ):
        RooflineDataset(tmp_path)


@pytest.mark.parametrize(
    ("depths", "elements", "message"),
    [
        # depths written row-major beside MATLAB-order images: H and W disagree
        (
            (2, 24, 40),
            (2, 3, 40, 24),
            r"depths has shape \(2, 24, 40\); expected \(2, 40, 24\) to match images",
        ),
        ((2, 40, 24), (3, 3, 40, 24), r"elements has shape \(3, 3, 40, 24\); expected \(2, 3 or 4, 40, 24\)"),
        ((2, 40, 24), (2, 5, 40, 24), r"elements has shape \(2, 5, 40, 24\); expected \(2, 3 or 4, 40, 24\)"),
    ],
)
def test_roofline_arrays_that_disagree_are_named(tmp_path: Path, depths, elements, message: str) -> None:
    with h5py.File(tmp_path / "imdb.mat", "w") as f:
        f["images"] = np.zeros((2, 3, 40, 24), np.uint8)
        f["depths"] = np.zeros(depths, np.float32)
        f["elements"] = np.zeros(elements, np.uint8)
    with pytest.raises(RoofDataError, match=rf"imdb\.mat: {message}.*read as MATLAB \[H W C N\]"):
        RooflineDataset(tmp_path)


def test_resizing_keeps_one_pixel_lines(synthetic_root: Path) -> None:
    full = RooflineDataset(synthetic_root / "roofline", "train", image_size=64)[0]
    small = RooflineDataset(synthetic_root / "roofline", "train", image_size=32)[0]
    assert small["lines"].shape == (3, 32, 32)
    for channel in range(3):
        assert bool(full["lines"][channel].any()) == bool(small["lines"][channel].any())


def test_overlapping_windows_tile_the_image_exactly() -> None:
    starts = grid_starts(1000, 256, 192)
    assert starts[0] == 0 and starts[-1] == 1000 - 256
    bounds = keep_bounds(starts, 256, 1000)
    covered = np.zeros(1000, int)
    for (begin, end), start in zip(bounds, starts, strict=True):
        assert start <= begin < end <= start + 256
        covered[begin:end] += 1
    assert (covered == 1).all()


def test_datamodule_phases_follow_the_users_order(synthetic_root: Path) -> None:
    dm = RoofDataModule(str(synthetic_root), epochs_per_phase=2, batch_size=2, image_size=64, airs_crops=6)
    assert [dm.phase_of_epoch(e) for e in range(7)] == [
        "rid",
        "rid",
        "roofline",
        "roofline",
        "airs",
        "airs",
        "rid",
    ]
    dm.max_samples = 4
    batch = next(iter(dm.train_dataloader()))
    assert batch["dataset"] == ["rid", "rid"] and "lines" not in batch
    assert len(dm.train_dataloader().dataset) == 4  # the knob is read when the loader is built
    dm.image_size = 32
    assert next(iter(dm.train_dataloader()))["image"].shape == (2, 3, 32, 32)
    assert [b["dataset"][0] for b in (next(iter(loader)) for loader in dm.val_dataloader())] == [
        "rid",
        "roofline",
        "airs",
    ]


def test_mixed_mode_batches_come_from_one_dataset_each(synthetic_root: Path) -> None:
    dm = RoofDataModule(str(synthetic_root), mode="mixed", batch_size=2, image_size=64, max_samples=4)
    seen = []
    for batch in dm.train_dataloader():
        assert len(set(batch["dataset"])) == 1
        seen.append(batch["dataset"][0])
    assert sorted(seen) == ["airs", "airs", "rid", "rid", "roofline", "roofline"]


# -- bad input ----------------------------------------------------------------------------------------
def _copy_rid(synthetic_root: Path, tmp_path: Path) -> tuple[Path, str]:
    root = tmp_path / "rid"
    shutil.copytree(synthetic_root / "rid", root)
    return root, read_rid_split(root, "train", 1)[0]


def test_unreadable_image_names_the_file(synthetic_root: Path, tmp_path: Path) -> None:
    root, name = _copy_rid(synthetic_root, tmp_path)
    (root / "images_roof_centered_geotiff" / f"{name}.tif").write_bytes(b"not a tiff")
    with pytest.raises(RoofDataError, match=rf"{name}\.tif: unreadable"):
        RIDDataset(root, "train", 1, 64)[0]


def test_mask_of_another_size_names_both_sizes(synthetic_root: Path, tmp_path: Path) -> None:
    root, name = _copy_rid(synthetic_root, tmp_path)
    Image.fromarray(np.full((32, 48), 17, np.uint8)).save(root / RID_SEGMENTS / f"{name}.png")
    with pytest.raises(RoofDataError, match=rf"{name}\.png: mask is 32x48, its image is 64x64"):
        RIDDataset(root, "train", 1, 64)[0]


def test_unknown_mask_values_are_refused(synthetic_root: Path, tmp_path: Path) -> None:
    root, name = _copy_rid(synthetic_root, tmp_path)
    Image.fromarray(np.full((64, 64), 42, np.uint8)).save(root / RID_SUPERSTRUCTURES / f"{name}.png")
    with pytest.raises(RoofDataError, match=r"unknown mask values \[42\]; expected values in 0\.\.8"):
        RIDDataset(root, "train", 1, 64)[0]


def test_missing_split_file_lists_what_is_there(synthetic_root: Path, tmp_path: Path) -> None:
    root, _ = _copy_rid(synthetic_root, tmp_path)
    (root / RID_SPLITS / "train_filenames_3_rev.txt").unlink()
    with pytest.raises(RoofDataError, match=r"train_filenames_3_rev\.txt: missing split file.*found"):
        RIDDataset(root, "train", 3, 64)


def test_airs_label_values_must_be_binary(synthetic_root: Path, tmp_path: Path) -> None:
    from roofnet.data.formats import write_geotiff

    root = tmp_path / "airs"
    shutil.copytree(synthetic_root / "airs", root)
    label = next((root / "val" / "label").glob("christchurch_val_000.tif"))
    write_geotiff(label, np.full((1024, 1024), 255, np.uint8))
    with pytest.raises(RoofDataError, match=r"christchurch_val_000\.tif: unknown mask values \[255\]"):
        AIRSDataset(root, "val", 256)[0]


def test_roofline_with_wrong_shapes_is_refused(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "imdb.mat", "w") as f:
        f["images"] = np.zeros((2, 3, 8, 8), np.uint8)
        f["depths"] = np.zeros((2, 8, 9), np.float32)
        f["elements"] = np.zeros((2, 3, 8, 8), np.uint8)
    with pytest.raises(RoofDataError, match=r"imdb\.mat: depths has shape \(2, 8, 9\); expected \(2, 8, 8\)"):
        RooflineDataset(tmp_path)


def test_mixed_batches_are_split_between_ddp_processes() -> None:
    from roofnet.data.datamodule import HomogeneousBatchSampler

    sizes = [5, 4, 3]  # datasets at indices 0-4, 5-8, 9-11; batches of 2: 3 + 2 + 2 = 7 batches
    everything = list(HomogeneousBatchSampler(sizes, 2, seed=1))
    ranks = [list(HomogeneousBatchSampler(sizes, 2, seed=1, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == len(HomogeneousBatchSampler(sizes, 2, num_replicas=2)) == 3
    # Together the processes train the epoch's batches but the last (every process runs 3 steps),
    # each batch from one dataset, no sample twice.
    assert sorted(ranks[0] + ranks[1]) == sorted(everything[:6])
    for batch in ranks[0] + ranks[1]:
        assert len({0 if i < 5 else 1 if i < 9 else 2 for i in batch}) == 1
    seen = [i for batches in ranks for batch in batches for i in batch]
    assert len(seen) == len(set(seen)) == 12 - len(everything[6])


def test_mixed_batches_take_the_rank_of_the_sampler_lightning_injects() -> None:
    from torch.utils.data import BatchSampler, DistributedSampler

    from roofnet.data.datamodule import HomogeneousBatchSampler

    # With trainer.use_distributed_sampler true, Lightning re-creates a BatchSampler subclass with a
    # DistributedSampler as its `sampler` argument.
    assert issubclass(HomogeneousBatchSampler, BatchSampler)
    dataset = list(range(12))
    injected = [
        list(HomogeneousBatchSampler([5, 4, 3], 2, seed=1, sampler=DistributedSampler(dataset, 2, r)))
        for r in (0, 1)
    ]
    explicit = [list(HomogeneousBatchSampler([5, 4, 3], 2, seed=1, num_replicas=2, rank=r)) for r in (0, 1)]
    assert injected == explicit
    with pytest.raises(
        ValueError, match=r"rank 0 of 2 processes disagrees with the DistributedSampler's rank 1"
    ):
        HomogeneousBatchSampler([5], 2, num_replicas=2, rank=0, sampler=DistributedSampler(dataset, 2, 1))


def test_random_airs_windows_differ_between_processes_that_share_a_seed(synthetic_root: Path) -> None:
    # seed_everything gives every DDP process the same global RNG; their samplers hand them different
    # indices, which must give different windows.
    crops = AIRSDataset(synthetic_root / "airs", "train", image_size=64, random_crops=True, crops=4)
    windows = []
    for indices in ((0, 1), (2, 3)):  # rank 0's and rank 1's share of the crops
        torch.manual_seed(0)
        windows += [crops[i]["image"] for i in indices]
    assert not any(torch.equal(a, b) for i, a in enumerate(windows) for b in windows[i + 1 :])


def test_roofline_file_that_is_not_hdf5_is_named(tmp_path: Path) -> None:
    (tmp_path / "imdb.mat").write_bytes(b"MATLAB 5.0 MAT-file" + bytes(200))  # a pre-v7.3 .mat
    with pytest.raises(RoofDataError, match=r"imdb\.mat: unreadable; expected a MATLAB v7\.3 \(HDF5\) file"):
        RooflineDataset(tmp_path)
