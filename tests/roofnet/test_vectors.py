"""Prediction rasters -> GeoPackage / GeoJSON, read back with pyogrio (GDAL/OGR), areas in m^2."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import shapely
from rasterio.crs import CRS
from rasterio.transform import from_origin

from common.cli import main
from roofnet.data.formats import RoofDataError, write_geotiff
from roofnet.data.vectors import VectorOptions, pvgis_azimuth, utm_crs, vectorize_folder

LAT, LON = 48.40, 11.99  # Wartenberg, where RID's images are


def _write_prediction(folder: Path, stem: str, transform, crs: str | None) -> None:
    """A 10 m x 5 m gable roof at 0.1 m: north half class N (0), south half class S (8), a ridge line
    along the middle, a 1 m x 1 m chimney; a second, 2 m x 2 m flat building."""
    building = np.zeros((120, 200), np.uint8)
    building[10:60, 50:150] = 1
    building[80:100, 20:40] = 1
    segments = np.full(building.shape, 17, np.uint8)
    segments[10:35, 50:150] = 0
    pitch = np.zeros(building.shape, np.uint8)
    pitch[10:60, 50:150] = 35
    segments[35:60, 50:150] = 8
    segments[80:100, 20:40] = 16
    supers = np.full(building.shape, 8, np.uint8)
    supers[15:25, 60:70] = 4  # chimney
    lines = np.zeros((120, 200, 4), np.uint8)
    lines[34:36, 55:145, 1] = 230  # ridge, 9 m
    write_geotiff(folder / f"{stem}_building.tif", building, transform, crs)
    write_geotiff(folder / f"{stem}_segments.tif", segments, transform, crs)
    write_geotiff(folder / f"{stem}_superstructures.tif", supers, transform, crs)
    write_geotiff(folder / f"{stem}_lines.tif", lines, transform, crs)
    write_geotiff(folder / f"{stem}_pitch.tif", pitch, transform, crs)


def _geographic_transform(pixel_m: float = 0.1):
    return from_origin(LON, LAT, pixel_m / (111_320 * math.cos(math.radians(LAT))), pixel_m / 111_320)


def test_azimuth_conventions() -> None:
    assert [pvgis_azimuth(k) for k in (0, 4, 8, 12, 16)][:4] == [180.0, -90.0, 0.0, 90.0]  # N, E, S, W
    assert math.isnan(pvgis_azimuth(16))  # flat
    assert utm_crs(LON, LAT) == "EPSG:32632" and utm_crs(172.6, -43.5) == "EPSG:32759"  # Christchurch


@pytest.mark.parametrize(
    ("crs", "transform", "metric_epsg"),
    [
        ("EPSG:4326", _geographic_transform(), 32632),  # RID: degrees, reprojected to UTM 32N
        ("EPSG:2193", from_origin(1570000.0, 5180000.0, 0.1, 0.1), 2193),  # projected (NZTM): kept
    ],
)
def test_geopackage_round_trip_has_polygons_areas_azimuths_and_lines(
    tmp_path: Path, crs: str, transform, metric_epsg: int
) -> None:
    _write_prediction(tmp_path / "pred", "tile", transform, crs)
    counts = vectorize_folder(tmp_path / "pred", tmp_path / "roofs.gpkg", VectorOptions(simplify_m=0.05))
    assert counts == {"buildings": 2, "roof_segments": 3, "superstructures": 1, "roof_lines": 1}
    layers = [name for name, _ in pyogrio.list_layers(tmp_path / "roofs.gpkg")]
    assert sorted(layers) == ["buildings", "roof_lines", "roof_segments", "superstructures"]
    info = pyogrio.read_info(tmp_path / "roofs.gpkg", layer="buildings")
    assert CRS.from_user_input(info["crs"]).to_epsg() == metric_epsg
    _, _, geometry, fields = pyogrio.raw.read(tmp_path / "roofs.gpkg", layer="buildings")
    names = list(info["fields"])
    areas = sorted(fields[names.index("area_m2")])
    assert areas == pytest.approx([4.0, 50.0], rel=0.01)  # 2 m x 2 m and 10 m x 5 m
    assert sorted(shapely.area(shapely.from_wkb(geometry))) == pytest.approx(areas)
    info = pyogrio.read_info(tmp_path / "roofs.gpkg", layer="roof_segments")
    _, _, geometry, fields = pyogrio.raw.read(tmp_path / "roofs.gpkg", layer="roof_segments")
    rows = sorted(zip(*[list(f) for f in fields], strict=True), key=lambda row: str(row[2]))
    segment = {row[list(info["fields"]).index("azimuth_name")]: row for row in rows}
    column = list(info["fields"]).index
    assert set(segment) == {"N", "S", "flat"}
    assert segment["S"][column("pvgis_azimuth_deg")] == 0.0 and segment["S"][column("compass_deg")] == 180.0
    assert segment["N"][column("pvgis_azimuth_deg")] == 180.0 and segment["N"][column("pitch_deg")] == 35.0
    assert segment["flat"][column("pitch_deg")] == 0.0
    assert segment["N"][column("area_m2")] == pytest.approx(25.0, rel=0.01)
    info = pyogrio.read_info(tmp_path / "roofs.gpkg", layer="roof_lines")
    assert info["geometry_type"] == "LineString"
    _, _, geometry, fields = pyogrio.raw.read(tmp_path / "roofs.gpkg", layer="roof_lines")
    ridge = shapely.from_wkb(geometry[0])
    assert fields[list(info["fields"]).index("line_class")][0] == "ridge"
    assert ridge.length == pytest.approx(9.0, abs=0.3)
    _, _, geometry, fields = pyogrio.raw.read(tmp_path / "roofs.gpkg", layer="superstructures")
    assert list(
        fields[
            list(pyogrio.read_info(tmp_path / "roofs.gpkg", layer="superstructures")["fields"]).index(
                "class_name"
            )
        ]
    ) == ["chimney"]


def test_geojson_is_written_in_wgs84_with_a_layer_field(tmp_path: Path) -> None:
    _write_prediction(tmp_path / "pred", "tile", _geographic_transform(), "EPSG:4326")
    vectorize_folder(tmp_path / "pred", tmp_path / "roofs.geojson")
    info = pyogrio.read_info(tmp_path / "roofs.geojson")
    assert CRS.from_user_input(info["crs"]).to_epsg() == 4326 and info["features"] == 7
    _, _, geometry, fields = pyogrio.raw.read(tmp_path / "roofs.geojson")
    layer = list(fields[list(info["fields"]).index("layer")])
    assert layer.count("buildings") == 2 and layer.count("roof_lines") == 1
    bounds = shapely.bounds(shapely.from_wkb(geometry))
    assert np.all((bounds[:, 0] > LON - 0.01) & (bounds[:, 2] < LON + 0.01) & (bounds[:, 1] > LAT - 0.01))


def test_simplification_is_in_metres_and_configurable(tmp_path: Path) -> None:
    folder = tmp_path / "pred"
    circle = np.zeros((200, 200), np.uint8)
    yy, xx = np.mgrid[:200, :200]
    circle[(yy - 100) ** 2 + (xx - 100) ** 2 < 80**2] = 1  # a round building, 8 m radius at 0.1 m
    write_geotiff(
        folder / "round_building.tif", circle, from_origin(1570000.0, 5180000.0, 0.1, 0.1), "EPSG:2193"
    )
    vertices = {}
    for tolerance in (0.0, 0.5):
        out = tmp_path / f"round_{tolerance}.gpkg"
        vectorize_folder(folder, out, VectorOptions(simplify_m=tolerance))
        _, _, geometry, _ = pyogrio.raw.read(out, layer="buildings")
        vertices[tolerance] = shapely.get_num_coordinates(shapely.from_wkb(geometry[0]))
    assert vertices[0.5] < vertices[0.0] / 4


def test_vectorize_verb_refuses_to_overwrite_and_rasters_without_a_crs(tmp_path: Path, capsys) -> None:
    _write_prediction(tmp_path / "pred", "tile", _geographic_transform(), "EPSG:4326")
    args = [
        "roofnet",
        "vectorize",
        "--rasters",
        str(tmp_path / "pred"),
        "--out",
        str(tmp_path / "roofs.gpkg"),
    ]
    main(args)
    assert "buildings: 2" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 1
    assert "roofs.gpkg: exists; pass --overwrite true" in capsys.readouterr().err
    main([*args, "--overwrite", "true", "--simplify", "0.5"])
    _write_prediction(tmp_path / "plain", "photo", None, None)
    with pytest.raises(
        RoofDataError, match=r"photo_building\.tif: no CRS; areas in m\^2 need a georeferenced"
    ):
        vectorize_folder(tmp_path / "plain", tmp_path / "plain.gpkg")


def test_geographic_rasters_without_a_usable_scale_are_refused(tmp_path: Path) -> None:
    """EPSG:4326 with the one-degree placeholder transform of an image never georeferenced: no areas."""
    _write_prediction(tmp_path / "pred", "tile", from_origin(0.0, 60.0, 1.0, 1.0), "EPSG:4326")
    with pytest.raises(
        RoofDataError, match=r"tile_building\.tif: pixel size in metres 1\.11e\+05 m, expected"
    ):
        vectorize_folder(tmp_path / "pred", tmp_path / "roofs.gpkg")
