"""The datasets' layouts as they ship (and the variants found in the wild), read by the real loaders.

Roofline: the struct /imdb of the real file and arrays at the root; images uint8 or float in [0, 1];
elements 0/1 or 0/255. RID: the download's `RID_dataset/` and `m1655470/RID_dataset/` nesting, the
TUMFTM/RID repository's `data/` + `segmentation_model_data/` arrangement, EPSG:4326 and projected
images. AIRS: labelled test tiles, labels saved as three equal bands.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import rasterio

from roofnet.data import AIRSDataset, RIDDataset, RoofDataError, RoofDataModule, RooflineDataset
from roofnet.data.formats import RID_SPLITS, RooflineFile, write_geotiff, write_imdb
from roofnet.data.synthetic import SyntheticLayout, write_rid


def _arrays(n: int = 4, height: int = 24, width: int = 40):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (n, height, width, 3), dtype=np.uint8)
    depths = rng.uniform(0, 12, (n, height, width)).astype(np.float32)
    elements = rng.integers(0, 2, (n, height, width, 3), dtype=np.uint8)
    return images, depths, elements


@pytest.mark.parametrize("struct", ["imdb", None])
def test_roofline_reads_the_struct_group_and_the_root_layout(tmp_path: Path, struct: str | None) -> None:
    images, depths, elements = _arrays()
    write_imdb(tmp_path / "imdb.mat", images, depths, elements, struct=struct)
    with h5py.File(tmp_path / "imdb.mat", "r") as f:
        assert ("imdb" in f) == (struct is not None) and ("images" in f) == (struct is None)
    file = RooflineFile(tmp_path / "imdb.mat")
    assert file.group == ("/imdb" if struct else "/") and file.line_channels == 3
    assert np.array_equal(file.image(2), images[2]) and np.array_equal(file.depth(2), depths[2])
    assert np.array_equal(file.elements(2), elements[2].transpose(2, 0, 1))


def test_roofline_struct_of_another_name_is_found(tmp_path: Path) -> None:
    images, depths, elements = _arrays()
    write_imdb(tmp_path / "imdb.mat", images, depths, elements, struct="data")
    assert RooflineFile(tmp_path / "imdb.mat").group == "/data"


def test_roofline_converts_float_images_and_0_255_elements(tmp_path: Path) -> None:
    images, depths, elements = _arrays()
    write_imdb(
        tmp_path / "imdb.mat",
        images.astype(np.float32) / 255,
        depths,
        elements * np.uint8(255),
        struct="imdb",
    )
    file = RooflineFile(tmp_path / "imdb.mat")
    assert file.dtypes["images"] == np.float32
    image = file.image(1)
    assert image.dtype == np.uint8 and np.array_equal(image, images[1])  # scaled once, not twice
    assert np.array_equal(file.elements(1), elements[1].transpose(2, 0, 1))
    sample = RooflineDataset(tmp_path, "train", val_fraction=0.25, image_size=32)[0]
    assert sample["image"].min() >= 0.0 and sample["image"].max() <= 1.0 and sample["image"].max() > 0.9
    assert set(sample["lines"].unique().tolist()) == {0.0, 1.0}


@pytest.mark.parametrize(
    ("images_scale", "elements_value", "message"),
    [
        (1.0, 1, r"imdb/images\[0\]: float image values must be in \[0, 1\], found 0\.\.25[0-9]"),
        (1 / 255, 7, r"imdb/elements\[0\]: expected 0/1 or 0/255 values, found \[0, 7\]"),
    ],
)
def test_roofline_values_out_of_range_are_named(
    tmp_path: Path, images_scale, elements_value, message
) -> None:
    images, depths, elements = _arrays()
    write_imdb(
        tmp_path / "imdb.mat",
        images.astype(np.float32) * images_scale,
        depths,
        elements * np.uint8(elements_value),
    )
    file = RooflineFile(tmp_path / "imdb.mat")
    with pytest.raises(RoofDataError, match=message):
        file.image(0)
        file.elements(0)


def test_roofline_without_its_arrays_says_where_it_looked(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "imdb.mat", "w") as f:
        f.create_group("imdb")["images"] = np.zeros((2, 3, 8, 8), np.uint8)
        f["meta"] = np.zeros(3)
    with pytest.raises(
        RoofDataError, match=r"imdb\.mat: no images, depths and elements.*found /imdb/, /meta"
    ):
        RooflineFile(tmp_path / "imdb.mat")


@pytest.fixture(scope="module")
def rid_flat(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rid") / "flat"
    write_rid(out, SyntheticLayout(samples=8, rid_size=32), np.random.default_rng(0))
    return out


def _nest(source: Path, target: Path) -> None:
    shutil.copytree(source, target)


@pytest.mark.parametrize("nesting", ["RID_dataset", "m1655470/RID_dataset"])
def test_rid_download_nesting_is_found(rid_flat: Path, tmp_path: Path, nesting: str) -> None:
    _nest(rid_flat, tmp_path / nesting)
    dataset = RIDDataset(tmp_path, "train", 1, image_size=32)
    assert (
        dataset.root == tmp_path / nesting and len(dataset) > 0 and dataset[0]["segments"].shape == (32, 32)
    )


def test_rid_repository_arrangement_with_the_split_folder_in_segmentation_model_data(
    rid_flat: Path, tmp_path: Path
) -> None:
    """TUMFTM/RID's README: split folder into segmentation_model_data/, other folders into data/."""
    _nest(rid_flat, tmp_path / "data")
    shutil.move(tmp_path / "data" / RID_SPLITS, tmp_path / "segmentation_model_data" / RID_SPLITS)
    dataset = RIDDataset(tmp_path, "val", 2, image_size=32)
    assert dataset.root == tmp_path / "data" and len(dataset) > 0


def test_rid_elsewhere_says_what_it_looked_for(tmp_path: Path) -> None:
    (tmp_path / "masks_segments_reviewed").mkdir()
    with pytest.raises(
        RoofDataError, match=r"no images_roof_centered_geotiff/ folder \(looked in \./, RID_dataset/"
    ):
        RIDDataset(tmp_path, "train", 1)


def test_rid_images_in_a_projected_crs_read_too(tmp_path: Path) -> None:
    write_rid(
        tmp_path, SyntheticLayout(samples=4, rid_size=32, rid_crs="EPSG:25832"), np.random.default_rng(0)
    )
    with rasterio.open(next((tmp_path / "images_roof_centered_geotiff").glob("*.tif"))) as src:
        assert src.crs.to_epsg() == 25832
    assert RIDDataset(tmp_path, "test", 1, image_size=32)[0]["metres_per_pixel"] == pytest.approx(0.1)


def test_airs_test_stage_uses_the_labelled_test_tiles(synthetic_root: Path) -> None:
    datamodule = RoofDataModule(str(synthetic_root), phases=["airs"], image_size=256, synthetic_samples=0)
    test = datamodule.dataset("airs", train=False, test=True)
    assert [image.parent.parent.name for image, _ in test.pairs] == ["test"]
    assert "building" in test[0]


def test_airs_test_stage_without_test_labels_falls_back_to_val_and_warns(
    synthetic_root: Path, tmp_path: Path
) -> None:
    root = tmp_path / "airs"
    shutil.copytree(synthetic_root / "airs", root)
    shutil.rmtree(root / "test" / "label")
    datamodule = RoofDataModule(str(tmp_path), phases=["airs"], image_size=256, synthetic_samples=0)
    with pytest.warns(UserWarning, match=r"test/label: no labels for every test tile"):
        test = datamodule.dataset("airs", train=False, test=True)
    assert [image.parent.parent.name for image, _ in test.pairs] == ["val"]


def test_airs_labels_as_three_equal_bands_read_as_one(synthetic_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "airs"
    shutil.copytree(synthetic_root / "airs", root)
    label = root / "val" / "label" / "christchurch_val_000.tif"
    with rasterio.open(label) as src:
        single, transform, crs = src.read(1), src.transform, src.crs
    write_geotiff(label, np.stack([single] * 3, axis=-1), transform, crs.to_string(), tiled=True)
    sample = AIRSDataset(root, "val", 256)[5]
    with rasterio.open(label) as src:
        assert src.count == 3
    expected = single[256:512, 256:512].astype(np.float32)
    assert np.array_equal(sample["building"].numpy(), expected) and expected.any()
    bands = np.stack([single, single, 1 - single], axis=-1)
    write_geotiff(label, bands, transform, crs.to_string(), tiled=True)
    with pytest.raises(
        RoofDataError, match=r"christchurch_val_000\.tif: expected a single-band mask.*3 bands"
    ):
        AIRSDataset(root, "val", 256)[0]


def test_three_instances_of_three_line_channels_read_as_matlab_writes_them(tmp_path: Path) -> None:
    """(3, 3, 32, 32) also fits [N H W C] as 32 images of 32 x 3 px; no roof image is 3 px wide."""
    images, depths, elements = _arrays(n=3, height=32, width=32)
    write_imdb(tmp_path / "imdb.mat", images, depths, elements)
    file = RooflineFile(tmp_path / "imdb.mat")
    assert (file.layout, len(file), file.size) == ("MATLAB [H W C N]", 3, (32, 32))
    assert np.array_equal(file.image(2), images[2])


def test_rid_segments_csv_in_its_real_columns_rasterises_slopes(tmp_path: Path) -> None:
    """TUMFTM/RID's segments_reviewed.csv: extra columns, WKT in (lat lon) order, azimuth 0 = south,
    empty azimuth for flat roofs, slopes from presets (a few rows hold e.g. 33, some none)."""
    import csv
    import math

    from rasterio.transform import from_origin

    from roofnet.data.formats import PITCH_IGNORE, PITCH_PRESETS, RIDPitch

    lat, lon = 48.40, 11.99
    dlon, dlat = 0.1 / (111_320 * math.cos(math.radians(lat))), 0.1 / 111_320
    transform = from_origin(lon, lat, dlon, dlat)
    write_geotiff(tmp_path / "img.tif", np.zeros((40, 40, 3), np.uint8), transform, "EPSG:4326")

    def box_wkt(row0, row1, col0, col1):  # pixel rows/cols -> MULTIPOLYGON in lat lon order
        corners = [(col0, row0), (col1, row0), (col1, row1), (col0, row1), (col0, row0)]
        points = [transform * corner for corner in corners]
        return "MULTIPOLYGON (((" + ", ".join(f"{y!r} {x!r}" for x, y in points) + ")))"

    rows = [
        (box_wkt(0, 20, 0, 40), "-3.2", "35.0"),  # south-facing, 35 degrees
        (box_wkt(20, 30, 0, 40), "", "33.0"),  # not a preset: nearest, 35
        (box_wkt(30, 40, 0, 20), "91.0", ""),  # no slope: ignored
    ]
    with open(tmp_path / "segments_reviewed.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["", "Unnamed: 0", "id", "pv_area_id", "time_created", "segment", "gutter", "azimuth", "slope"]
        )
        for index, (wkt, azimuth, slope) in enumerate(rows):
            writer.writerow(
                [
                    index,
                    index,
                    index + 1,
                    7,
                    "2021-08-13 12:30:50",
                    wkt,
                    "MULTILINESTRING EMPTY",
                    azimuth,
                    slope,
                ]
            )
    pitch = RIDPitch(tmp_path / "segments_reviewed.csv").raster(tmp_path / "img.tif", (40, 40))
    thirty_five = PITCH_PRESETS.index(35)
    assert (pitch[2:18, 2:38] == thirty_five).all() and (pitch[22:28, 2:38] == thirty_five).all()
    assert (pitch[32:, :] == PITCH_IGNORE).all()


def test_rid_segments_csv_without_its_columns_is_named(tmp_path: Path) -> None:
    from roofnet.data.formats import read_rid_segments_csv

    (tmp_path / "segments_reviewed.csv").write_text("id,geometry\n1,POINT (0 0)\n")
    with pytest.raises(RoofDataError, match=r"segments_reviewed\.csv: expected RID's segment columns"):
        read_rid_segments_csv(tmp_path / "segments_reviewed.csv")
