"""Procedural house requests and the designs (or refusals) that answer them, as chat JSONL for SFT.

The request comes first and is sampled on its own: plot width and depth (independently, so shapes
vary from wide and shallow to narrow and deep), setback, budget (log-uniform), floors, bedrooms,
bathrooms, garage, style and accessibility. The design is then solved to fit it:

1. the room program follows the request and the style: open plan (modern, minimalist: no dining
   room), separate dining and study (traditional, colonial), a garage beside the ground floor,
   utility, storage, walk-in closets and ensuites where the program has room for them, a ground-floor
   bedroom and bathroom for an accessible house;
2. a topology: `double` (front row | corridor | back row), `single_front` (corridor on the street,
   rooms behind) or `single_back` (rooms on the street, corridor behind), mirrored or not; the stairs
   are a straight flight at the end of the corridor, its risers and treads from the storey height
   (IRC R311.7.5) plus a 0.95 m landing (R311.7.6);
3. sizes: the largest that fit the buildable area and a cost of at most the budget (starting from
   a generosity drawn per request, shrinking towards the minimum room sizes);
4. when the minimum design does not fit, optional rooms (study, dining, storage, closets, utility)
   are dropped and the notes say so; when even that does not fit, the answer is a refusal naming the
   binding limit (`budget` with the cheapest design's cost, or `plot` with the smallest footprint).

So the budget no longer encodes the cost: a generous budget on a small plot buys a small house, a
tight one a minimum house or a refusal. Every design passes `validate_design`.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from housebrain.design.schema import STYLES

SYSTEM_PROMPT = (
    "You are HouseBrain, a residential architect. Reply with one JSON house design "
    "(levels, rooms in metres, totals, cost, compliance) that meets the requirements and IRC 2021, "
    "or a JSON refusal naming the limit no design can meet."
)
USER_PREFIX = "Design a house for these requirements:\n"
TRAIN_FILE = "train.jsonl"
EVAL_FILE = "eval.jsonl"
META_FILE = "meta.json"

CORRIDOR_M = 1.2
FLOOR_M = 0.3
TREAD_M = 0.26
#: Risers are planned at 0.19 m, under IRC R311.7.5.1's 0.196 m.
PLANNED_RISER_M = 0.19
LANDING_M = 0.95
GARAGE_W, GARAGE_D = 3.4, 5.6
#: Minimum width along the row (m): habitable rooms above IRC R304.2's 2.13 m with some slack;
#: bathrooms 1.8 and toilets 1.2 (R307.1 clearances), small rooms 1.2.
MIN_WIDTH = {
    "living": 3.4,
    "kitchen": 2.4,
    "dining": 2.8,
    "bedroom": 2.8,
    "study": 2.6,
    "bathroom": 1.8,
    "toilet": 1.2,
    "utility": 1.8,
    "storage": 1.2,
    "closet": 1.2,
}
OPTIONAL = ("study", "dining", "storage", "closet", "utility")
MIN_ROW_D, MAX_ROW_D = 2.8, 4.6
#: Storey heights (floor to ceiling) and roofs by style: the style changes the section, not only the price.
STYLE_SECTION = {
    "modern": ((2.7, 2.8), ("flat", 2)),
    "minimalist": ((2.6, 2.7), ("flat", 2)),
    "traditional": ((2.5, 2.7), ("gable", 35)),
    "craftsman": ((2.4, 2.5), ("gable", 25)),
    "colonial": ((2.7, 3.0), ("hip", 30)),
}
OPEN_PLAN_STYLES = ("modern", "minimalist")
RATE_PER_M2 = {"modern": 1900, "traditional": 1650, "craftsman": 1750, "minimalist": 1550, "colonial": 1700}
TOPOLOGIES = ("double", "single_front", "single_back")


def _r1(value: float) -> float:
    return round(value, 1)


def _up1(value: float) -> float:
    return math.ceil(value * 10 - 1e-9) / 10


def _down1(value: float) -> float:
    return math.floor(value * 10 + 1e-9) / 10


def sample_requirements(rng: random.Random) -> dict[str, Any]:
    """A client's request, every field drawn independently of any design."""
    floors = rng.choices([1, 2, 3], weights=[5, 4, 1])[0]
    bedrooms = rng.randint(1, 6)
    return {
        "plot": [_r1(rng.uniform(12.0, 40.0)), _r1(rng.uniform(15.0, 50.0))],
        "setback_m": rng.choice([1.0, 1.5, 2.0, 3.0]),
        "floors": floors,
        "bedrooms": bedrooms,
        "bathrooms": rng.randint(1, min(4, bedrooms + 1)),
        "budget": int(round(math.exp(rng.uniform(math.log(200_000), math.log(2_000_000))), -3)),
        "currency": "USD",
        "style": rng.choice(STYLES),
        "code": "IRC-2021",
        "garage": rng.random() < 0.4,
        "accessible": rng.random() < 0.15,
    }


# ---- the program: which rooms go on which level, and in which row --------------------------------
@dataclass
class Unit:
    """Rooms that stay side by side in a row: a bedroom with its ensuite and closet, or one room."""

    rooms: list[str]
    ensuite: bool = False


@dataclass
class Program:
    levels: list[list[Unit]]
    dropped: list[str] = field(default_factory=list)

    def key(self) -> str:
        counts = Counter(r for level in self.levels for unit in level for r in unit.rooms)
        return ",".join(f"{k}{v}" for k, v in sorted(counts.items()))


def room_program(req: dict[str, Any], rng: random.Random) -> Program:
    """Rooms per level from the request and the style (optional rooms drawn, droppable later)."""
    floors, style = req["floors"], req["style"]
    ground: list[Unit] = [Unit(["living"]), Unit(["kitchen"])]
    if style not in OPEN_PLAN_STYLES and (style in ("traditional", "colonial") or rng.random() < 0.5):
        ground.append(Unit(["dining"]))
    if rng.random() < 0.6:
        ground.append(Unit(["utility"]))
    levels = [ground] + [[] for _ in range(floors - 1)]
    bedrooms, bathrooms = req["bedrooms"], req["bathrooms"]
    sleeping = levels[1:] if floors > 1 else levels
    bed_units: list[Unit] = []
    if req["accessible"] or floors == 1:
        first = Unit(["bedroom"])
        ground.append(first)
        bed_units.append(first)
        ground.append(Unit(["bathroom"]))
        bedrooms, bathrooms = bedrooms - 1, bathrooms - 1
    elif floors > 1:
        ground.append(Unit(["toilet"]))
    for i in range(bedrooms):
        unit = Unit(["bedroom"])
        sleeping[i % len(sleeping)].append(unit)
        bed_units.append(unit)
    # ensuites for the first bedrooms while more than one bathroom is left; the rest are shared
    ensuites = min(max(bathrooms - 1, 0), len(bed_units))
    for unit in bed_units[:ensuites]:
        unit.rooms.append("bathroom")
        unit.ensuite = True
    for i in range(max(bathrooms - ensuites, 0)):
        sleeping[i % len(sleeping)].append(Unit(["bathroom"]))
    for unit in bed_units:
        if not unit.ensuite and rng.random() < 0.45:
            unit.rooms.append("closet")  # bedroom, then its walk-in closet (opening to the bedroom)
    for level in levels[1:]:
        if rng.random() < 0.3:
            level.append(Unit(["study"]))
        if rng.random() < 0.3:
            level.append(Unit(["storage"]))
        if not level:
            level.append(Unit(["study"]))
    if floors == 1 and rng.random() < 0.2:
        ground.append(Unit(["study"]))
    return Program(levels)


def drop_optional(program: Program) -> bool:
    """Remove one optional room (the first kind in OPTIONAL found); False when none is left."""
    for kind in OPTIONAL:
        for li, level in enumerate(program.levels):
            for unit in level:
                if kind in unit.rooms and (len(unit.rooms) > 1 or li == 0 or len(level) > 1):
                    unit.rooms.remove(kind)
                    if not unit.rooms:
                        level.remove(unit)
                    program.dropped.append(kind)
                    return True
    return False


def _split_rows(units: list[Unit], rows: int, rng: random.Random) -> list[list[Unit]]:
    """Units into `rows` rows balancing their minimum widths; the living room in the first row."""
    result: list[list[Unit]] = [[] for _ in range(rows)]
    widths = [0.0] * rows
    for unit in sorted(units, key=lambda u: -sum(MIN_WIDTH[r] for r in u.rooms)):
        target = 0 if "living" in unit.rooms else min(range(rows), key=lambda i: widths[i])
        result[target].append(unit)
        widths[target] += sum(MIN_WIDTH[r] for r in unit.rooms)
    for row in result:
        rng.shuffle(row)
        # living first (the entrance end), then bedroom suites (their closets and ensuites open to the
        # bedroom, which must reach the hall), single rooms last, where the stairs take the corridor
        row.sort(key=lambda u: 0 if "living" in u.rooms else 1 if len(u.rooms) > 1 else 2)
    return result


def row_need(row: list[Unit]) -> float:
    return sum(MIN_WIDTH[r] for unit in row for r in unit.rooms)


# ---- stairs ------------------------------------------------------------------------------------
def stair_for(height_m: float) -> dict[str, Any]:
    """Equal risers of at most PLANNED_RISER_M for the storey (ceiling + floor), TREAD_M treads."""
    rise = height_m + FLOOR_M
    risers = math.ceil(rise / PLANNED_RISER_M - 1e-9)
    return {"risers": risers, "riser_m": round(rise / risers, 4), "tread_m": TREAD_M}


def stair_length(stair: dict[str, Any]) -> float:
    return _up1((stair["risers"] - 1) * stair["tread_m"] + LANDING_M)


# ---- layout --------------------------------------------------------------------------------------
@dataclass
class Plan:
    """The solved shape of a design: footprint, row depths, where it sits on the plot."""

    topology: str
    mirrored: bool
    width: float  # main footprint width (without the garage)
    row_depths: list[float]  # one per row; the corridor is between (double) or beside (single)
    height: float
    garage: bool

    @property
    def depth(self) -> float:
        return _r1(sum(self.row_depths) + CORRIDOR_M)

    @property
    def total_width(self) -> float:
        return _r1(self.width + (GARAGE_W if self.garage else 0.0))


def _widths(units: list[Unit], total: float, rng: random.Random) -> list[float]:
    """Widths (0.1 m grid) for the rooms of a row that fill `total` and respect minimum widths."""
    rooms = [r for unit in units for r in unit.rooms]
    minimum = [MIN_WIDTH[r] for r in rooms]
    spare = max(total - sum(minimum), 0.0)
    shares = [rng.random() + 0.2 if r not in ("closet", "storage", "toilet") else 0.1 for r in rooms]
    edges = [0.0]
    for m, share in zip(minimum, shares, strict=True):
        edges.append(edges[-1] + m + share * spare / sum(shares))
    grid = [_down1(e) for e in edges[:-1]] + [_r1(total)]
    return [_r1(b - a) for a, b in itertools.pairwise(grid)]


def layout(
    program: Program,
    req: dict[str, Any],
    plan: Plan,
    rows_per_level: list[list[list[Unit]]],
    rng: random.Random,
) -> dict[str, Any]:
    """Levels of rooms (the design's `levels`) for a solved plan."""
    s = req["setback_m"]
    buildable_w = req["plot"][0] - 2 * s
    buildable_d = req["plot"][1] - 2 * s
    left = s + _down1(rng.uniform(0, max(buildable_w - plan.total_width, 0.0)))
    y0 = s + _down1(rng.uniform(0, max(buildable_d - plan.depth, 0.0)) * 0.5)
    x0 = _r1(left + (GARAGE_W if plan.garage else 0.0))
    floors = len(program.levels)
    counts: Counter[str] = Counter()

    def new_id(kind: str) -> str:
        counts[kind] += 1
        return f"{kind}{counts[kind]}"

    if plan.topology == "double":
        strips = [("row", 0), ("corridor", None), ("row", 1)]
    elif plan.topology == "single_front":
        strips = [("corridor", None), ("row", 0)]
    else:
        strips = [("row", 0), ("corridor", None)]
    stair = stair_for(plan.height)
    length = stair_length(stair)
    levels = []
    for li in range(floors):
        rooms: list[dict[str, Any]] = []
        y = y0
        row_rooms: list[list[dict[str, Any]]] = []
        hall: dict[str, Any] = {}
        for kind, index in strips:
            if kind == "corridor":
                hall_w = _r1(plan.width - (length if floors > 1 else 0.0))
                hall = {
                    "id": new_id("hall"),
                    "type": "hall",
                    "rect": [x0, _r1(y), hall_w, CORRIDOR_M],
                    "doors": [],
                }
                rooms.append(hall)
                if floors > 1:
                    stairs = {
                        "id": new_id("stairs"),
                        "type": "stairs",
                        "rect": [_r1(x0 + hall_w), _r1(y), length, CORRIDOR_M],
                    }
                    if li < floors - 1:
                        stairs["stair"] = dict(stair)
                    rooms.append(stairs)
                    hall["doors"].append(stairs["id"])
                y += CORRIDOR_M
                continue
            depth = plan.row_depths[index]
            units = rows_per_level[li][index]
            placed: list[dict[str, Any]] = []
            x = x0
            flat = [(unit, r) for unit in units for r in unit.rooms]
            for (unit, kind_), w in zip(flat, _widths(units, plan.width, rng), strict=True):
                room = {"id": new_id(kind_), "type": kind_, "rect": [_r1(x), _r1(y), w, depth], "doors": []}
                room["_unit"] = id(unit)
                placed.append(room)
                x += w
            rooms.extend(placed)
            row_rooms.append(placed)
            y += depth
        _doors(hall, row_rooms)
        levels.append({"level": li, "height_m": plan.height, "rooms": rooms})
    if plan.garage:
        ground = levels[0]["rooms"]
        hall = next(r for r in ground if r["type"] == "hall")
        garage_d = max(GARAGE_D, _r1(hall["rect"][1] + CORRIDOR_M - y0))
        garage = {
            "id": "garage1",
            "type": "garage",
            "rect": [_r1(x0 - GARAGE_W), y0, GARAGE_W, _r1(min(garage_d, plan.depth))],
            "doors": ["exterior", hall["id"]],
            "separation": "gypsum_13mm",
        }
        ground.append(garage)
    _entrance(levels[0]["rooms"], plan)
    _windows(levels, rng)
    if plan.mirrored:
        _mirror(levels, left, _r1(left + plan.total_width))
    for level in levels:
        for room in level["rooms"]:
            room.pop("_unit", None)
            if not room.get("doors"):
                room.pop("doors", None)
    return {"levels": levels}


def _doors(hall: dict[str, Any], rows: list[list[dict[str, Any]]]) -> None:
    """Each room opens to the hall when it shares >= 0.85 m with it, else to its neighbour on the hall's
    side; ensuite bathrooms and closets open to their bedroom."""
    hx0 = hall["rect"][0]
    hx1 = hx0 + hall["rect"][2]
    for row in rows:
        for i, room in enumerate(row):
            x, w = room["rect"][0], room["rect"][2]
            bedroom = next(
                (r for r in row if r["_unit"] == room["_unit"] and r["type"] == "bedroom" and r is not room),
                None,
            )
            if room["type"] in ("bathroom", "closet") and bedroom is not None:
                room["doors"].append(bedroom["id"])
            elif min(x + w, hx1) - max(x, hx0) >= 0.85:
                room["doors"].append(hall["id"])
            else:
                room["doors"].append(row[i - 1]["id"])


def _entrance(ground: list[dict[str, Any]], plan: Plan) -> None:
    """The front door: the hall when it lies on the street (single_front), else the living room."""
    target = "hall" if plan.topology == "single_front" else "living"
    room = next(r for r in ground if r["type"] == target)
    room.setdefault("doors", []).append("exterior")


def _windows(levels: list[dict[str, Any]], rng: random.Random) -> None:
    """Glazing of habitable rooms >= 8% of the floor (R303.1); bedrooms get an R310 egress opening."""
    for level in levels:
        for room in level["rooms"]:
            kind = room["type"]
            area = room["rect"][2] * room["rect"][3]
            if kind in ("living", "kitchen", "dining", "bedroom", "study"):
                glazing = max(0.08 * area * rng.uniform(1.15, 1.8), 1.2 if kind == "bedroom" else 0.0)
                room["window_m2"] = _up1(glazing)
                if kind == "bedroom":
                    width = rng.choice([0.8, 0.9, 1.0])
                    room["egress"] = {
                        "w": width,
                        "h": _up1(max(0.62, 0.54 / width)),
                        "sill": rng.choice([0.6, 0.8, 0.9]),
                    }
            elif kind in ("bathroom", "toilet", "utility"):
                room["window_m2"] = rng.choice([0.3, 0.4, 0.5])


def _mirror(levels: list[dict[str, Any]], left: float, right: float) -> None:
    for level in levels:
        for room in level["rooms"]:
            x, y, w, d = room["rect"]
            room["rect"] = [_r1(left + right - x - w), y, w, d]


# ---- cost ----------------------------------------------------------------------------------------
def cost_estimate(
    design: dict[str, Any], req: dict[str, Any], rates: dict[str, float], roof: dict[str, Any]
) -> dict[str, Any]:
    rooms = [r for level in design["levels"] for r in level["rooms"]]
    area = sum(r["rect"][2] * r["rect"][3] for r in rooms if r["type"] != "garage")
    garage = sum(r["rect"][2] * r["rect"][3] for r in rooms if r["type"] == "garage")
    windows = sum(r.get("window_m2", 0.0) for r in rooms)
    kinds = Counter(r["type"] for r in rooms)
    ground = design["levels"][0]["rooms"]
    footprint = sum(r["rect"][2] * r["rect"][3] for r in ground)
    roof_area = footprint / math.cos(math.radians(roof["pitch_deg"]))
    items = [
        ("construction", round(area, 1), "m2", rates["construction"]),
        ("kitchen", 1, "ea", rates["kitchen"]),
        ("bathrooms", kinds["bathroom"] + kinds["toilet"], "ea", rates["bathrooms"]),
        ("windows", round(windows, 1), "m2", rates["windows"]),
        ("roof", round(roof_area, 1), "m2", rates["roof"]),
    ]
    if garage:
        items.append(("garage", round(garage, 1), "m2", rates["garage"]))
    if len(design["levels"]) > 1:
        items.append(("stairs", len(design["levels"]) - 1, "ea", rates["stairs"]))
    cost_items = [{"item": n, "qty": q, "unit": u, "rate": r, "amount": round(q * r)} for n, q, u, r in items]
    return {"currency": req["currency"], "items": cost_items, "total": sum(i["amount"] for i in cost_items)}


def draw_rates(style: str, rng: random.Random) -> dict[str, float]:
    return {
        "construction": int(round(RATE_PER_M2[style] * rng.uniform(0.85, 1.2), -1)),
        "kitchen": int(round(rng.uniform(9000, 30000), -2)),
        "bathrooms": int(round(rng.uniform(6000, 16000), -2)),
        "windows": int(round(rng.uniform(350, 800), -1)),
        "roof": int(round(rng.uniform(90, 220), -1)),
        "garage": int(round(rng.uniform(600, 1100), -1)),
        "stairs": int(round(rng.uniform(4000, 12000), -2)),
    }


# ---- solving a request -----------------------------------------------------------------------------
@dataclass
class Answer:
    reply: dict[str, Any]
    info: dict[str, Any]


def _min_plan(program: Program, req: dict[str, Any], topology: str, rng: random.Random, height: float):
    rows = 2 if topology == "double" else 1
    rows_per_level = [_split_rows(level, rows, rng) for level in program.levels]
    stair_len = stair_length(stair_for(height)) if len(program.levels) > 1 else 0.0
    need = max(max(row_need(row) for row in level) for level in rows_per_level)
    width = _up1(max(need, stair_len + 1.5, 4.0))
    depths = [MIN_ROW_D] * rows
    if req["garage"] and rows == 1:
        depths = [max(MIN_ROW_D, GARAGE_D - CORRIDOR_M)]
    return rows_per_level, width, depths


def solve(req: dict[str, Any], rng: random.Random) -> Answer:
    """The design (or refusal) that answers `req`; `info` says how it was reached (for meta.json)."""
    style = req["style"]
    heights, (roof_form, pitch) = STYLE_SECTION[style]
    height = rng.choice(heights)
    roof = {"form": roof_form, "pitch_deg": pitch}
    rates = draw_rates(style, rng)
    s = req["setback_m"]
    buildable = (req["plot"][0] - 2 * s, req["plot"][1] - 2 * s)
    topology = rng.choice(TOPOLOGIES)
    if buildable[0] < 16 and buildable[1] > 14:
        topology = "double"  # a narrow plot: two rows, not one long one
    program = room_program(req, rng)
    generosity = rng.uniform(1.0, 1.7)
    while True:
        rows_per_level, min_width, min_depths = _min_plan(program, req, topology, rng, height)
        garage_w = GARAGE_W if req["garage"] else 0.0
        fits = (
            min_width + garage_w <= buildable[0] + 1e-6
            and sum(min_depths) + CORRIDOR_M <= buildable[1] + 1e-6
        )
        base = Plan(topology, rng.random() < 0.5, min_width, min_depths, height, req["garage"])
        state = rng.getstate()
        minimum = _design(program, req, base, rows_per_level, rng, rates, roof)
        rng.setstate(state)
        cheap = minimum["cost"]["total"] <= req["budget"]
        if fits and cheap:
            break
        if not fits and topology != "double":
            topology = "double"  # one long row does not fit: try two rows before dropping rooms
            continue
        if not drop_optional(program):
            reasons = ([] if fits else ["plot"]) + ([] if cheap else ["budget"])
            refusal = {
                "reasons": reasons,
                "min_budget": float(math.ceil(minimum["cost"]["total"] / 1000) * 1000),
                "min_footprint_m": [_r1(min_width + garage_w), _r1(sum(min_depths) + CORRIDOR_M)],
                "notes": [f"dropped optional {kind}" for kind in program.dropped],
            }
            info = {"feasible": False, "reasons": reasons, "topology": None, "program": program.key()}
            return Answer({"refusal": refusal}, info)
    best = minimum
    for step in range(12):  # shrink from the drawn generosity towards the minimum until it fits
        f = generosity - (generosity - 1.0) * step / 11
        width = _down1(min(min_width * f, buildable[0] - garage_w))
        depths = [_down1(min(d * f, MAX_ROW_D)) for d in min_depths]
        while sum(depths) + CORRIDOR_M > buildable[1] + 1e-6:
            depths = [_down1(max(d - 0.1, m)) for d, m in zip(depths, min_depths, strict=True)]
        plan = Plan(topology, base.mirrored, max(width, min_width), depths, height, req["garage"])
        candidate = _design(program, req, plan, rows_per_level, rng, rates, roof)
        if candidate["cost"]["total"] <= req["budget"]:
            best = candidate
            break
    notes = [
        f"dropped optional {kind} to meet the {'plot' if not fits else 'budget'}" for kind in program.dropped
    ]
    best["compliance"]["notes"] += notes
    info = {
        "feasible": True,
        "reduced": bool(program.dropped),
        "topology": topology + ("_mirrored" if base.mirrored else ""),
        "program": program.key(),
        "budget_slack": best["cost"]["total"] / req["budget"],
    }
    return Answer(best, info)


CHECKED_RULES = [
    "R301.1", "R302.5.1", "R302.6", "R303.1", "R304.1", "R304.2", "R305.1", "R306.1", "R306.2",
    "R307.1", "R310.2.1", "R310.2.2", "R311.2", "R311.6",
]  # fmt: skip
STAIR_RULES = ["R311.7.1", "R311.7.2", "R311.7.5.1", "R311.7.5.2", "R311.7.6"]


def _design(program, req, plan, rows_per_level, rng, rates, roof) -> dict[str, Any]:
    design = layout(program, req, plan, rows_per_level, rng)
    rooms = [r for level in design["levels"] for r in level["rooms"]]
    area = round(sum(r["rect"][2] * r["rect"][3] for r in rooms), 1)
    kinds = Counter(r["type"] for r in rooms)
    design["roof"] = roof
    design["totals"] = {"area_m2": area, "bedrooms": kinds["bedroom"], "bathrooms": kinds["bathroom"]}
    design["cost"] = cost_estimate(design, req, rates, roof)
    design["compliance"] = {
        "code": "IRC-2021",
        "passed": True,
        "notes": CHECKED_RULES + (STAIR_RULES if len(design["levels"]) > 1 else []),
    }
    return design


def chat_record(requirements: dict[str, Any], reply: dict[str, Any]) -> dict[str, Any]:
    """One SFT sample in the chat format every trainer (TRL, axolotl) reads."""
    return {
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": USER_PREFIX + json.dumps(requirements, separators=(",", ":"))},
            {"role": "assistant", "content": json.dumps(reply, separators=(",", ":"))},
        ]
    }


def requirements_from_prompt(text: str) -> dict[str, Any]:
    """The requirements JSON inside a user turn written by `chat_record`."""
    start = text.find("{")
    if start < 0:
        raise ValueError("user turn holds no requirements JSON object")
    return json.loads(text[start:])


def generate_design(req: dict[str, Any], rng: random.Random) -> tuple[dict[str, Any], dict[str, Any]]:
    """(requirements, reply) for a request: a design, or a refusal when none fits."""
    return req, solve(req, rng).reply


def sample_with_info(seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(chat record, how it was solved) of sample number `seed` (deterministic)."""
    rng = random.Random(seed)
    req = sample_requirements(rng)
    answer = solve(req, rng)
    return chat_record(req, answer.reply), answer.info


def sample(seed: int) -> dict[str, Any]:
    """The chat record of sample number `seed` (deterministic)."""
    return sample_with_info(seed)[0]


def _lines(args: tuple[int, int, bool]) -> tuple[list[str], list[dict[str, Any]]]:
    start, stop, validate = args
    lines, infos = [], []
    for seed in range(start, stop):
        record, info = sample_with_info(seed)
        if validate:
            _check(record, seed)
        lines.append(json.dumps(record, separators=(",", ":")))
        req = requirements_from_prompt(record["messages"][1]["content"])
        infos.append(
            {
                **info,
                "budget": req["budget"],
                "cost": json.loads(record["messages"][2]["content"]).get("cost", {}).get("total"),
            }
        )
    return lines, infos


def _check(record: dict[str, Any], seed: int) -> None:
    from housebrain.design.validator import validate_design

    messages = record["messages"]
    report = validate_design(requirements_from_prompt(messages[1]["content"]), messages[2]["content"])
    if not report.passed:
        raise RuntimeError(f"generator bug: sample seed {seed} fails validation: {report.errors[:3]}")


def _chunks(start: int, stop: int, size: int, validate: bool) -> Iterator[tuple[int, int, bool]]:
    for begin in range(start, stop, size):
        yield begin, min(begin + size, stop), validate


def dataset_statistics(infos: list[dict[str, Any]]) -> dict[str, Any]:
    """What the data teaches: feasibility, topologies, room programs, budget slack, cost vs budget."""
    feasible = [i for i in infos if i["feasible"]]
    slack = sorted(i["budget_slack"] for i in feasible)
    programs = Counter(i["program"] for i in feasible)

    def quantile(q: float) -> float | None:
        return round(slack[min(int(q * len(slack)), len(slack) - 1)], 3) if slack else None

    pairs = [(float(i["budget"]), float(i["cost"])) for i in feasible]
    within = sum(abs(b / 1.175 - c) <= 0.1 * c for b, c in pairs)
    return {
        "designs": len(feasible),
        "refusals": len(infos) - len(feasible),
        "refusal_reasons": dict(Counter(r for i in infos if not i["feasible"] for r in i["reasons"])),
        "reduced_designs": sum(bool(i.get("reduced")) for i in feasible),
        "topologies": dict(sorted(Counter(i["topology"] for i in feasible).items())),
        "distinct_room_programs": len(programs),
        "most_common_programs": dict(programs.most_common(5)),
        "budget_slack_cost_over_budget": {"p05": quantile(0.05), "p50": quantile(0.5), "p95": quantile(0.95)},
        "cost_budget_correlation": round(_correlation(pairs), 3) if len(pairs) > 2 else None,
        "share_cost_within_10pct_of_budget_over_1.175": round(within / max(len(pairs), 1), 3),
    }


def _correlation(pairs: list[tuple[float, float]]) -> float:
    n = len(pairs)
    mx = sum(b for b, _ in pairs) / n
    my = sum(c for _, c in pairs) / n
    sxy = sum((b - mx) * (c - my) for b, c in pairs)
    sxx = sum((b - mx) ** 2 for b, _ in pairs)
    syy = sum((c - my) ** 2 for _, c in pairs)
    return sxy / math.sqrt(max(sxx * syy, 1e-30))


def write_dataset(
    out: str | Path,
    samples: int,
    eval_fraction: float = 0.02,
    seed: int = 0,
    workers: int = 1,
    validate: bool = True,
    chunk_size: int = 2000,
) -> dict[str, Any]:
    """Write `train.jsonl`, `eval.jsonl` and `meta.json` (with `statistics`) into `out`; return the metadata.

    Sample i is generated from seed `seed * 1_000_000_007 + i`, so the files are identical for any
    number of workers. The last `round(samples * eval_fraction)` samples (at least 1) form the eval split.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n_eval = max(1, round(samples * eval_fraction)) if samples > 1 else 0
    base = seed * 1_000_000_007
    t0 = time.perf_counter()
    jobs = list(_chunks(base, base + samples, chunk_size, validate))
    infos: list[dict[str, Any]] = []
    with open(out / TRAIN_FILE, "w") as train, open(out / EVAL_FILE, "w") as evaluation:
        if workers > 1:
            import multiprocessing

            with multiprocessing.get_context().Pool(workers) as pool:
                written = _write(pool.imap(_lines, jobs), train, evaluation, samples - n_eval, infos)
        else:
            written = _write(map(_lines, jobs), train, evaluation, samples - n_eval, infos)
    seconds = time.perf_counter() - t0
    meta = {
        "samples": written,
        "train": samples - n_eval,
        "eval": n_eval,
        "seed": seed,
        "validated": validate,
        "workers": workers,
        "seconds": round(seconds, 3),
        "samples_per_second": round(written / max(seconds, 1e-9), 1),
        "statistics": dataset_statistics(infos),
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def _write(results: Any, train: Any, evaluation: Any, n_train: int, infos: list[dict[str, Any]]) -> int:
    written = 0
    for lines, chunk_infos in results:
        infos.extend(chunk_infos)
        for line in lines:
            (train if written < n_train else evaluation).write(line + "\n")
            written += 1
    return written


def find_design(start: int = 0, tries: int = 2000, **wanted: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(requirements, design) of the first sample from seed `start` that is a design (not a refusal)
    and whose requirements have the `wanted` values (`floors=2`, `garage=True`, ...): examples, tests."""
    for seed in range(start, start + tries):
        messages = sample(seed)["messages"]
        req = requirements_from_prompt(messages[1]["content"])
        reply = json.loads(messages[2]["content"])
        if "levels" in reply and all(req.get(k) == v for k, v in wanted.items()):
            return req, reply
    raise ValueError(f"no design with {wanted} among seeds {start}..{start + tries - 1}")
