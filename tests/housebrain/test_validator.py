"""The validator passes generated designs and catches each kind of defect with a named rule.

Mutation tests: a generated design changed to break exactly one rule fails with exactly that rule
(for building-code rules the design's `compliance.passed` is set to false as well, so the report
agrees with the check and only the broken rule remains)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable

import pytest

from housebrain.data.generator import find_design, requirements_from_prompt, sample, sample_with_info
from housebrain.design import geometry
from housebrain.design.schema import Room
from housebrain.design.validator import validate_design


def pair(seed: int, floors: int | None = None) -> tuple[dict, dict]:
    return find_design(seed) if floors is None else find_design(seed, floors=floors)


def rules(req: dict, design: object) -> set[str]:
    return {f.rule for f in validate_design(req, design).errors}


def room_of(design: dict, kind: str, level: int | None = None) -> dict:
    return next(
        r
        for li, lv in enumerate(design["levels"])
        for r in lv["rooms"]
        if r["type"] == kind and (level is None or li == level)
    )


def find(predicate: Callable[[dict, dict, dict], bool], tries: int = 3000) -> tuple[dict, dict]:
    """The first generated (requirements, design) for which predicate(req, design, info) holds."""
    for seed in range(tries):
        record, info = sample_with_info(seed)
        messages = record["messages"]
        req, reply = requirements_from_prompt(messages[1]["content"]), json.loads(messages[2]["content"])
        if "levels" in reply and predicate(req, reply, info):
            return req, reply
    raise AssertionError("no generated design of that kind")


def refresh(design: dict) -> dict:
    """Totals and cost re-derived from the rooms (after a mutation that changes areas)."""
    rooms = [r for level in design["levels"] for r in level["rooms"]]

    def area(keep: Callable[[str], bool]) -> float:
        return sum(r["rect"][2] * r["rect"][3] for r in rooms if keep(r["type"]))

    design["totals"]["area_m2"] = round(area(lambda t: True), 1)
    for item in design["cost"]["items"]:
        if item["item"] == "construction":
            item["qty"] = round(area(lambda t: t != "garage"), 1)
        if item["item"] == "garage":
            item["qty"] = round(area(lambda t: t == "garage"), 1)
        item["amount"] = round(item["qty"] * item["rate"])
    design["cost"]["total"] = sum(item["amount"] for item in design["cost"]["items"])
    return design


def only(req: dict, design: dict, rule: str, code: bool = True) -> None:
    """Exactly `rule` fails (the compliance report admitting a code violation)."""
    if code:
        design["compliance"]["passed"] = False
    assert rules(req, design) == {rule}


def touches(a: dict, b: dict) -> float:
    return geometry.shared_wall(Room.model_validate(a), Room.model_validate(b))


def exposed(room: dict, level: dict) -> float:
    others = [Room.model_validate(r) for r in level["rooms"] if r is not room]
    return geometry.exposed_wall(Room.model_validate(room), others)


def test_generated_designs_and_refusals_pass_all_checks() -> None:
    kinds = set()
    for seed in range(80):
        messages = sample(seed)["messages"]
        report = validate_design(requirements_from_prompt(messages[1]["content"]), messages[2]["content"])
        assert report.passed, (seed, report.errors)
        kinds.add("refusal" if report.refusal else "design")
        if report.design:
            kinds |= {room.type for level in report.design.levels for room in level.rooms}
    assert {"refusal", "garage", "utility", "closet", "stairs", "bathroom", "toilet"} <= kinds


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


# ---- one mutation per rule ------------------------------------------------------------------------
def test_no_kitchen_breaks_r306_2() -> None:
    req, design = pair(0)
    room_of(design, "kitchen")["type"] = "dining"
    only(req, design, "IRC R306.2")


def test_no_full_bathroom_breaks_r306_1() -> None:
    req, design = find(lambda r, d, i: not r["accessible"])
    req["bathrooms"] = 0
    for level in design["levels"]:
        for room in level["rooms"]:
            if room["type"] == "bathroom":
                room["type"] = "toilet"
    design["totals"]["bathrooms"] = 0
    only(req, design, "IRC R306.1")


def test_low_hall_ceiling_breaks_r305_1() -> None:
    req, design = pair(0)
    room_of(design, "hall")["ceiling_m"] = 1.9
    only(req, design, "IRC R305.1")


def test_narrow_hallway_breaks_r311_6() -> None:
    req, design = find(
        lambda r, d, i: i["topology"].startswith("single_front") and not r["garage"] and r["floors"] == 1
    )
    hall = room_of(design, "hall")
    hall["rect"][1] = round(hall["rect"][1] + 0.4, 2)  # the street side moves in: 0.8 m wide
    hall["rect"][3] = 0.8
    only(req, refresh(design), "IRC R311.6")


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        ("riser", "IRC R311.7.5.1"),
        ("tread", "IRC R311.7.5.2"),
        ("headroom", "IRC R311.7.2"),
        ("no_flight", "IRC R311.7.5"),
    ],
)
def test_stair_rules(change: str, rule: str) -> None:
    req, design = pair(0, floors=2)
    stairs = room_of(design, "stairs", level=0)
    if change == "riser":  # one riser fewer: each taller than 196 mm
        stair = stairs["stair"]
        rise = stair["risers"] * stair["riser_m"]
        stair["risers"] -= 1
        stair["riser_m"] = round(rise / stair["risers"], 4)
    elif change == "tread":
        stairs["stair"]["tread_m"] = 0.22
    elif change == "headroom":
        stairs["ceiling_m"] = 1.9
    else:
        del stairs["stair"]
    only(req, design, rule)


def test_short_stair_run_breaks_r311_7_6() -> None:
    """The issue's 1.0 m stair: both stairs rooms shortened, keeping the end on the hall."""
    req, design = pair(0, floors=2)
    for li in (0, 1):
        stairs, hall = room_of(design, "stairs", li), room_of(design, "hall", li)
        if hall["rect"][0] > stairs["rect"][0]:  # mirrored: the hall is on the right
            stairs["rect"][0] = round(stairs["rect"][0] + stairs["rect"][2] - 1.0, 2)
        stairs["rect"][2] = 1.0
    only(req, refresh(design), "IRC R311.7.6")


def test_small_egress_opening_breaks_r310_2_1_and_high_sill_r310_2_2() -> None:
    req, design = pair(0)
    room_of(design, "bedroom")["egress"]["h"] = 0.5
    only(req, design, "IRC R310.2.1")
    req, design = pair(0)
    room_of(design, "bedroom")["egress"]["sill"] = 1.3
    only(req, design, "IRC R310.2.2")


def test_narrow_bathroom_breaks_r307_1() -> None:
    """A 0.7 m deep bathroom (the issue's 2.7 x 0.7 m), keeping the wall it shares with the hall."""
    req, design = find(
        lambda r, d, i: (
            r["floors"] == 1
            and i["topology"].startswith("double")
            and any(
                x["type"] == "bathroom" and "hall1" in x.get("doors", []) for x in d["levels"][0]["rooms"]
            )
        )
    )
    level = design["levels"][0]
    bathroom = next(r for r in level["rooms"] if r["type"] == "bathroom" and "hall1" in r.get("doors", []))
    hall = room_of(design, "hall")
    _, y, _, d = bathroom["rect"]
    if abs(y + d - hall["rect"][1]) < 1e-6:  # in front of the hall: keep the wall on the hall
        bathroom["rect"][1] = round(y + d - 0.7, 2)
    bathroom["rect"][3] = 0.7
    bathroom["window_m2"] = 0.3
    only(req, refresh(design), "IRC R307.1")


def test_garage_rules_r302_5_1_and_r302_6() -> None:
    def bedroom_beside_garage(req: dict, design: dict, info: dict) -> bool:
        ground = design["levels"][0]["rooms"]
        garage = next((r for r in ground if r["type"] == "garage"), None)
        return garage is not None and any(
            r["type"] == "bedroom" and touches(r, garage) >= 0.8 for r in ground
        )

    req, design = find(bedroom_beside_garage)
    ground = design["levels"][0]["rooms"]
    garage = room_of(design, "garage")
    bedroom = next(r for r in ground if r["type"] == "bedroom" and touches(r, garage) >= 0.8)
    garage["doors"].append(bedroom["id"])  # "a garage door into a bedroom"
    only(req, design, "IRC R302.5.1")
    req, design = find(bedroom_beside_garage)
    del room_of(design, "garage")["separation"]
    only(req, design, "IRC R302.6")


def test_overhanging_upper_floor_breaks_r301_1() -> None:
    def space_behind(req: dict, design: dict, info: dict) -> bool:
        depth = max(r["rect"][1] + r["rect"][3] for r in design["levels"][0]["rooms"])
        return req["floors"] == 2 and depth + 2.0 <= req["plot"][1] - req["setback_m"]

    req, design = find(space_behind)
    upper = design["levels"][1]
    back = max(r["rect"][1] + r["rect"][3] for r in upper["rooms"])
    room = next(
        r for r in upper["rooms"] if abs(r["rect"][1] + r["rect"][3] - back) < 1e-6 and r.get("window_m2")
    )
    room["rect"][3] = round(room["rect"][3] + 1.5, 2)  # 1.5 m out over the garden
    room["window_m2"] = round(0.1 * room["rect"][2] * room["rect"][3] + 1, 1)
    only(req, refresh(design), "IRC R301.1")


def test_exterior_doors_and_windows_only_on_the_facade() -> None:
    req, design = pair(0, floors=2)
    bedroom = room_of(design, "bedroom", level=1)
    bedroom.setdefault("doors", []).append("exterior")  # the only way out from an upper bedroom
    only(req, design, "exterior_door", code=False)

    def interior_hall(req: dict, design: dict, info: dict) -> bool:
        return exposed(room_of(design, "hall", 0), design["levels"][0]) < 0.3

    req, design = find(interior_hall)
    room_of(design, "hall", 0)["window_m2"] = 5.0  # a 5 m2 window on an interior corridor
    only(req, design, "window_on_facade", code=False)
    req, design = find(interior_hall)
    room_of(design, "hall", 0).setdefault("doors", []).append("exterior")
    only(req, design, "exterior_door", code=False)


def test_implausible_cost_rate() -> None:
    req, design = pair(0)
    item = design["cost"]["items"][0]
    item["rate"] = 1  # "every cost rate 1 USD"
    item["amount"] = round(item["qty"])
    design["cost"]["total"] = sum(i["amount"] for i in design["cost"]["items"])
    only(req, design, "rate", code=False)


def test_garage_and_accessibility_requests() -> None:
    req, design = find(lambda r, d, i: not r["garage"])
    only({**req, "garage": True}, design, "garage", code=False)
    req, design = find(
        lambda r, d, i: r["floors"] == 2 and not any(x["type"] == "bedroom" for x in d["levels"][0]["rooms"])
    )
    only({**req, "accessible": True}, design, "accessible", code=False)


def test_refusals_must_name_a_limit_the_request_breaks() -> None:
    req, _ = pair(0)
    unjustified = {"refusal": {"reasons": ["budget"], "min_budget": req["budget"] / 2}}
    assert rules(req, unjustified) == {"refusal_justified"}
    justified = {"refusal": {"reasons": ["budget"], "min_budget": req["budget"] * 2}}
    assert validate_design(req, justified).passed
    assert not validate_design(req, {"refusal": {"reasons": []}}).schema_valid
