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
from housebrain.design.schema import (
    BATHROOM_TYPES,
    EXTERIOR,
    HABITABLE_TYPES,
    HouseDesign,
    HouseRefusal,
    Requirements,
)

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
# IRC R310.2.1: emergency escape openings: net clear opening not less than 5.7 ft^2 (0.53 m^2), net
# clear height not less than 24 in (610 mm), net clear width not less than 20 in (508 mm).
MIN_EGRESS_OPENING_M2 = 0.53
MIN_EGRESS_HEIGHT_M = 0.61
MIN_EGRESS_WIDTH_M = 0.508
# IRC R310.2.2: sill height not more than 44 in (1118 mm) above the floor.
MAX_EGRESS_SILL_M = 1.118
# IRC R311.7.5.1: riser height not more than 7-3/4 in (196 mm); R311.7.5.2: tread depth not less than
# 10 in (254 mm); R311.7.2: headroom not less than 6 ft 8 in (2032 mm); R311.7.6: a landing at the top
# and bottom of each stairway, not less than 36 in (914 mm) in the direction of travel.
MAX_RISER_M = 0.196
MIN_TREAD_M = 0.254
MIN_HEADROOM_M = 2.032
MIN_LANDING_M = 0.914
RISE_TOLERANCE_M = 0.02
# IRC R311.6: hallways not less than 3 ft (914 mm) wide.
MIN_HALL_WIDTH_M = 0.914
# IRC R307.1 / Figure R307.1: a water closet needs 15 in (381 mm) from its centre to a wall each side
# (762 mm) and 21 in (533 mm) clear in front; with a ~0.71 m deep WC a toilet room is at least
# 0.76 x 1.24 m. A full bathroom adds a 60 x 30 in (1524 x 762 mm) bathtub or shower beside them:
# at least 1.5 x 2.1 m (5 x 7 ft, the smallest full bathroom the clearances leave). The IRC fixes the
# clearances, not a room size; these sizes follow from them.
MIN_TOILET_ROOM_M = (0.76, 1.24)
MIN_BATHROOM_M = (1.5, 2.1)
# IRC R301.1: a complete load path; an upper room may not hang beyond the floor below by more than this.
MAX_UNSUPPORTED_M2 = 0.05
# A window needs a wall on the facade: at least this much of the room's outline is exterior wall.
MIN_FACADE_WALL_M = 0.6
#: Plausible unit rates in USD for the cost items the generator writes (US new construction; a range
#: wide enough for cheap and luxury builds, tight enough that a rate of 1 USD or 10^6 is caught).
PLAUSIBLE_RATES_USD = {
    ("construction", "m2"): (700.0, 6000.0),
    ("kitchen", "ea"): (5000.0, 100000.0),
    ("bathrooms", "ea"): (3000.0, 50000.0),
    ("windows", "m2"): (150.0, 2500.0),
    ("stairs", "ea"): (1500.0, 40000.0),
    ("garage", "m2"): (300.0, 2500.0),
    ("roof", "m2"): (40.0, 800.0),
}
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
    refusal: HouseRefusal | None = None

    @property
    def parsed(self) -> bool:
        return not any(f.category == "parse" for f in self.findings)

    @property
    def schema_valid(self) -> bool:
        return self.design is not None or self.refusal is not None

    @property
    def passed(self) -> bool:
        return self.schema_valid and not self.errors

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
        if "refusal" in design:
            report.refusal = HouseRefusal.model_validate(design)
            return None
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
    if report.refusal is not None:
        _check_refusal(requirements, report.refusal, report)
    if parsed is None:
        return report
    report.design = parsed
    _check_geometry(requirements, parsed, report)
    _check_facade(parsed, report)
    _check_code(parsed, report)
    _check_stairs(parsed, report)
    _check_house(parsed, report)
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
            if room.type == "bedroom":
                _check_egress(room, path, add)
            if room.type in ("hall", "utility") and ceiling < MIN_CEILING_HABITABLE_M:
                add(
                    Finding(
                        "code",
                        "IRC R305.1",
                        f"{room.id}: {room.type} ceiling {ceiling} m < {MIN_CEILING_HABITABLE_M} m",
                        path,
                    )
                )
            if room.type == "hall" and geometry.least_width(room) < MIN_HALL_WIDTH_M - 1e-6:
                add(
                    Finding(
                        "code",
                        "IRC R311.6",
                        f"{room.id}: hallway {geometry.least_width(room):.2f} m wide < {MIN_HALL_WIDTH_M} m",
                        path,
                    )
                )
            if room.type in BATHROOM_TYPES:
                _check_bathroom_size(room, path, add)
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
    if req.garage and not any(r.type == "garage" for r in rooms):
        add(Finding("requirements", "garage", "a garage was asked for; the design has none", "levels"))
    if req.accessible:
        ground = next((level for level in design.levels if level.level == 0), None)
        kinds = {r.type for r in ground.rooms} if ground else set()
        if not {"bedroom", "bathroom"} <= kinds:
            add(
                Finding(
                    "requirements",
                    "accessible",
                    "an accessible house needs a bedroom and a full bathroom on the ground floor",
                    "levels.0",
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
        plausible = PLAUSIBLE_RATES_USD.get((item.item, item.unit))
        if plausible and cost.currency == "USD" and not plausible[0] <= item.rate <= plausible[1]:
            add(
                Finding(
                    "cost",
                    "rate",
                    f"{item.item}: rate {item.rate} USD/{item.unit} outside the plausible "
                    f"{plausible[0]:.0f}..{plausible[1]:.0f}",
                    f"cost.items.{i}.rate",
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
    rooms = [r for level in design.levels for r in level.rooms]
    areas = {
        "construction": sum(geometry.area(r) for r in rooms if r.type != "garage"),
        "garage": sum(geometry.area(r) for r in rooms if r.type == "garage"),
    }
    for item in cost.items:
        area = areas.get(item.item)
        if item.unit == "m2" and area is not None and abs(item.qty - area) > AREA_TOLERANCE * max(area, 1.0):
            what = "garages" if item.item == "garage" else "rooms (garages apart)"
            add(
                Finding(
                    "cost",
                    "construction_area",
                    f"{item.item} priced for {item.qty} m2, {what} cover {area:.1f} m2",
                    "cost.items",
                )
            )


# ---- rules of a whole house: egress, bathrooms, facade, stairs, fixtures, garage, load path --------------
def _check_egress(room: Any, path: str, add: Any) -> None:
    """IRC R310.2.1 (net clear area, height, width) and R310.2.2 (sill height) of a bedroom's opening."""
    opening = room.egress
    if opening is None:
        add(Finding("code", "IRC R310.2.1", f"{room.id}: bedroom without an emergency escape opening", path))
        return
    problems = []
    if opening.w * opening.h < MIN_EGRESS_OPENING_M2 - 1e-6:
        problems.append(f"net clear opening {opening.w * opening.h:.2f} m2 < {MIN_EGRESS_OPENING_M2} m2")
    if opening.h < MIN_EGRESS_HEIGHT_M - 1e-6:
        problems.append(f"clear height {opening.h} m < {MIN_EGRESS_HEIGHT_M} m")
    if opening.w < MIN_EGRESS_WIDTH_M - 1e-6:
        problems.append(f"clear width {opening.w} m < {MIN_EGRESS_WIDTH_M} m")
    if opening.w * opening.h > room.window_m2 + 1e-6:
        problems.append(
            f"opening {opening.w * opening.h:.2f} m2 larger than the room's glazing {room.window_m2} m2"
        )
    if problems:
        add(Finding("code", "IRC R310.2.1", f"{room.id}: " + "; ".join(problems), f"{path}.egress"))
    if opening.sill > MAX_EGRESS_SILL_M + 1e-6:
        add(
            Finding(
                "code",
                "IRC R310.2.2",
                f"{room.id}: egress sill {opening.sill} m above the floor > {MAX_EGRESS_SILL_M} m",
                f"{path}.egress.sill",
            )
        )


def _check_bathroom_size(room: Any, path: str, add: Any) -> None:
    """IRC R307.1 fixture clearances as the smallest room that holds the fixtures its type implies."""
    x0, y0, x1, y1 = geometry.bounding_box(room)
    short, long = sorted((x1 - x0, y1 - y0))
    need = MIN_BATHROOM_M if room.type == "bathroom" else MIN_TOILET_ROOM_M
    if short < need[0] - 1e-6 or long < need[1] - 1e-6:
        fixtures = "WC, lavatory and bathtub/shower" if room.type == "bathroom" else "WC and lavatory"
        add(
            Finding(
                "code",
                "IRC R307.1",
                f"{room.id}: {short:.2f} x {long:.2f} m cannot hold a {fixtures} with their clearances "
                f"(at least {need[0]} x {need[1]} m)",
                path,
            )
        )


def _levels_by_number(design: HouseDesign) -> dict[int, tuple[int, Any]]:
    return {level.level: (li, level) for li, level in enumerate(design.levels)}


def _check_facade(design: HouseDesign, report: ValidationReport) -> None:
    """Windows only in rooms with an exterior wall (R303.1 "exterior glazed openings"); exterior doors
    only from ground-floor rooms with an exterior wall (R311.2: the egress door opens to the outside)."""
    add = report.findings.append
    for li, level in enumerate(design.levels):
        for ri, room in enumerate(level.rooms):
            path = _room_path(li, ri)
            exposed = geometry.exposed_wall(room, [r for r in level.rooms if r is not room])
            if room.window_m2 > 0 and exposed < MIN_FACADE_WALL_M:
                add(
                    Finding(
                        "geometry",
                        "window_on_facade",
                        f"{room.id}: {room.window_m2} m2 of windows but only {exposed:.2f} m of exterior wall",
                        f"{path}.window_m2",
                    )
                )
            if EXTERIOR in room.doors:
                if level.level != 0:
                    add(
                        Finding(
                            "geometry",
                            "exterior_door",
                            f"{room.id}: exterior door on level {level.level}; only ground-floor rooms open "
                            "to the outside",
                            f"{path}.doors",
                        )
                    )
                elif exposed < MIN_DOOR_WALL_M:
                    add(
                        Finding(
                            "geometry",
                            "exterior_door",
                            f"{room.id}: exterior door but only {exposed:.2f} m of exterior wall",
                            f"{path}.doors",
                        )
                    )


def _check_stairs(design: HouseDesign, report: ValidationReport) -> None:
    """IRC R311.7.5.1 risers, R311.7.5.2 treads, R311.7.6 landing and R311.7.2 headroom of each flight."""
    add = report.findings.append
    by_number = _levels_by_number(design)
    for li, level in enumerate(design.levels):
        above = by_number.get(level.level + 1)
        if above is None:
            continue
        for ri, room in enumerate(level.rooms):
            if room.type != "stairs":
                continue
            path = _room_path(li, ri)
            stair = room.stair
            if stair is None:
                add(
                    Finding(
                        "code",
                        "IRC R311.7.5",
                        f"{room.id}: stairs to level {level.level + 1} without risers and treads",
                        path,
                    )
                )
                continue
            rise = level.height_m + level.floor_m
            if (
                stair.riser_m > MAX_RISER_M + 1e-6
                or abs(stair.risers * stair.riser_m - rise) > RISE_TOLERANCE_M
            ):
                add(
                    Finding(
                        "code",
                        "IRC R311.7.5.1",
                        f"{room.id}: {stair.risers} risers of {stair.riser_m} m for a storey of {rise:.2f} m "
                        f"(risers at most {MAX_RISER_M} m, adding up to the storey)",
                        f"{path}.stair",
                    )
                )
            if stair.tread_m < MIN_TREAD_M - 1e-6:
                add(
                    Finding(
                        "code",
                        "IRC R311.7.5.2",
                        f"{room.id}: treads {stair.tread_m} m < {MIN_TREAD_M} m",
                        f"{path}.stair.tread_m",
                    )
                )
            x0, y0, x1, y1 = geometry.bounding_box(room)
            width, length = sorted((x1 - x0, y1 - y0))
            run = (stair.risers - 1) * stair.tread_m
            if length < run + MIN_LANDING_M - 1e-6:
                add(
                    Finding(
                        "code",
                        "IRC R311.7.6",
                        f"{room.id}: {length:.2f} m long; the run of {run:.2f} m and a {MIN_LANDING_M} m landing "
                        f"need {run + MIN_LANDING_M:.2f} m",
                        path,
                    )
                )
            openings = [r for r in above[1].rooms if r.type == "stairs"]
            covered = sum(geometry.overlap_area(room, r) for r in openings)
            if covered < min(run, length) * width - 0.05:
                add(
                    Finding(
                        "code",
                        "IRC R311.7.2",
                        f"{room.id}: the floor above covers the flight (only {covered:.2f} m2 of stair "
                        f"opening over {run * width:.2f} m2 of flight): headroom {level.height_m} m above "
                        f"the upper treads is less than {MIN_HEADROOM_M} m",
                        path,
                    )
                )
            if room.ceiling_m is not None and room.ceiling_m < MIN_HEADROOM_M:
                add(
                    Finding(
                        "code",
                        "IRC R311.7.2",
                        f"{room.id}: headroom {room.ceiling_m} m < {MIN_HEADROOM_M} m",
                        f"{path}.ceiling_m",
                    )
                )


def _check_house(design: HouseDesign, report: ValidationReport) -> None:
    """R306 fixtures, R302.5.1/R302.6 garage separation and the R301.1 load path of upper floors."""
    add = report.findings.append
    rooms = [room for level in design.levels for room in level.rooms]
    if not any(r.type == "kitchen" for r in rooms):
        add(
            Finding(
                "code", "IRC R306.2", "no kitchen (every dwelling needs a kitchen area with a sink)", "levels"
            )
        )
    if not any(r.type == "bathroom" for r in rooms):
        add(
            Finding(
                "code",
                "IRC R306.1",
                "no bathroom with a water closet, lavatory and bathtub or shower",
                "levels",
            )
        )
    by_id = {r.id: r for r in rooms}
    by_number = _levels_by_number(design)
    for li, level in enumerate(design.levels):
        for ri, room in enumerate(level.rooms):
            path = _room_path(li, ri)
            if room.type == "garage":
                linked = set(room.doors) | {r.id for r in rooms if room.id in r.doors}
                bedrooms = sorted(rid for rid in linked if rid in by_id and by_id[rid].type == "bedroom")
                if bedrooms:
                    add(
                        Finding(
                            "code",
                            "IRC R302.5.1",
                            f"{room.id}: door from the garage into sleeping room(s) {', '.join(bedrooms)}",
                            f"{path}.doors",
                        )
                    )
                above = by_number.get(level.level + 1)
                over = [
                    r.id
                    for r in (above[1].rooms if above else [])
                    if r.type in HABITABLE_TYPES and geometry.overlap_area(room, r) > 0.05
                ]
                need = "type_x_16mm" if over else "gypsum_13mm"
                if room.separation is None or (need == "type_x_16mm" and room.separation != need):
                    reason = f"habitable room(s) {', '.join(over)} above" if over else "walls to the house"
                    add(
                        Finding(
                            "code",
                            "IRC R302.6",
                            f"{room.id}: separation {room.separation!r}; {reason} need {need}",
                            f"{path}.separation",
                        )
                    )
        below = by_number.get(level.level - 1)
        if below is None:
            continue
        for ri, room in enumerate(level.rooms):
            carried = sum(geometry.overlap_area(room, r) for r in below[1].rooms)
            unsupported = geometry.area(room) - carried
            if unsupported > MAX_UNSUPPORTED_M2:
                add(
                    Finding(
                        "code",
                        "IRC R301.1",
                        f"{room.id}: {unsupported:.2f} m2 of it is not above level {level.level - 1} "
                        "(no load path to the foundation)",
                        _room_path(li, ri),
                    )
                )


def _check_refusal(req: Requirements, refusal: HouseRefusal, report: ValidationReport) -> None:
    """A refusal must name a limit the request actually breaks by its own numbers."""
    body = refusal.refusal
    buildable = (req.plot[0] - 2 * req.setback_m, req.plot[1] - 2 * req.setback_m)
    justified = []
    if "budget" in body.reasons and body.min_budget is not None and body.min_budget > req.budget:
        justified.append("budget")
    if "plot" in body.reasons and body.min_footprint_m is not None:
        w, d = body.min_footprint_m
        if w > buildable[0] + 1e-6 or d > buildable[1] + 1e-6:
            justified.append("plot")
    if not justified:
        add = report.findings.append
        add(
            Finding(
                "requirements",
                "refusal_justified",
                f"refusal for {body.reasons} but min_budget {body.min_budget} is within the budget "
                f"{req.budget:.0f} and min_footprint_m {body.min_footprint_m} fits the buildable "
                f"{buildable[0]:.1f} x {buildable[1]:.1f} m",
                "refusal",
            )
        )
