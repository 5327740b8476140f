"""Scoring generated replies: parse, schema, validator, per-category rates and field accuracy."""

from __future__ import annotations

import json

import pytest

from housebrain.data.generator import find_design, requirements_from_prompt, sample
from housebrain.evaluation import CHECKED_CATEGORIES, extract_json, mean_scores, score_reply


@pytest.fixture(scope="module")
def reference() -> tuple[dict, str]:
    requirements, design = find_design(3)
    return requirements, json.dumps(design, separators=(",", ":"))


def test_the_reference_design_scores_full_marks_even_inside_words(reference) -> None:
    requirements, design = reference
    scores = score_reply(requirements, design, f"Here is the design:\n{design}\nEnjoy!")
    assert scores == {
        "parsed": 1.0,
        "schema_valid": 1.0,
        "passed": 1.0,
        **{f"{category}_ok": 1.0 for category in CHECKED_CATEGORIES},
        "field_accuracy": 1.0,
    }


def test_overlapping_rooms_fail_geometry_only_and_fields_are_compared(reference) -> None:
    requirements, design = reference
    broken = json.loads(design)
    rooms = broken["levels"][0]["rooms"]
    rooms[1]["rect"][:2] = rooms[0]["rect"][:2]  # two rooms on one spot
    broken["cost"]["total"] *= 2  # also off by more than 10 %
    scores = score_reply(requirements, design, json.dumps(broken))
    assert scores["schema_valid"] == 1.0 and scores["passed"] == 0.0
    assert scores["geometry_ok"] == 0.0 and scores["code_ok"] == 1.0
    assert scores["field_accuracy"] == pytest.approx(4 / 5)


def test_unparsable_and_schema_invalid_replies(reference) -> None:
    requirements, design = reference
    cut = score_reply(requirements, design, design[: len(design) // 2])
    assert cut["parsed"] == 0.0 and cut["field_accuracy"] == 0.0
    assert all(cut[f"{category}_ok"] == 0.0 for category in CHECKED_CATEGORIES)
    not_a_design = score_reply(requirements, design, '{"levels": "none"}')
    assert not_a_design["parsed"] == 1.0 and not_a_design["schema_valid"] == 0.0
    assert not_a_design["geometry_ok"] == 0.0


def test_rates_average_over_all_replies_with_every_key() -> None:
    ok = {"parsed": 1.0, "schema_valid": 1.0, "passed": 0.0, "field_accuracy": 0.5}
    ok |= {f"{category}_ok": 1.0 for category in CHECKED_CATEGORIES} | {"geometry_ok": 0.0}
    bad = {key: 0.0 for key in ok}
    rates = mean_scores([ok, bad])
    assert rates["json_parse_rate"] == 0.5 and rates["geometry_ok_rate"] == 0.0
    assert rates["code_ok_rate"] == 0.5 and rates["field_accuracy"] == 0.25
    assert set(rates) == {
        "json_parse_rate", "schema_valid_rate", "validator_pass_rate", "field_accuracy",
        *(f"{category}_ok_rate" for category in CHECKED_CATEGORIES),
    }  # fmt: skip


def test_extract_json_takes_the_first_balanced_object_and_respects_strings() -> None:
    assert extract_json('say {"a": "}{", "b": {"c": 1}} and {"d": 2}') == '{"a": "}{", "b": {"c": 1}}'
    assert extract_json("no json") == "no json"


def test_a_refusal_scores_only_where_one_is_due(reference) -> None:
    refused = next(
        m for m in (sample(seed)["messages"] for seed in range(200)) if '"refusal"' in m[2]["content"]
    )
    requirements, refusal = requirements_from_prompt(refused[1]["content"]), refused[2]["content"]
    assert score_reply(requirements, refusal, refusal)["passed"] == 1.0
    assert score_reply(requirements, refusal, refusal)["field_accuracy"] == 1.0
    wrong = score_reply(reference[0], reference[1], refusal)  # refusing a request a design meets
    assert wrong["field_accuracy"] == 0.0 and wrong["passed"] == 0.0
