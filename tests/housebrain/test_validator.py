"""The validator passes generated designs and catches each kind of defect with a named rule."""

from __future__ import annotations

import copy
import json

from housebrain.data.generator import requirements_from_prompt, sample
from housebrain.design.validator import validate_design


def pair(seed: int, floors: int | None = None) -> tuple[dict, dict]:
    for s in range(seed, seed + 200):
        messages = sample(s)["messages"]
        req = requirements_from_prompt(messages[1]["content"])
        if floors is None or req["floors"] == floors:
            return req, json.loads(messages[2]["content"])
    raise AssertionError("no sample with that many floors")


def rules(req: dict, design: object) -> set[str]:
    return {f.rule for f in validate_design(req, design).errors}


def room_of(design: dict, kind: str) -> dict:
    return next(r for level in design["levels"] for r in level["rooms"] if r["type"] == kind)


def test_generated_designs_pass_all_checks() -> None:
    for seed in range(60):
        messages = sample(seed)["messages"]
        report = validate_design(requirements_from_prompt(messages[1]["content"]), messages[2]["content"])
        assert report.passed, (seed, report.errors)


def test_parse_and_schema_findings() -> None:
    req, design = pair(0)
    report = validate_design(req, '{"levels": [')
    assert not report.parsed and not report.schema_valid and report.findings[0].category == "parse"
    broken = copy.deepcopy(design)
    del broken["totals"]
    broken["levels"][0]["rooms"][0]["type"] = "ballroom"
    report = validate_design(req, broken)
    assert report.parsed and not report.schema_valid
    paths = {f.path for f in report.findings}
    assert "totals" in paths and "levels.0.rooms.0.type" in paths


def test_geometry_overlap_outside_and_unreachable() -> None:
    req, design = pair(1)
    rooms = design["levels"][0]["rooms"]
    moved = copy.deepcopy(design)
    moved["levels"][0]["rooms"][-1]["rect"] = list(rooms[-2]["rect"])
    assert "no_overlap" in rules(req, moved)
    outside = copy.deepcopy(design)
    outside["levels"][0]["rooms"][1]["rect"][0] = req["plot"][0]
    assert "inside_plot" in rules(req, outside)
    shut = copy.deepcopy(design)
    shut["levels"][0]["rooms"][1]["doors"] = []
    others_link = any(rooms[1]["id"] in r.get("doors", []) for r in rooms)
    assert others_link or "reachable" in rules(req, shut)
    no_entrance = copy.deepcopy(design)
    for room in no_entrance["levels"][0]["rooms"]:
        room["doors"] = [d for d in room.get("doors", []) if d != "exterior"]
    assert {"entrance", "reachable"} <= rules(req, no_entrance)


def test_code_rules_with_kitchen_exception() -> None:
    req, design = pair(2)
    small = copy.deepcopy(design)
    bedroom = room_of(small, "bedroom")
    bedroom["rect"][2] = 2.0  # 2.0 m wide: too narrow (R304.2) and probably too small (R304.1)
    assert "IRC R304.2" in rules(req, small)
    kitchen_design = copy.deepcopy(design)
    kitchen = room_of(kitchen_design, "kitchen")
    kitchen["rect"][2] = 2.0
    kitchen["window_m2"] = 5.0
    assert not {"IRC R304.1", "IRC R304.2"} & rules(req, kitchen_design)
    dark = copy.deepcopy(design)
    room_of(dark, "living")["window_m2"] = 0.1
    assert "IRC R303.1" in rules(req, dark)
    low = copy.deepcopy(design)
    low["levels"][0]["height_m"] = 2.0
    assert "IRC R305.1" in rules(req, low)
    # the compliance report must agree with the checks
    assert "compliance_report" in rules(req, dark)


def test_stairs_required_between_levels() -> None:
    req, design = pair(5, floors=2)
    no_stairs = copy.deepcopy(design)
    no_stairs["levels"][1]["rooms"] = [r for r in no_stairs["levels"][1]["rooms"] if r["type"] != "stairs"]
    assert "IRC R311.7" in rules(req, no_stairs)


def test_requirements_and_cost_consistency() -> None:
    req, design = pair(3)
    assert "bedrooms" in rules({**req, "bedrooms": req["bedrooms"] + 1}, design)
    assert "budget" in rules({**req, "budget": design["cost"]["total"] / 2}, design)
    assert "floors" in rules({**req, "floors": req["floors"] + 1}, design)
    wrong = copy.deepcopy(design)
    wrong["cost"]["items"][0]["amount"] += 5000
    assert {"line_item", "total"} <= rules(req, wrong)
    area = copy.deepcopy(design)
    area["totals"]["area_m2"] *= 1.5
    assert "totals_area" in rules(req, area)


def test_polygon_rooms_have_area_and_overlap() -> None:
    req, design = pair(4)
    poly = copy.deepcopy(design)
    room = poly["levels"][0]["rooms"][-1]
    x, y, w, d = room.pop("rect")
    room["polygon"] = [[x, y], [x + w, y], [x + w, y + d], [x, y + d]]
    assert validate_design(req, poly).passed
    neighbour = poly["levels"][0]["rooms"][-2]
    nx, ny, nw, nd = neighbour["rect"]
    room["polygon"] = [[nx, ny], [nx + nw, ny], [nx + nw, ny + nd]]  # a triangle over the neighbour
    assert not validate_design(req, poly).passed
    assert "no_overlap" in rules(req, poly)
