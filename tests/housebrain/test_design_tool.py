"""`mtl housebrain design` and `validate`: JSON, findings, an SVG per level and an OBJ massing model."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from housebrain.data.generator import find_design


def write_pair(directory: Path, floors: int = 2) -> tuple[Path, Path]:
    requirements, reply = find_design(0, floors=floors)
    req, design = directory / "req.json", directory / "design.json"
    req.write_text(json.dumps(requirements))
    design.write_text(json.dumps(reply))
    return req, design


def test_design_draws_every_level(housebrain_cli, tmp_path: Path) -> None:
    req, design = write_pair(tmp_path, floors=2)
    result = housebrain_cli(["design", "--requirements", req, "--design_file", design, "--out", "out"])
    assert result["passed"]
    for level in (0, 1):
        svg = (tmp_path / f"out/level_{level}.svg").read_text()
        assert svg.startswith("<svg") and svg.count("<polygon") == len(
            json.loads(design.read_text())["levels"][level]["rooms"]
        )
    obj = (tmp_path / "out/massing.obj").read_text()
    rooms = sum(len(level["rooms"]) for level in json.loads(design.read_text())["levels"])
    assert obj.count("\nv ") == 8 * rooms and obj.count("\nf ") == 6 * rooms
    assert json.loads((tmp_path / "out/findings.json").read_text())["passed"] is True
    glb = (tmp_path / "out/massing.glb").read_bytes()
    magic, version, length = struct.unpack("<4sII", glb[:12])
    assert (magic, version, length) == (b"glTF", 2, len(glb))
    chunk_length, kind = struct.unpack("<I4s", glb[12:20])
    gltf = json.loads(glb[20 : 20 + chunk_length])
    assert kind == b"JSON" and [a["count"] for a in gltf["accessors"]] == [8 * rooms, 36 * rooms]
    assert gltf["accessors"][0]["min"][1] == 0.0  # the ground floor stands on y = 0


def test_design_with_a_model_reports_findings(housebrain_cli, tmp_path: Path, tiny_model: Path) -> None:
    req, _ = write_pair(tmp_path, floors=1)
    housebrain_cli(
        ["design", "--requirements", req, "--model", tiny_model, "--out", "gen", "--max_new_tokens", "16"]
    )
    findings = json.loads((tmp_path / "gen/findings.json").read_text())
    assert findings["passed"] is False and findings["findings"]  # a random model does not write a house
    assert (tmp_path / "gen/design.json").is_file()


def test_validate_exits_nonzero_on_errors(
    housebrain_cli, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    req, design = write_pair(tmp_path, floors=1)
    housebrain_cli(["validate", "--requirements", req, "--design", design])
    data = json.loads(design.read_text())
    data["cost"]["total"] += 5000
    design.write_text(json.dumps(data) + "\n")
    with pytest.raises(SystemExit):
        housebrain_cli(["validate", "--requirements", req, "--design", design])
    assert '"rule": "total"' in capsys.readouterr().out
    design.write_text("the model wrote prose, no JSON\n")
    with pytest.raises(SystemExit):
        housebrain_cli(["validate", "--requirements", req, "--design", design])
    assert f"{design}: not valid JSON" in capsys.readouterr().out
    with pytest.raises(ValueError, match=r"req\.json: not valid JSON"):
        req.write_text("{plot")
        housebrain_cli(["validate", "--requirements", req, "--design", design])


def test_bad_requirements_name_file_and_field(housebrain_cli, tmp_path: Path) -> None:
    req, design = write_pair(tmp_path, floors=1)
    data = json.loads(req.read_text())
    data["floors"] = 0
    req.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"req\.json: invalid requirements: floors: Input should be greater"):
        housebrain_cli(["design", "--requirements", req, "--design_file", design])
