"""`validate_design(requirements, design)`: structured findings about a house design.

Each finding has a category (parse, schema, geometry, code, requirements, cost), a rule id, a severity
(error or warning), a JSON path into the design and a message. A design passes when it has no errors.

Building-code rules follow the 2021 International Residential Code (IRC); the section of each rule is
in the comment beside its threshold. Metric values are the IRC's imperial ones converted and rounded
the way the code's own metric editions do.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import ValidationError

from housebrain.design import geometry
from housebrain.design.schema import BATHROOM_TYPES, EXTERIOR, HABITABLE_TYPES, HouseDesign, Requirements

# IRC R304.1: habitable rooms shall have a floor area of not less than 70 ft^2 (6.5 m^2).
MIN_HABITABLE_AREA_M2 = 6.5
# IRC R304.2: habitable rooms shall be not less than 7 ft (2134 mm) in any horizontal dimension.
# Exception (R304.2/R304.3): kitchens.
MIN_HABITABLE_WIDTH_M = 2.13
# IRC R305.1: habitable space, hallways and bathrooms: ceiling height not less than 7 ft (2134 mm);
# R305.1 exception 3: bathrooms not less than 6 ft 8 in (2032 mm) over fixtures.
MIN_CEILING_HABITABLE_M = 2.13
MIN_CEILING_BATHROOM_M = 2.03
# IRC R303.1: habitable rooms: glazing area not less than 8% of the floor area.
MIN_GLAZING_FRACTION = 0.08
# IRC R303.3: bathrooms: glazing not less than 3 ft^2 (0.28 m^2), unless mechanically ventilated.
MIN_BATHROOM_GLAZING_M2 = 0.28
# IRC R310.2.1: emergency escape openings: net clear opening not less than 5.7 ft^2 (0.53 m^2).
MIN_EGRESS_OPENING_M2 = 0.53
# IRC R311.7.1: stairways not less than 36 in (914 mm) in clear width.
MIN_STAIR_WIDTH_M = 0.91
# IRC R311.2: at least one egress door to the exterior; a door needs a wall at least this long.
MIN_DOOR_WALL_M = 0.8
# Totals and cost items are rounded; beyond these tolerances they disagree with the rooms.
AREA_TOLERANCE = 0.02
MONEY_TOLERANCE = 0.01


@dataclass
class Finding:
    category: str
    rule: str
    message: str
    path: str = ""
    severity: str = "error"


@dataclass
class ValidationReport:
    findings: list[Finding] = field(default_factory=list)
    design: HouseDesign | None = None

    @property
    def parsed(self) -> bool:
        return not any(f.category == "parse" for f in self.findings)

    @property
    def schema_valid(self) -> bool:
        return self.design is not None

    @property
    def passed(self) -> bool:
        return self.design is not None and not self.errors

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "parsed": self.parsed,
            "schema_valid": self.schema_valid,
            "errors": len(self.errors),
            "warnings": len(self.findings) - len(self.errors),
            "findings": [asdict(f) for f in self.findings],
        }


def parse_design(design: str | dict | HouseDesign, report: ValidationReport) -> HouseDesign | None:
    """The design as a `HouseDesign`, or None with parse/schema findings added to `report`."""
    if isinstance(design, HouseDesign):
        return design
    if isinstance(design, str):
        try:
            design = json.loads(design)
        except json.JSONDecodeError as error:
            report.findings.append(Finding("parse", "json", f"not valid JSON: {error}"))
            return None
    if not isinstance(design, dict):
        report.findings.append(
            Finding("parse", "json", f"expected a JSON object, got {type(design).__name__}")
        )
        return None
    try:
        return HouseDesign.model_validate(design)
    except ValidationError as error:
        for item in error.errors():
            path = ".".join(str(p) for p in item["loc"])
            report.findings.append(Finding("schema", item["type"], item["msg"], path))
        return None


def validate_design(requirements: Requirements | dict, design: str | dict | HouseDesign) -> ValidationReport:
    """Check a design (JSON text, dict or model) against the requirements and the building code."""
    if not isinstance(requirements, Requirements):
        requirements = Requirements.model_validate(requirements)
    report = ValidationReport()
    parsed = parse_design(design, report)
    if parsed is None:
        return report
    report.design = parsed
    _check_geometry(requirements, parsed, report)
    _check_code(parsed, report)
    _check_requirements(requirements, parsed, report)
    _check_cost(parsed, report)
    code_errors = any(f.category == "code" and f.severity == "error" for f in report.findings)
    if parsed.compliance.passed == code_errors:
        report.findings.append(
            Finding(
                "code",
                "compliance_report",
                f"compliance.passed is {parsed.compliance.passed} but the code checks "
                f"{'fail' if code_errors else 'pass'}",
                "compliance.passed",
            )
        )
    return report


def _room_path(li: int, ri: int) -> str:
    return f"levels.{li}.rooms.{ri}"


def _check_geometry(req: Requirements, design: HouseDesign, report: ValidationReport) -> None:
    s = req.setback_m
    x_max, y_max = req.plot[0] - s, req.plot[1] - s
    tol = 1e-3
    add = report.findings.append
    levels_seen = set()
    ids: dict[str, tuple[int, int]] = {}
    for li, level in enumerate(design.levels):
        if level.level in levels_seen:
            add(
                Finding(
                    "geometry", "level_unique", f"level {level.level} appears twice", f"levels.{li}.level"
                )
            )
        levels_seen.add(level.level)
        for ri, room in enumerate(level.rooms):
            path = _room_path(li, ri)
            if room.id in ids or room.id == EXTERIOR:
                add(Finding("geometry", "room_id_unique", f"room id {room.id!r} is not unique", f"{path}.id"))
            ids[room.id] = (li, ri)
            x0, y0, x1, y1 = geometry.bounding_box(room)
            if x0 < s - tol or y0 < s - tol or x1 > x_max + tol or y1 > y_max + tol:
                add(
                    Finding(
                        "geometry",
                        "inside_plot",
                        f"room {room.id} spans x {x0:.2f}..{x1:.2f}, y {y0:.2f}..{y1:.2f}; the buildable area is "
                        f"x {s:.2f}..{x_max:.2f}, y {s:.2f}..{y_max:.2f} (plot {list(req.plot)}, setback {s} m)",
                        path,
                    )
                )
        rooms = level.rooms
        for i in range(len(rooms)):
            for j in range(i + 1, len(rooms)):
                shared = geometry.overlap_area(rooms[i], rooms[j])
                if shared > 0.01:
                    add(
                        Finding(
                            "geometry",
                            "no_overlap",
                            f"rooms {rooms[i].id} and {rooms[j].id} overlap by {shared:.2f} m2",
                            _room_path(li, j),
                        )
                    )
    _check_reachable(design, ids, report)


def _check_reachable(design: HouseDesign, ids: dict[str, tuple[int, int]], report: ValidationReport) -> None:
    """Every room must be reachable from the exterior through doors (stairs join consecutive levels)."""
    add = report.findings.append
    rooms = {room.id: room for level in design.levels for room in level.rooms}
    graph: dict[str, set[str]] = {rid: set() for rid in rooms}
    graph[EXTERIOR] = set()
    for rid, room in rooms.items():
        li, ri = ids[rid]
        for other in room.doors:
            if other != EXTERIOR and other not in rooms:
                add(
                    Finding(
                        "geometry",
                        "door_target",
                        f"door of {rid} leads to unknown room {other!r}",
                        _room_path(li, ri),
                    )
                )
                continue
            if other != EXTERIOR:
                if ids[other][0] != li:
                    add(
                        Finding(
                            "geometry",
                            "door_level",
                            f"door of {rid} leads to {other} on another level",
                            _room_path(li, ri),
                        )
                    )
                    continue
                if geometry.shared_wall(room, rooms[other]) < MIN_DOOR_WALL_M:
                    add(
                        Finding(
                            "geometry",
                            "door_wall",
                            f"door between {rid} and {other}: they share less than {MIN_DOOR_WALL_M} m of wall",
                            _room_path(li, ri),
                        )
                    )
                    continue
            graph[rid].add(other)
            graph[other].add(rid)
    stairs_by_level: dict[int, list[str]] = {}
    for level in design.levels:
        stairs_by_level[level.level] = [r.id for r in level.rooms if r.type == "stairs"]
    for level in design.levels:
        for below in stairs_by_level.get(level.level - 1, []):
            for above in stairs_by_level[level.level]:
                if geometry.overlap_area(rooms[below], rooms[above]) > 0.5:
                    graph[below].add(above)
                    graph[above].add(below)
    if not graph[EXTERIOR]:
        add(
            Finding(
                "geometry",
                "entrance",
                "no room has a door to the exterior (IRC R311.2 egress door)",
                "levels.0",
            )
        )
    seen = {EXTERIOR}
    queue = deque([EXTERIOR])
    while queue:
        for nxt in graph[queue.popleft()]:
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    for rid in rooms:
        if rid not in seen:
            li, ri = ids[rid]
            add(
                Finding(
                    "geometry",
                    "reachable",
                    f"room {rid} cannot be reached from the entrance",
                    _room_path(li, ri),
                )
            )


def _check_code(design: HouseDesign, report: ValidationReport) -> None:
    add = report.findings.append
    for li, level in enumerate(design.levels):
        for ri, room in enumerate(level.rooms):
            path = _room_path(li, ri)
            room_area = geometry.area(room)
            ceiling = room.ceiling_m or level.height_m
            if room.type in HABITABLE_TYPES:
                if room.type != "kitchen":
                    if room_area < MIN_HABITABLE_AREA_M2:
                        add(
                            Finding(
                                "code",
                                "IRC R304.1",
                                f"{room.id}: {room_area:.2f} m2 < {MIN_HABITABLE_AREA_M2} m2",
                                path,
                            )
                        )
                    width = geometry.least_width(room)
                    if width < MIN_HABITABLE_WIDTH_M:
                        add(
                            Finding(
                                "code",
                                "IRC R304.2",
                                f"{room.id}: {width:.2f} m wide < {MIN_HABITABLE_WIDTH_M} m",
                                path,
                            )
                        )
                if ceiling < MIN_CEILING_HABITABLE_M:
                    add(
                        Finding(
                            "code",
                            "IRC R305.1",
                            f"{room.id}: ceiling {ceiling} m < {MIN_CEILING_HABITABLE_M} m",
                            path,
                        )
                    )
                if room.window_m2 < MIN_GLAZING_FRACTION * room_area - 1e-6:
                    add(
                        Finding(
                            "code",
                            "IRC R303.1",
                            f"{room.id}: glazing {room.window_m2} m2 < 8% of {room_area:.2f} m2",
                            f"{path}.window_m2",
                        )
                    )
            if room.type == "bedroom" and room.window_m2 < MIN_EGRESS_OPENING_M2:
                add(
                    Finding(
                        "code",
                        "IRC R310.2.1",
                        f"{room.id}: no emergency escape opening of 0.53 m2",
                        f"{path}.window_m2",
                    )
                )
            if room.type in BATHROOM_TYPES:
                if ceiling < MIN_CEILING_BATHROOM_M:
                    add(
                        Finding(
                            "code",
                            "IRC R305.1",
                            f"{room.id}: ceiling {ceiling} m < {MIN_CEILING_BATHROOM_M} m",
                            path,
                        )
                    )
                if room.window_m2 < MIN_BATHROOM_GLAZING_M2:
                    add(
                        Finding(
                            "code",
                            "IRC R303.3",
                            f"{room.id}: no window; needs mechanical ventilation",
                            path,
                            severity="warning",
                        )
                    )
            if room.type == "stairs" and geometry.least_width(room) < MIN_STAIR_WIDTH_M:
                add(
                    Finding(
                        "code", "IRC R311.7.1", f"{room.id}: stair narrower than {MIN_STAIR_WIDTH_M} m", path
                    )
                )
        if li > 0 and not any(r.type == "stairs" for r in level.rooms):
            add(Finding("code", "IRC R311.7", f"level {level.level} has no stairs", f"levels.{li}"))


def _check_requirements(req: Requirements, design: HouseDesign, report: ValidationReport) -> None:
    add = report.findings.append
    rooms = [room for level in design.levels for room in level.rooms]
    bedrooms = sum(r.type == "bedroom" for r in rooms)
    bathrooms = sum(r.type == "bathroom" for r in rooms)
    total_area = sum(geometry.area(r) for r in rooms)
    if len(design.levels) != req.floors:
        add(
            Finding(
                "requirements", "floors", f"{len(design.levels)} levels, asked for {req.floors}", "levels"
            )
        )
    if bedrooms != req.bedrooms:
        add(Finding("requirements", "bedrooms", f"{bedrooms} bedrooms, asked for {req.bedrooms}", "levels"))
    if bathrooms < req.bathrooms:
        add(
            Finding(
                "requirements", "bathrooms", f"{bathrooms} bathrooms, asked for {req.bathrooms}", "levels"
            )
        )
    if design.cost.total > req.budget * (1 + MONEY_TOLERANCE):
        add(
            Finding(
                "requirements",
                "budget",
                f"cost {design.cost.total:.0f} over budget {req.budget:.0f}",
                "cost.total",
            )
        )
    if design.cost.currency != req.currency:
        add(
            Finding(
                "requirements",
                "currency",
                f"cost in {design.cost.currency}, asked for {req.currency}",
                "cost.currency",
            )
        )
    t = design.totals
    if abs(t.area_m2 - total_area) > AREA_TOLERANCE * max(total_area, 1.0):
        add(
            Finding(
                "requirements",
                "totals_area",
                f"totals.area_m2 {t.area_m2} but rooms add up to {total_area:.1f}",
                "totals.area_m2",
            )
        )
    if t.bedrooms != bedrooms or t.bathrooms != bathrooms:
        add(
            Finding(
                "requirements",
                "totals_counts",
                f"totals say {t.bedrooms} bedrooms/{t.bathrooms} bathrooms, rooms give {bedrooms}/{bathrooms}",
                "totals",
            )
        )


def _check_cost(design: HouseDesign, report: ValidationReport) -> None:
    add = report.findings.append
    cost = design.cost
    for i, item in enumerate(cost.items):
        expected = item.qty * item.rate
        if abs(item.amount - expected) > MONEY_TOLERANCE * max(expected, 1.0) + 1:
            add(
                Finding(
                    "cost",
                    "line_item",
                    f"{item.item}: {item.qty} x {item.rate} = {expected:.0f}, not {item.amount}",
                    f"cost.items.{i}",
                )
            )
    items_sum = sum(item.amount for item in cost.items)
    if abs(items_sum - cost.total) > MONEY_TOLERANCE * max(items_sum, 1.0) + 1:
        add(
            Finding(
                "cost",
                "total",
                f"line items add up to {items_sum:.0f}, total says {cost.total:.0f}",
                "cost.total",
            )
        )
    floor_items = [item for item in cost.items if item.unit == "m2" and item.item == "construction"]
    area = sum(geometry.area(r) for level in design.levels for r in level.rooms)
    for item in floor_items:
        if abs(item.qty - area) > AREA_TOLERANCE * max(area, 1.0):
            add(
                Finding(
                    "cost",
                    "construction_area",
                    f"construction priced for {item.qty} m2, rooms cover {area:.1f} m2",
                    "cost.items",
                )
            )
