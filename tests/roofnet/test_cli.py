"""The real `mtl` command line on the roofnet recipes: generate, fit through the phases, resume, export, predict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import yaml

from common.cli import main
from common.export import load_bundle
from roofnet.data import RIDDataset, RooflineDataset
from roofnet.tools import check
from tests.roofnet.batch_recorder import image_digest

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "configs/roofnet/quickstart.yaml"
SMALL = [
    "--trainer.limit_val_batches", "1",
    "--trainer.enable_progress_bar", "false",
    "--data.image_size", "32",
    "--data.batch_size", "2",
    "--data.max_val_samples", "2",
    "--data.synthetic_samples", "8",
    "--data.synthetic_image_size", "64",
    "--data.synthetic_airs_tile_size", "320",
    "--trainer.num_sanity_val_steps", "0",
    "--model.encoder", "tu-test_efficientnet",
    "--model.decoder_channels", "[16, 16, 16, 16, 16]",
]  # fmt: skip
TINY = ["--trainer.limit_train_batches", "2", *SMALL]


def _checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _adam_steps(checkpoint: dict) -> tuple[int, int]:
    """Adam's step count of the first shared encoder weight, and the largest over all parameters
    (heads without a label in a phase get no gradient there, so their counts lag behind)."""
    states = checkpoint["optimizer_states"][0]["state"]
    return int(states[0]["step"]), max(int(state["step"]) for state in states.values())


def test_generate_writes_all_three_layouts(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # in this process: the same command line without a subprocess's start-up
    generate = ["--out", "data", "--samples", "3", "--image_size", "32", "--airs_tile_size", "256"]
    main(["roofnet", "generate", *generate])
    assert len(list((tmp_path / "data/rid/images_roof_centered_geotiff").glob("*.tif"))) == 3
    assert (tmp_path / "data/roofline/imdb.mat").is_file()
    assert len(list((tmp_path / "data/airs/val/image").glob("*.tif"))) == 1
    assert (
        check(tmp_path / "data", image_size=64)["counts"]["airs/val"] == 16
    )  # the real loaders read every sample


def test_fit_through_phases_resume_export_and_predict(mtl, tmp_path: Path, monkeypatch) -> None:
    run = tmp_path / "runs/roofnet/quickstart"
    # Three epochs: RID, Roofline, AIRS, a checkpoint at the end of each phase (every 2 steps).
    every_phase = ["--checkpoint_every_n_steps", "2", "--keep_last_checkpoints", "-1"]
    mtl(
        [
            "fit",
            "--config",
            QUICKSTART,
            *TINY,
            *every_phase,
            "--trainer.max_epochs",
            "3",
            "--trainer.check_val_every_n_epoch",
            "3",
        ]
    )
    assert (tmp_path / ".cache/mtl/roofnet/synthetic/rid/masks_segments_reviewed").is_dir()  # synthesised
    phase_checkpoints = sorted((run / "checkpoints").glob("step*.ckpt"))
    assert [p.name for p in phase_checkpoints] == [
        "step00000002.ckpt",
        "step00000004.ckpt",
        "step00000006.ckpt",
    ]
    previous = None
    for step, path in zip((2, 4, 6), phase_checkpoints, strict=True):
        checkpoint = _checkpoint(path)
        # The optimizer carried on across the transition: Adam has counted every step so far.
        assert checkpoint["global_step"] == step and _adam_steps(checkpoint) == (step, step)
        weights = next(v for k, v in checkpoint["state_dict"].items() if k.startswith("model.encoder."))
        if previous is not None:
            assert not torch.equal(weights, previous)  # and the weights kept changing
        previous = weights
    assert (
        _checkpoint(run / "checkpoints/last.ckpt")["state_dict"]["image_std"].min() < 0.49
    )  # data statistics

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run), size_guidance={"images": 0}).Reload()
    assert {"overlay/rid", "overlay/roofline", "overlay/airs"} <= set(events.Tags()["images"])
    metrics = json.loads((run / "export/metrics.json").read_text())
    for key in (
        "val/segments_miou",
        "val/rid_annotated_roof_recall",
        "val/airs_boundary_iou",
        "val/airs_image_boundary_iou",
        "val/line_fscore",
    ):
        assert 0 <= metrics[key] <= 1, key
    assert metrics["val/height_rmse"] > 0 and metrics["val/airs_loss"] > 0

    # A later invocation resumes where the last one stopped and starts the next cycle with RID.
    # The first run was a subprocess, as a user types it; the later ones run in this process to save
    # the start-up time (the same `common.cli.main`).
    monkeypatch.chdir(tmp_path)
    main(["fit", "--config", str(QUICKSTART), *TINY, "--trainer.max_epochs", "4", "--ckpt_path", "last"])
    last = _checkpoint(run / "checkpoints/last.ckpt")
    assert last["global_step"] == 8 and _adam_steps(last) == (8, 8)
    assert json.loads((run / "export/metrics.json").read_text())["train/phase"] == 0.0

    # The checkpoint saved at the Roofline -> AIRS transition loads too, and goes on with AIRS.
    branch = ["--name", "roofnet/from-transition", "--ckpt_path", str(phase_checkpoints[1])]
    main(["fit", "--config", str(QUICKSTART), *TINY, "--trainer.max_epochs", "3", *branch])
    branched = tmp_path / "runs/roofnet/from-transition"
    assert _checkpoint(branched / "checkpoints/last.ckpt")["global_step"] == 6
    assert json.loads((branched / "export/metrics.json").read_text())["train/phase"] == 2.0

    bundle = load_bundle(run / "export")
    assert torch.equal(bundle.state_dict()["image_mean"], last["state_dict"]["image_mean"])
    with torch.no_grad():
        outputs = bundle(torch.rand(1, 3, 64, 64))
    assert outputs["segments"].shape == (1, 18, 64, 64) and outputs["height"].shape == (1, 64, 64)

    # Prediction on an AIRS tile: overlapping windows stitched into georeferenced rasters.
    tile = tmp_path / ".cache/mtl/roofnet/synthetic/airs/test/image/christchurch_test_000.tif"
    windows = [
        "--data.predict_path",
        tile.parent,
        "--data.predict_window",
        "256",
        "--data.predict_overlap",
        "32",
    ]
    main(["predict", "--config", str(QUICKSTART), *TINY, "--ckpt_path", "last", *map(str, windows)])
    with (
        rasterio.open(tile) as source,
        rasterio.open(run / "predictions/christchurch_test_000_lines.tif") as lines,
    ):
        assert (lines.count, lines.height, lines.width) == (4, source.height, source.width)
        assert lines.crs == source.crs and lines.transform == source.transform
    with rasterio.open(run / "predictions/christchurch_test_000_height.tif") as height:
        assert height.dtypes[0] == "float32" and np.isfinite(height.read(1)).all()
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["data"]["init_args"]["predict_path"] == str(tile.parent)

    # At a coarser training GSD: windows resampled to 15 cm and the outputs back to the tile's grid;
    # then the rasters become a GeoPackage a GIS opens, areas in m^2.
    coarse = [
        "--data.predict_gsd",
        "0.15",
        "--model.predict_out_dir",
        str(tmp_path / "coarse"),
        "--model.predict_vectors",
        "gpkg",
    ]
    main(["predict", "--config", str(QUICKSTART), *TINY, "--ckpt_path", "last", *map(str, windows), *coarse])
    with (
        rasterio.open(tile) as source,
        rasterio.open(tmp_path / "coarse/christchurch_test_000_segments.tif") as out,
    ):
        assert (out.height, out.width, out.transform) == (source.height, source.width, source.transform)
    import pyogrio

    verb = [
        "roofnet",
        "vectorize",
        "--rasters",
        str(tmp_path / "coarse"),
        "--out",
        str(tmp_path / "roofs.gpkg"),
    ]
    main(verb)
    for vectors in (tmp_path / "coarse/roofs.gpkg", tmp_path / "roofs.gpkg"):  # predict's, then the verb's
        layers = {name for name, _ in pyogrio.list_layers(vectors)}
        assert layers == {"buildings", "roof_segments", "superstructures", "roof_lines"}
        assert "area_m2" in pyogrio.read_info(vectors, layer="buildings")["fields"]


def test_scaling_recipe_climbs_a_small_ladder(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # in this process, as above
    scaling = {"ladder": {"max_samples": [4, 6], "image_size": [32, 64]}, "steps_per_stage": 2}
    callback = {"class_path": "common.callbacks.StagedScaling", "init_args": scaling}
    ladder = tmp_path / "ladder.yaml"
    ladder.write_text(yaml.safe_dump({"trainer": {"callbacks": [callback]}}))
    small = ["--data.num_workers", "0", "--data.max_samples", "4", "--trainer.max_epochs", "1"]
    main(
        [
            "fit",
            "--config",
            str(REPO / "configs/roofnet/scaling.yaml"),
            "--config",
            str(ladder),
            *TINY,
            *small,
        ]
    )
    run = tmp_path / "runs/roofnet/scaling"
    report = json.loads((run / "scaling.json").read_text())
    assert [stage["status"] for stage in report["stages"]] == ["passed"] * 3
    recommended = yaml.safe_load((run / "recommended.yaml").read_text())["data"]["init_args"]
    assert recommended == {"max_samples": 6, "image_size": 64}
    assert "(chosen)" in (run / "scaling.md").read_text()


@pytest.mark.ddp
def test_mixed_mode_under_ddp_shares_each_epoch_between_the_processes(mtl, tmp_path: Path) -> None:
    # What a user types on a two-GPU platform profile (strategy: ddp), on two CPU processes, without
    # setting trainer.use_distributed_sampler: the mixed batch sampler must split the batches itself.
    batches = tmp_path / "batches"
    recorder = {
        "class_path": "tests.roofnet.batch_recorder.BatchRecorder",
        "init_args": {"out_dir": str(batches)},
    }
    extra = tmp_path / "recorder.yaml"
    extra.write_text(yaml.safe_dump({"trainer": {"callbacks": [recorder]}}))
    ddp = ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]
    # 4 samples of each dataset per epoch in batches of 2: 6 batches, 3 per process and epoch.
    mixed = ["--data.mode", "mixed", "--data.max_samples", "4", "--data.augment", "false"]
    epochs = ["--trainer.max_epochs", "2", "--trainer.check_val_every_n_epoch", "1"]
    output = mtl(["fit", "--config", QUICKSTART, "--config", extra, *SMALL, *ddp, *mixed, *epochs]).stdout
    assert "Starting with 2 processes" in output

    run = tmp_path / "runs/roofnet/quickstart"
    assert _checkpoint(run / "checkpoints/last.ckpt")["global_step"] == 6
    assert json.loads((run / "export/metrics.json").read_text())["val/segments_miou"] >= 0
    records = {
        rank: [json.loads(line) for line in (batches / f"rank{rank}.jsonl").read_text().splitlines()]
        for rank in (0, 1)
    }
    assert [r["step"] for r in records[0]] == [r["step"] for r in records[1]] == list(range(6))

    data = tmp_path / ".cache/mtl/roofnet/synthetic"
    expected = {
        "rid": {image_digest(RIDDataset(data / "rid", "train", 1, 32)[i]["image"]) for i in range(4)},
        "roofline": {
            image_digest(RooflineDataset(data / "roofline", "train", 0.15, 32)[i]["image"]) for i in range(4)
        },
    }
    for epoch in (0, 1):
        seen: dict[str, list[str]] = {"rid": [], "roofline": [], "airs": []}
        for rank in (0, 1):
            for record in (r for r in records[rank] if r["epoch"] == epoch):
                assert len(record["dataset"]) == 1  # each batch from one dataset
                seen[record["dataset"][0]] += record["images"]
        # Together the two processes trained every sample of the epoch exactly once.
        assert sorted(seen["rid"]) == sorted(expected["rid"])
        assert sorted(seen["roofline"]) == sorted(expected["roofline"])
        assert len(seen["airs"]) == len(set(seen["airs"])) == 4  # random AIRS windows, none twice
