"""Scoring generated designs against the requirements and the reference design (no Lightning here).

Per reply: `parsed` (valid JSON object), `schema_valid` (a `HouseDesign`), `passed` (no validator
errors), `<category>_ok` for each of CHECKED_CATEGORIES (schema-valid and no error of that category:
which rules a model has not learnt yet when `passed` stays 0) and `field_accuracy`: the fraction of
FIELDS that match the reference (counts exactly, area and cost within 10%). A reply that does not
parse scores 0 on every field.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F

from housebrain.data.chat import IGNORE
from housebrain.design.validator import validate_design

FIELDS = ("floors", "bedrooms", "bathrooms", "area_m2", "cost_total")
# The validator's categories after the schema (see housebrain/design/validator.py).
CHECKED_CATEGORIES = ("geometry", "code", "requirements", "cost")
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
    failed = {finding.category for finding in report.errors}
    for category in CHECKED_CATEGORIES:
        scores[f"{category}_ok"] = float(report.schema_valid and category not in failed)
    if not report.parsed:
        scores["field_accuracy"] = 0.0
        return scores
    generated = json.loads(extract_json(reply))
    expected = json.loads(reference)
    if not isinstance(generated, dict):
        scores["field_accuracy"] = 0.0
        return scores
    if "refusal" in expected or "refusal" in generated:  # a refusal is right only where one is due
        scores["field_accuracy"] = float("refusal" in expected and "refusal" in generated)
        return scores
    want, got = _fields(expected), _fields(generated)
    hits = 0
    for name in FIELDS:
        if name in ("area_m2", "cost_total"):
            hits += _close(got[name], want[name])
        else:
            hits += got[name] == want[name]
    scores["field_accuracy"] = hits / len(FIELDS)
    return scores


def mean_scores(scores: Iterable[dict[str, float]]) -> dict[str, float]:
    """Rates over replies: json_parse_rate, schema_valid_rate, validator_pass_rate, field_accuracy and
    `<category>_ok_rate` (always all keys, so every DDP process logs the same names)."""
    rows = list(scores)
    if not rows:
        return {}
    names = {
        "parsed": "json_parse_rate",
        "schema_valid": "schema_valid_rate",
        "passed": "validator_pass_rate",
        "field_accuracy": "field_accuracy",
        **{f"{category}_ok": f"{category}_ok_rate" for category in CHECKED_CATEGORIES},
    }
    return {label: sum(r[key] for r in rows) / len(rows) for key, label in names.items()}


def masked_loss(
    logits: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean next-token cross-entropy, correct predictions, counted tokens) over labels != -100.

    logits (B, T, V) predict the token after each position; labels (B, T) are the input ids with -100
    where no loss is wanted.
    """
    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, 1:]
    mask = shift_labels != IGNORE
    count = mask.sum()
    loss = F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)),
        shift_labels.reshape(-1),
        ignore_index=IGNORE,
        reduction="sum",
    )
    correct = ((shift_logits.argmax(-1) == shift_labels) & mask).sum()
    return loss / count.clamp(min=1), correct, count


@torch.no_grad()
def evaluate_conversations(
    model: Any, tokenizer: Any, conversations: list, max_length: int = 1024
) -> dict[str, float]:
    """Eval loss and token accuracy of a (peft) causal LM on chat conversations, one at a time."""
    from housebrain.data.chat import collate_rows, encode_conversation

    total_loss, correct, count = 0.0, 0, 0
    device = next(model.parameters()).device
    for messages in conversations:
        sample = encode_conversation(tokenizer, messages).truncated(max_length)
        batch = collate_rows([[sample]], tokenizer.pad_token_id)
        logits = model(
            input_ids=batch["input_ids"].to(device),
            position_ids=batch["position_ids"].to(device),
            use_cache=False,
        ).logits
        loss, hits, n = masked_loss(logits, batch["labels"].to(device))
        total_loss += float(loss) * int(n)
        correct += int(hits)
        count += int(n)
    return {"loss": total_loss / max(count, 1), "token_accuracy": correct / max(count, 1)}


def generation_rates(
    model: Any, tokenizer: Any, conversations: list, max_new_tokens: int = 1024, constrained: bool = False
) -> dict[str, float]:
    """JSON parse / schema-valid / validator pass rates and field accuracy of greedy replies."""
    from housebrain.data.generator import requirements_from_prompt
    from housebrain.models.causal_lm import generate_reply

    scores = []
    for messages in conversations:
        reply = generate_reply(model, tokenizer, messages[:-1], max_new_tokens, constrained=constrained)
        scores.append(
            score_reply(requirements_from_prompt(messages[1]["content"]), messages[-1]["content"], reply)
        )
    return mean_scores(scores)
