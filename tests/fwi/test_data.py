"""Layouts, memory-mapped reading, validation errors, splits, normalisation and mirroring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fwi.data import FwiDataError, ShotGatherDataset, discover_pairs, mirror_sample
from fwi.data.datasets import BatchedReads, KaggleTestDataset, collate_skipping_bad, thread_batch_ring
from fwi.data.formats import kaggle_test_files
from fwi.data.normalization import denormalize_velocity, normalize_seismic, normalize_velocity, seismic_limits
from fwi.data.splits import make_split
from tests.fwi.conftest import copy_tree, save


def test_discovers_both_layouts_in_order(openfwi_root: Path) -> None:
    pairs = discover_pairs(openfwi_root)
    names = [(p.family, p.seismic.name, p.velocity.name, p.count) for p in pairs]
    assert names == [
        ("CurveFault-A", "seis2_1_0.npy", "vel2_1_0.npy", 4),
        ("CurveFault-A", "seis2_1_1.npy", "vel2_1_1.npy", 4),
        ("FlatVel-A", "data1.npy", "model1.npy", 4),
        ("FlatVel-A", "data2.npy", "model2.npy", 4),
        ("FlatVel-A", "data3.npy", "model3.npy", 4),
    ]


def test_kaggle_train_samples_folder_names(openfwi_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "train_samples"
    copy_tree(openfwi_root / "FlatVel-A", root / "FlatVel_A")
    pairs = discover_pairs(root)
    assert {p.family for p in pairs} == {"FlatVel-A"} and len(pairs) == 3
    single = discover_pairs(root / "FlatVel_A", family="flatvel_a")
    assert [p.seismic for p in single] == [p.seismic for p in pairs]


def test_dataset_reads_memory_mapped_samples_equal_to_files(openfwi_root: Path) -> None:
    pairs = discover_pairs(openfwi_root)
    dataset = ShotGatherDataset(pairs)
    assert len(dataset) == 20
    sample = dataset[9]  # third file (data1.npy after two CurveFault files), row 1
    pair, row = dataset.locate(9)
    assert (pair.seismic.name, row) == ("data1.npy", 1)
    expected = np.load(pair.seismic)[row]
    assert sample["seismic"].shape == (5, 1000, 70) and sample["velocity"].shape == (1, 70, 70)
    np.testing.assert_array_equal(sample["seismic"].numpy(), expected)
    assert sample["family"] == 0 and 1500 <= sample["velocity"].min() <= sample["velocity"].max() <= 4500
    assert all(isinstance(a, np.memmap) for a in dataset._maps.values())
    capped = ShotGatherDataset(pairs, max_open_files=2)
    for i in range(len(capped)):  # all 5 files, never more than 2 open
        assert torch.equal(capped[i]["seismic"], dataset[i]["seismic"]) and len(capped._maps) <= 2
    assert len(ShotGatherDataset(pairs, max_samples=5)) == 5
    plain = next(iter(torch.utils.data.DataLoader(dataset, batch_size=4)))  # default_collate works
    batched = next(
        iter(
            torch.utils.data.DataLoader(BatchedReads(dataset), batch_size=4, collate_fn=collate_skipping_bad)
        )
    )
    assert torch.equal(plain["seismic"], batched["seismic"]) and torch.equal(
        plain["velocity"], batched["velocity"]
    )
    assert batched["family"].tolist() == [6, 6, 6, 6]


def test_wrong_shape_truncated_and_unpaired_files_are_named(openfwi_root: Path, tmp_path: Path) -> None:
    root = copy_tree(openfwi_root / "FlatVel-A", tmp_path / "FlatVel-A")
    save(root / "data/data2.npy", np.zeros((4, 5, 999, 70), np.float32))
    with pytest.raises(FwiDataError, match=r"data2\.npy: expected \(N, 5, 1000, 70\).*got \(4, 5, 999, 70\)"):
        discover_pairs(tmp_path)
    (root / "data/data2.npy").unlink()
    with pytest.raises(FwiDataError, match=r"model2\.npy: velocity file without its seismic file"):
        discover_pairs(tmp_path)
    (root / "model/model2.npy").unlink()
    data3 = root / "data/data3.npy"
    data3.write_bytes(data3.read_bytes()[:-1000])
    with pytest.raises(FwiDataError, match=r"data3\.npy: truncated"):
        discover_pairs(tmp_path)
    save(root / "data/data3.npy", np.zeros((4, 5, 1000, 70), np.int16))
    with pytest.raises(FwiDataError, match=r"data3\.npy: expected .*float32.*got dtype int16"):
        discover_pairs(tmp_path)
    (root / "model/model1.npy").unlink()
    with pytest.raises(FwiDataError, match=r"data1\.npy: no velocity file: expected its pair .*model1\.npy"):
        discover_pairs(tmp_path)
    with pytest.raises(FwiDataError, match="no usable seismic files"):
        discover_pairs(tmp_path, on_bad="skip")  # data1 (no pair) and data3 (int16) skipped, nothing left


def test_skip_mode_keeps_the_good_files(openfwi_root: Path, tmp_path: Path) -> None:
    root = copy_tree(openfwi_root / "FlatVel-A", tmp_path / "FlatVel-A")
    save(root / "data/data3.npy", np.zeros((4, 5, 1000, 70), np.float64))
    pairs = discover_pairs(tmp_path, on_bad="skip")
    assert [p.seismic.name for p in pairs] == ["data1.npy", "data2.npy"]


def test_nan_sample_is_an_error_or_a_counted_skip(openfwi_root: Path, tmp_path: Path) -> None:
    root = copy_tree(openfwi_root / "FlatVel-A", tmp_path / "FlatVel-A")
    data = np.load(root / "data/data1.npy")
    data[2, 0, 10, 5] = np.nan
    np.save(root / "data/data1.npy", data)
    pairs = discover_pairs(tmp_path)
    with pytest.raises(FwiDataError, match=r"data1\.npy: sample 2: 1 NaN/inf"):
        ShotGatherDataset(pairs)[2]
    skipping = ShotGatherDataset(pairs, on_bad="skip")
    batch = collate_skipping_bad([skipping[i] for i in range(4)])
    assert batch["seismic"].shape[0] == 3 and skipping.skipped == 1
    batch = skipping.read_batch([0, 1, 2, 3])
    assert batch["seismic"].shape[0] == 3 and skipping.skipped == 2
    np.testing.assert_array_equal(batch["seismic"][2].numpy(), data[3])


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_float16_nan_and_inf_are_found_but_its_largest_values_are_not(
    openfwi_root: Path, tmp_path: Path, bad_value: float
) -> None:
    root = tmp_path / "FlatVel-A"
    (root / "data").mkdir(parents=True)
    (root / "model").mkdir()
    save(root / "model/model1.npy", np.load(openfwi_root / "FlatVel-A/model/model1.npy"))
    data = np.load(openfwi_root / "FlatVel-A/data/data1.npy").astype(np.float16)
    data[0, 0, 0, 0], data[1, 0, 0, 0] = 65504.0, -65504.0  # float16's largest finite values
    data[3, 4, 999, 69] = bad_value
    np.save(root / "data/data1.npy", data)
    dataset = ShotGatherDataset(discover_pairs(tmp_path), on_bad="skip")
    loader = torch.utils.data.DataLoader(
        BatchedReads(dataset), batch_size=4, num_workers=1, collate_fn=collate_skipping_bad
    )
    (batch,) = list(loader)  # read in a worker, into shared memory
    assert batch["seismic"].dtype == torch.float16 and batch["seismic"].shape[0] == 3
    np.testing.assert_array_equal(batch["seismic"].numpy(), data[:3])
    with pytest.raises(FwiDataError, match=r"data1\.npy: sample 3: 1 NaN/inf"):
        ShotGatherDataset(discover_pairs(tmp_path))[3]


def test_kaggle_test_files(openfwi_root: Path, tmp_path: Path) -> None:
    gathers = np.load(openfwi_root / "FlatVel-A/data/data1.npy")
    for i in range(3):
        save(tmp_path / f"{1000 + i}.npy", gathers[i])
    dataset = KaggleTestDataset(kaggle_test_files(tmp_path))
    assert [dataset[i]["oid"] for i in range(3)] == ["1000", "1001", "1002"]
    save(tmp_path / "bad.npy", gathers[:2])
    with pytest.raises(FwiDataError, match=r"bad\.npy: expected \(5, 1000, 70\)"):
        KaggleTestDataset(kaggle_test_files(tmp_path))[3]


def test_splits_are_by_file_and_disjoint(openfwi_root: Path) -> None:
    pairs = discover_pairs(openfwi_root)
    files = make_split(pairs, "files", val_fraction=0.34)
    assert [p.seismic.name for p in files["val"]] == ["seis2_1_1.npy", "data3.npy"]
    assert len(files["train"]) == 3 and not files["test"]
    folds = [make_split(pairs, "kfold", folds=2, fold=k) for k in range(2)]
    val_names = [{p.seismic for p in f["val"]} for f in folds]
    assert not val_names[0] & val_names[1] and val_names[0] | val_names[1] == {p.seismic for p in pairs}
    held = make_split(pairs, "leave_family_out", holdout_family="curvefault_a")
    assert {p.family for p in held["val"]} == {"CurveFault-A"} and {p.family for p in held["train"]} == {
        "FlatVel-A"
    }
    with pytest.raises(ValueError, match="Style-A is not in the data"):
        make_split(pairs, "leave_family_out", holdout_family="Style-A")


def test_normalisation_maps_training_data_to_unit_range(openfwi_root: Path) -> None:
    pairs = discover_pairs(openfwi_root)
    low, high = seismic_limits(pairs, samples_per_file=None)
    assert np.isfinite(low[[0, 6]]).all() and np.isnan(low[1])  # FlatVel-A and CurveFault-A only
    seismic = torch.from_numpy(np.load(pairs[2].seismic))
    x = normalize_seismic(seismic, torch.tensor(low[0]), torch.tensor(high[0]))
    assert x.min().item() == pytest.approx(-1, abs=1e-5) or x.min() >= -1 - 1e-5
    assert x.min() >= -1 - 1e-5 and x.max() <= 1 + 1e-5
    v = torch.tensor([1500.0, 3000.0, 4500.0])
    assert normalize_velocity(v).tolist() == [-1.0, 0.0, 1.0]
    assert torch.allclose(denormalize_velocity(normalize_velocity(v)), v)


def test_mirror_of_flat_model_is_the_same_survey(openfwi_root: Path) -> None:
    """A laterally invariant model mirrored is itself: with the middle-source shift the gathers match."""
    seismic = torch.from_numpy(np.load(openfwi_root / "FlatVel-A/data/data1.npy")[0])
    velocity = torch.from_numpy(np.load(openfwi_root / "FlatVel-A/model/model1.npy")[0])
    scale = seismic.abs().max()
    shifted, flipped = mirror_sample(seismic, velocity, middle="shift")
    assert torch.equal(flipped, velocity)  # flat layers
    outer = [0, 1, 3, 4]
    assert (shifted[outer] - seismic[outer]).abs().max() < 1e-3 * scale
    assert (shifted[2, :, :-1] - seismic[2, :, :-1]).abs().max() < 1e-3 * scale
    kept, _ = mirror_sample(seismic, velocity, middle="keep")
    assert (kept[2] - seismic[2]).abs().max() > 1e-2 * scale  # the 10 m source offset is visible
    again, _ = mirror_sample(kept, None, middle="keep")
    assert torch.equal(again, seismic)


def test_splits_verb_lists_every_fold_and_holdout(openfwi_root: Path, capsys) -> None:
    from fwi.tools import splits

    folds = splits(root=str(openfwi_root), split="kfold", folds=2)
    assert list(folds) == ["fold 0", "fold 1"]
    assert "FlatVel-A: FlatVel-A/data/data2.npy (4)" in folds["fold 1"]["val"]
    held = splits(root=str(openfwi_root), split="leave_family_out")
    assert list(held) == ["holdout CurveFault-A", "holdout FlatVel-A"]
    assert len(held["holdout FlatVel-A"]["val"]) == 3 and len(held["holdout FlatVel-A"]["train"]) == 2
    assert '"fold 0"' in capsys.readouterr().out


def test_check_verb_reports_families_and_bad_samples(openfwi_root: Path, tmp_path: Path) -> None:
    from fwi.tools import check

    report = check(root=str(openfwi_root))
    assert report["files"] == 5 and report["families"]["FlatVel-A"] == {
        "files": 3,
        "samples": 12,
        "dtypes": ["float32"],
    }
    root = copy_tree(openfwi_root / "CurveFault-A", tmp_path / "CurveFault-A")
    velocity = np.load(root / "vel2_1_1.npy")
    velocity[1, 0, 0, 0] = np.nan
    np.save(root / "vel2_1_1.npy", velocity)
    assert check(root=str(tmp_path))["bad_samples"] == []  # headers only without --scan
    with pytest.raises(FwiDataError, match=r"vel2_1_1\.npy: sample 1: NaN/inf"):
        check(root=str(tmp_path), scan=True)
    report = check(root=str(tmp_path), scan=True, on_bad="skip")
    assert len(report["bad_samples"]) == 1 and "vel2_1_1.npy: sample 1" in report["bad_samples"][0]


def test_velocity_maps_outside_1500_4500_are_errors_naming_file_and_sample(
    openfwi_root: Path, tmp_path: Path
) -> None:
    """km/s maps (1.5-4.5) and maps beyond 4500 m/s stop check --scan and training; 4503 m/s is allowed."""
    from fwi.tools import check

    root = copy_tree(openfwi_root / "FlatVel-A", tmp_path / "FlatVel-A")
    velocity = np.load(root / "model/model2.npy")
    velocity[1] = 4503.0  # within the 5 m/s tolerance
    velocity[2] /= 1000.0  # km/s
    np.save(root / "model/model2.npy", velocity)
    with pytest.raises(FwiDataError, match=r"model2\.npy: sample 2: velocities span .* look like km/s"):
        check(root=str(tmp_path), scan=True)
    report = check(root=str(tmp_path), scan=True, on_bad="skip")
    assert len(report["bad_samples"]) == 1 and "model2.npy: sample 2" in report["bad_samples"][0]

    dataset = ShotGatherDataset(discover_pairs(tmp_path))
    assert dataset[5]["velocity"].max() == 4503.0
    with pytest.raises(FwiDataError, match=r"model2\.npy: sample 2: .*multiply by 1000"):
        dataset[6]
    velocity[2] = 5200.0
    np.save(root / "model/model2.npy", velocity)
    with pytest.raises(FwiDataError, match=r"model2\.npy: sample 2: velocities span 5200\.\.5200") as error:
        ShotGatherDataset(discover_pairs(tmp_path))[6]
    assert "km/s" not in str(error.value)


def test_openfwi_split_uses_the_official_file_lists() -> None:
    from fwi.data.formats import FilePair

    def pairs(family: str, names: list[str]) -> list[FilePair]:
        return [FilePair(Path(name), Path("unused.npy"), family, 500) for name in names]

    vel = pairs("FlatVel-A", [f"data/data{i}.npy" for i in (1, 48, 49, 60, 61)])
    fault = pairs("CurveFault-B", [f"seis{p}_1_{i}.npy" for p in (6, 8) for i in (0, 31, 32, 35, 36)])
    wrong_prefix = pairs("CurveFault-B", ["seis2_1_0.npy"])
    style = pairs("Style-A", [f"data/data{i}.npy" for i in (120, 121, 134)])
    split = make_split(vel + fault + wrong_prefix + style, "openfwi")
    names = {part: [f"{p.family}:{p.seismic.name}" for p in files] for part, files in split.items()}
    assert names["train"] == [
        "FlatVel-A:data1.npy",
        "FlatVel-A:data48.npy",
        "CurveFault-B:seis6_1_0.npy",
        "CurveFault-B:seis6_1_31.npy",
        "CurveFault-B:seis8_1_0.npy",
        "CurveFault-B:seis8_1_31.npy",
        "Style-A:data120.npy",
    ]
    assert (
        names["val"]
        == names["test"]
        == [
            "FlatVel-A:data49.npy",
            "FlatVel-A:data60.npy",
            "CurveFault-B:seis6_1_32.npy",
            "CurveFault-B:seis6_1_35.npy",
            "CurveFault-B:seis8_1_32.npy",
            "CurveFault-B:seis8_1_35.npy",
            "Style-A:data121.npy",
            "Style-A:data134.npy",
        ]
    )


def test_openfwi_limits_and_drop_last(openfwi_root: Path) -> None:
    from fwi.data import FwiDataModule
    from fwi.data.families import FAMILIES
    from fwi.data.normalization import OPENFWI_UNION_LIMITS

    data = FwiDataModule(
        root=str(openfwi_root), split="openfwi", seismic_limits="openfwi", batch_size=3, num_workers=0
    )
    data.setup("fit")
    assert len(data.splits["train"]) == 5 and not data.splits["val"]  # files 1-3 and 0-1: all train
    assert data.seismic_low[FAMILIES.index("CurveFault-B")] == -24.93
    assert data.seismic_high[FAMILIES.index("FlatVel-A")] == 52.77
    assert (data.seismic_low.min(), data.seismic_high.max()) == OPENFWI_UNION_LIMITS == (-29.04, 57.03)
    batches = [batch["seismic"].shape[0] for batch in data.train_dataloader()]
    assert batches == [3] * 6  # 20 samples: the last 2 are dropped
    keep = FwiDataModule(root=str(openfwi_root), batch_size=64, num_workers=0)
    keep.setup("fit")  # fewer training samples than one batch: the incomplete batch is kept
    assert [batch["seismic"].shape[0] for batch in keep.train_dataloader()] == [
        len(keep._dataset("train", True))
    ]


@pytest.mark.parametrize("worker_type", ["process", "thread"])
def test_workers_reuse_batches_without_corrupting_them(openfwi_root: Path, worker_type: str) -> None:
    """A loader with the ring, consumed as a Lightning loop does (the batch trained on and the one
    fetched ahead both intact); thread workers read as many threads as asked."""
    from common.thread_workers import ThreadedDataLoader

    pairs = discover_pairs(openfwi_root)
    plain = ShotGatherDataset(pairs)
    threads = 2 if worker_type == "thread" else 0
    ring = thread_batch_ring(threads) if threads else 4
    loader = ThreadedDataLoader(
        BatchedReads(ShotGatherDataset(pairs, batch_ring=ring)),
        batch_size=2,
        num_workers=0 if threads else 1,
        worker_threads=threads,
        collate_fn=collate_skipping_bad,
    )
    for _ in range(2):  # the second epoch writes into the ring's buffers again
        held = None
        for index, batch in enumerate(loader):
            if held is not None:  # the batch trained on, checked after the next one was fetched
                expected = torch.stack([plain[2 * (index - 1) + j]["seismic"] for j in range(2)])
                assert torch.equal(held["seismic"], expected), index
            held = batch
        assert index == 9


def test_thread_workers_train_the_batches_of_worker_processes(openfwi_root: Path) -> None:
    """The datamodule's thread loader gives the process loader's batches, mirror flips reproducible."""
    import lightning.pytorch as pl

    from fwi.data import FwiDataModule

    def epoch(worker_type: str, workers: int) -> list[dict]:
        pl.seed_everything(5, workers=True)
        module = FwiDataModule(
            root=str(openfwi_root),
            batch_size=4,
            num_workers=workers,
            worker_type=worker_type,
            mirror_probability=0.5,
        )
        module.setup("fit")
        return [{k: v.clone() for k, v in batch.items()} for batch in module.train_dataloader()]

    processes, threads, again = epoch("process", 1), epoch("thread", 2), epoch("thread", 1)
    assert len(processes) == len(threads) == len(again) > 1
    for a, b, c in zip(processes, threads, again, strict=True):
        mirrored = b["mirrored"]
        assert torch.equal(b["mirrored"], c["mirrored"]) and torch.equal(b["seismic"], c["seismic"])
        keep = ~(a["mirrored"] | mirrored)  # samples neither loader flipped are the same samples
        assert torch.equal(a["seismic"][keep], b["seismic"][keep])
        assert torch.equal(a["velocity"][keep], b["velocity"][keep])
    flips = torch.cat([b["mirrored"] for b in threads])
    assert 0 < int(flips.sum()) < len(flips)
