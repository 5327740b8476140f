"""Procedural house designs that pass `validate_design`, written as chat JSONL for SFT.

Layout (every level shares one rectangular footprint, so stairs line up):

    back row     | bed | bed | bath |        rooms side by side, each with a window on the back wall
    corridor     |stairs|     hall        |  1.2 m strip across the whole footprint
    front row    | living | kitchen | wc  |  rooms side by side, windows on the street front

Every room gets a door to the corridor piece it shares most wall with (or to its neighbour in the row
when it shares too little with both), the ground-floor hall gets the entrance door. Requirements are
sampled first; the plot and the budget are then chosen so the design satisfies them.

One sample is one JSON line: `{"messages": [system, user, assistant]}` where the user turn carries the
requirements JSON and the assistant turn the design JSON (compact, no spaces).
"""

from __future__ import annotations

import itertools
import json
import math
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from housebrain.design.schema import STYLES

SYSTEM_PROMPT = (
    "You are HouseBrain, a residential architect. Reply with one JSON house design "
    "(levels, rooms in metres, totals, cost, compliance) that meets the requirements and IRC 2021."
)
USER_PREFIX = "Design a house for these requirements:\n"
TRAIN_FILE = "train.jsonl"
EVAL_FILE = "eval.jsonl"
META_FILE = "meta.json"

CORRIDOR_M = 1.2
STAIRS_M = 2.4
#: Minimum width along the row (m): habitable rooms above IRC R304.2's 2.13 m with some slack.
MIN_WIDTH = {
    "living": 3.4,
    "kitchen": 2.4,
    "dining": 2.8,
    "bedroom": 2.8,
    "study": 2.6,
    "bathroom": 1.8,
    "toilet": 1.2,
}
RATE_PER_M2 = {"modern": 1800, "traditional": 1600, "craftsman": 1700, "minimalist": 1500, "colonial": 1650}
CHECKED_RULES = ["R303.1", "R304.1", "R304.2", "R305.1", "R310.2.1"]


def _r1(value: float) -> float:
    return round(value, 1)


def _up1(value: float) -> float:
    return math.ceil(value * 10 - 1e-9) / 10


def sample_requirements(rng: random.Random) -> dict[str, Any]:
    floors = rng.choices([1, 2, 3], weights=[5, 4, 1])[0]
    bedrooms = rng.randint(1, 2 + 2 * floors if floors < 3 else 6)
    bathrooms = rng.randint(1, max(1, min(3, bedrooms)))
    return {
        "floors": floors,
        "bedrooms": bedrooms,
        "bathrooms": bathrooms,
        "style": rng.choice(STYLES),
        "setback_m": rng.choice([1.0, 1.5, 2.0, 3.0]),
    }


def _rooms_per_level(req: dict[str, Any], rng: random.Random) -> list[list[str]]:
    floors = req["floors"]
    ground = ["living", "kitchen"] + (["dining"] if rng.random() < 0.5 else [])
    levels = [ground] + [[] for _ in range(floors - 1)]
    beds, baths = req["bedrooms"], req["bathrooms"]
    if floors == 1:
        ground += ["bedroom"] * beds + ["bathroom"] * baths
    else:
        ground.append("toilet" if rng.random() < 0.6 else "bathroom")
        baths -= ground[-1] == "bathroom"
        upper = levels[1:]
        for i in range(beds):
            upper[i % len(upper)].append("bedroom")
        for i in range(max(baths, 0)):
            upper[i % len(upper)].append("bathroom")
        for level in upper:
            if not level or rng.random() < 0.2:
                level.append("study")
    return levels


def _split_rows(rooms: list[str], rng: random.Random) -> tuple[list[str], list[str]]:
    """Assign rooms to the front and back rows, balancing their minimum widths."""
    front: list[str] = []
    back: list[str] = []
    for room in sorted(rooms, key=lambda r: -MIN_WIDTH[r]):
        target = front if sum(MIN_WIDTH[r] for r in front) <= sum(MIN_WIDTH[r] for r in back) else back
        target.append(room)
    rng.shuffle(front)
    rng.shuffle(back)
    return front, back


def _row_widths(rooms: list[str], total: float, rng: random.Random) -> list[float]:
    """Widths (0.1 m grid) for the rooms of a row that fill `total` and respect minimum widths."""
    minimum = [MIN_WIDTH[r] for r in rooms]
    spare = total - sum(minimum)
    shares = [rng.random() + 0.2 for _ in rooms]
    scale = spare / sum(shares)
    edges = [0.0]
    for m, share in zip(minimum, shares, strict=True):
        edges.append(edges[-1] + m + share * scale)
    grid = [math.floor(e * 10 + 1e-9) / 10 for e in edges[:-1]] + [_r1(total)]
    return [_r1(b - a) for a, b in itertools.pairwise(grid)]


def generate_design(req: dict[str, Any], rng: random.Random) -> tuple[dict[str, Any], dict[str, Any]]:
    """A (requirements, design) pair; `req` holds floors, bedrooms, bathrooms, style and setback."""
    levels_rooms = _rooms_per_level(req, rng)
    rows = [_split_rows(rooms, rng) for rooms in levels_rooms]
    need = max(sum(MIN_WIDTH[r] for r in row) for pair in rows for row in pair)
    width = _r1(max(need * rng.uniform(1.02, 1.3), STAIRS_M + 2.0))
    front_d = _r1(rng.uniform(3.0, 4.6))
    back_d = _r1(rng.uniform(2.8, 4.2))
    depth = _r1(front_d + CORRIDOR_M + back_d)
    s = req["setback_m"]
    x0 = s + _r1(rng.uniform(0, 2.0))
    y0 = s + _r1(rng.uniform(0, 4.0))
    plot = [_up1(x0 + width + s + rng.uniform(0, 2.0)), _up1(y0 + depth + s + rng.uniform(0, 6.0))]
    height = rng.choice([2.4, 2.5, 2.7, 3.0])
    floors = req["floors"]
    counts: dict[str, int] = {}

    def new_id(kind: str) -> str:
        counts[kind] = counts.get(kind, 0) + 1
        return f"{kind}{counts[kind]}"

    levels = []
    window_total = 0.0
    area_total = 0.0
    for li, (front, back) in enumerate(rows):
        corridor_y = _r1(y0 + front_d)
        rooms: list[dict[str, Any]] = []
        pieces: list[dict[str, Any]] = []
        hall_x = x0
        if floors > 1:
            stairs = {
                "id": new_id("stairs"),
                "type": "stairs",
                "rect": [x0, corridor_y, STAIRS_M, CORRIDOR_M],
            }
            pieces.append(stairs)
            hall_x = _r1(x0 + STAIRS_M)
        hall = {
            "id": new_id("hall"),
            "type": "hall",
            "rect": [hall_x, corridor_y, _r1(x0 + width - hall_x), CORRIDOR_M],
        }
        pieces.append(hall)
        if floors > 1:
            pieces[0]["doors"] = [hall["id"]]
        if li == 0:
            hall["doors"] = ["exterior"]
        rooms.extend(pieces)
        for row, y, d in ((front, y0, front_d), (back, _r1(corridor_y + CORRIDOR_M), back_d)):
            if not row:
                continue
            x = x0
            previous: dict[str, Any] | None = None
            for kind, w in zip(row, _row_widths(row, width, rng), strict=True):
                room = {"id": new_id(kind), "type": kind, "rect": [_r1(x), y, w, d]}
                area = w * d
                if kind in MIN_WIDTH and kind not in ("bathroom", "toilet"):
                    glazing = max(0.08 * area * rng.uniform(1.15, 1.6), 0.6 if kind == "bedroom" else 0.0)
                else:
                    glazing = rng.choice([0.3, 0.4, 0.5])
                room["window_m2"] = _up1(glazing)
                window_total += room["window_m2"]
                room["doors"] = [_door_target(x, w, pieces, previous)]
                rooms.append(room)
                previous = room
                x += w
        area_total += sum(r["rect"][2] * r["rect"][3] for r in rooms)
        levels.append({"level": li, "height_m": height, "rooms": rooms})

    all_types = [r["type"] for level in levels for r in level["rooms"]]
    bedrooms, bathrooms = all_types.count("bedroom"), all_types.count("bathroom")
    style = req["style"]
    rate = int(round(RATE_PER_M2[style] * rng.uniform(0.9, 1.15), -1))
    area_q = round(area_total, 1)
    items = [
        ("construction", area_q, "m2", rate),
        ("kitchen", 1, "ea", int(round(rng.uniform(9000, 25000), -2))),
        ("bathrooms", bathrooms + all_types.count("toilet"), "ea", int(round(rng.uniform(6000, 14000), -2))),
        ("windows", round(window_total, 1), "m2", int(round(rng.uniform(350, 700), -1))),
    ]
    if floors > 1:
        items.append(("stairs", floors - 1, "ea", int(round(rng.uniform(4000, 9000), -2))))
    cost_items = [{"item": n, "qty": q, "unit": u, "rate": r, "amount": round(q * r)} for n, q, u, r in items]
    total = sum(item["amount"] for item in cost_items)
    budget = math.ceil(total * rng.uniform(1.0, 1.35) / 1000) * 1000
    design = {
        "levels": levels,
        "totals": {"area_m2": area_q, "bedrooms": bedrooms, "bathrooms": bathrooms},
        "cost": {"currency": "USD", "items": cost_items, "total": total},
        "compliance": {
            "code": "IRC-2021",
            "passed": True,
            "notes": CHECKED_RULES + (["R311.7"] if floors > 1 else []),
        },
    }
    requirements = {
        "plot": plot,
        "setback_m": s,
        "floors": floors,
        "bedrooms": bedrooms,
        "bathrooms": req["bathrooms"],
        "budget": budget,
        "currency": "USD",
        "style": style,
        "code": "IRC-2021",
    }
    return requirements, design


def _door_target(x: float, w: float, pieces: list[dict[str, Any]], previous: dict[str, Any] | None) -> str:
    """The corridor piece sharing most wall with a room spanning x..x+w, else its left neighbour."""
    best, best_len = pieces[-1]["id"], -1.0
    for piece in pieces:
        px, _, pw, _ = piece["rect"]
        shared = min(x + w, px + pw) - max(x, px)
        if shared > best_len:
            best, best_len = piece["id"], shared
    if best_len < 0.85 and previous is not None:
        return previous["id"]
    return best


def chat_record(requirements: dict[str, Any], design: dict[str, Any]) -> dict[str, Any]:
    """One SFT sample in the chat format every trainer (TRL, axolotl) reads."""
    return {
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": USER_PREFIX + json.dumps(requirements, separators=(",", ":"))},
            {"role": "assistant", "content": json.dumps(design, separators=(",", ":"))},
        ]
    }


def requirements_from_prompt(text: str) -> dict[str, Any]:
    """The requirements JSON inside a user turn written by `chat_record`."""
    start = text.find("{")
    if start < 0:
        raise ValueError("user turn holds no requirements JSON object")
    return json.loads(text[start:])


def sample(seed: int) -> dict[str, Any]:
    """The chat record of sample number `seed` (deterministic)."""
    rng = random.Random(seed)
    requirements, design = generate_design(sample_requirements(rng), rng)
    return chat_record(requirements, design)


def _lines(args: tuple[int, int, bool]) -> list[str]:
    start, stop, validate = args
    lines = []
    for seed in range(start, stop):
        record = sample(seed)
        if validate:
            _check(record, seed)
        lines.append(json.dumps(record, separators=(",", ":")))
    return lines


def _check(record: dict[str, Any], seed: int) -> None:
    from housebrain.design.validator import validate_design

    messages = record["messages"]
    report = validate_design(requirements_from_prompt(messages[1]["content"]), messages[2]["content"])
    if not report.passed:
        raise RuntimeError(f"generator bug: sample seed {seed} fails validation: {report.errors[:3]}")


def _chunks(start: int, stop: int, size: int, validate: bool) -> Iterator[tuple[int, int, bool]]:
    for begin in range(start, stop, size):
        yield begin, min(begin + size, stop), validate


def write_dataset(
    out: str | Path,
    samples: int,
    eval_fraction: float = 0.02,
    seed: int = 0,
    workers: int = 1,
    validate: bool = True,
    chunk_size: int = 2000,
) -> dict[str, Any]:
    """Write `train.jsonl`, `eval.jsonl` and `meta.json` into `out`; return the metadata.

    Sample i is generated from seed `seed * 1_000_000_007 + i`, so the files are identical for any
    number of workers. The last `round(samples * eval_fraction)` samples (at least 1) form the eval split.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n_eval = max(1, round(samples * eval_fraction)) if samples > 1 else 0
    base = seed * 1_000_000_007
    t0 = time.perf_counter()
    jobs = list(_chunks(base, base + samples, chunk_size, validate))
    written = 0
    with open(out / TRAIN_FILE, "w") as train, open(out / EVAL_FILE, "w") as evaluation:
        if workers > 1:
            import multiprocessing

            with multiprocessing.get_context().Pool(workers) as pool:
                results = pool.imap(_lines, jobs)
                written = _write(results, train, evaluation, samples - n_eval)
        else:
            written = _write(map(_lines, jobs), train, evaluation, samples - n_eval)
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
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def _write(results: Any, train: Any, evaluation: Any, n_train: int) -> int:
    written = 0
    for lines in results:
        for line in lines:
            (train if written < n_train else evaluation).write(line + "\n")
            written += 1
    return written
