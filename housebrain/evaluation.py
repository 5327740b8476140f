"""Scoring generated designs against the requirements and the reference design (no Lightning here).

Per reply: `parsed` (valid JSON object), `schema_valid` (a `HouseDesign`), `passed` (no validator
errors) and `field_accuracy`: the fraction of FIELDS that match the reference (counts exactly, area and
cost within 10%). A reply that does not parse scores 0 on every field.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from housebrain.design.validator import validate_design

FIELDS = ("floors", "bedrooms", "bathrooms", "area_m2", "cost_total")
RELATIVE_TOLERANCE = 0.10


def extract_json(text: str) -> str:
    """The first balanced {...} in a reply (models sometimes add words around the JSON)."""
    start = text.find("{")
    if start < 0:
        return text
    depth = 0
    in_string = escaped = False
    for i in range(start, len(text)):
        char = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[start : i + 1]
    return text[start:]


def _fields(design: dict[str, Any]) -> dict[str, Any]:
    totals = design.get("totals") or {}
    return {
        "floors": len(design.get("levels") or []),
        "bedrooms": totals.get("bedrooms"),
        "bathrooms": totals.get("bathrooms"),
        "area_m2": totals.get("area_m2"),
        "cost_total": (design.get("cost") or {}).get("total"),
    }


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return abs(a - b) <= RELATIVE_TOLERANCE * max(abs(b), 1e-9)
    return False


def score_reply(requirements: dict[str, Any], reference: str, reply: str) -> dict[str, float]:
    """Scores of one generated reply (see the module docstring)."""
    report = validate_design(requirements, extract_json(reply))
    scores = {
        "parsed": float(report.parsed),
        "schema_valid": float(report.schema_valid),
        "passed": float(report.passed),
    }
    if not report.parsed:
        scores["field_accuracy"] = 0.0
        return scores
    generated = json.loads(extract_json(reply))
    if not isinstance(generated, dict):
        scores["field_accuracy"] = 0.0
        return scores
    want, got = _fields(json.loads(reference)), _fields(generated)
    hits = 0
    for name in FIELDS:
        if name in ("area_m2", "cost_total"):
            hits += _close(got[name], want[name])
        else:
            hits += got[name] == want[name]
    scores["field_accuracy"] = hits / len(FIELDS)
    return scores


def mean_scores(scores: Iterable[dict[str, float]]) -> dict[str, float]:
    """Rates over replies: json_parse_rate, schema_valid_rate, validator_pass_rate, field_accuracy."""
    rows = list(scores)
    if not rows:
        return {}
    names = {
        "parsed": "json_parse_rate",
        "schema_valid": "schema_valid_rate",
        "passed": "validator_pass_rate",
        "field_accuracy": "field_accuracy",
    }
    return {label: sum(r[key] for r in rows) / len(rows) for key, label in names.items()}
