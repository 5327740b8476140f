"""`mtl serve` for a housebrain bundle: designs from requirements, and validation of a user's design.

    POST /v1/designs    Requirements JSON -> design JSON, validator findings, one SVG floor plan per level
    POST /v1/validate   {"requirements": {...}, "design": {...} or the model's reply text} -> findings, SVGs

Designs are generated with schema-constrained decoding on by default (`?constrained=false` turns it
off): lm-format-enforcer's token table for the tokenizer (`housebrain.models.constrained.tokenizer_data`,
a pass over the whole vocabulary) is built once when the model loads; each request only gets its own
parser state. Generation is one request at a time on the model thread (a language model does not
share a batch the way the vision models do) and stops when the server's timeout has passed.
"""

from __future__ import annotations

import json
import time
from typing import Any

import torch

from common.serving import Endpoint, Payload, RequestError, ServingHandler

MAX_NEW_TOKENS = 4096


def requirements_of(value: Any, field: str) -> Any:
    """`Requirements` from request JSON; a bad field is a 422 naming its path."""
    from pydantic import ValidationError

    from housebrain.design.schema import Requirements

    if not isinstance(value, dict):
        raise RequestError(field, "a Requirements object", type(value).__name__)
    try:
        return Requirements.model_validate(value)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in (field, *first["loc"]) if part != "body")
        found = f"{first.get('input')!r}: {first['msg']}" if "input" in first else first["msg"]
        raise RequestError(
            where or field, "a valid Requirements field (see the OpenAPI schema)", found
        ) from None


def floor_plans(report: Any, requirements: Any) -> dict[str, str]:
    from housebrain.design.render import floor_plan_svg

    if report.design is None:
        return {}
    return {f"level_{level.level}": floor_plan_svg(level, requirements) for level in report.design.levels}


class DesignHandler(ServingHandler):
    domain = "housebrain"

    def load(self) -> None:
        from housebrain.data.chat import end_of_turn_id
        from housebrain.models.causal_lm import load_for_inference
        from housebrain.models.constrained import tokenizer_data

        self.model, self.tokenizer = load_for_inference(self.bundle)
        self.end_token = end_of_turn_id(self.tokenizer)
        self.token_table = tokenizer_data(self.tokenizer, self.end_token)

    def endpoints(self) -> list[Endpoint]:
        from housebrain.design.schema import Requirements

        return [
            Endpoint(
                "/v1/designs",
                "A house design for the requirements: design JSON, validator findings, SVG per level",
                body="json",
                batched=False,
                handle=self.design,
                request_schema=Requirements.model_json_schema(),
                query_parameters=(
                    ("constrained", "boolean", "schema-constrained decoding (default true)"),
                    (
                        "max_new_tokens",
                        "integer",
                        f"generation length limit (default 1024, at most {MAX_NEW_TOKENS})",
                    ),
                ),
            ),
            Endpoint(
                "/v1/validate",
                "Validator findings and floor plans for a design the client already has",
                body="json",
                batched=False,
                handle=self.validate,
                request_schema={
                    "type": "object",
                    "required": ["requirements", "design"],
                    "properties": {
                        "requirements": Requirements.model_json_schema(),
                        "design": {"description": "HouseDesign JSON object, or a reply text holding one"},
                    },
                },
            ),
        ]

    def metadata(self) -> dict[str, Any]:
        return {"vocabulary": len(self.tokenizer), "constrained_default": True}

    def design(self, payload: Payload) -> dict[str, Any]:
        from housebrain.design.validator import validate_design
        from housebrain.evaluation import extract_json

        requirements = requirements_of(payload.data, "body")
        constrained = payload.query_value("constrained", bool, True)
        max_new_tokens = payload.query_value("max_new_tokens", int, 1024)
        if not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
            raise RequestError("query.max_new_tokens", f"1..{MAX_NEW_TOKENS}", str(max_new_tokens), 400)
        start = time.perf_counter()
        reply = self._generate(payload.data, max_new_tokens, constrained)
        seconds = time.perf_counter() - start
        report = validate_design(requirements, extract_json(reply))
        design = report.design.model_dump(mode="json") if report.design is not None else None
        return {
            "design": design,
            "reply": None if design is not None else reply,
            "findings": report.to_dict(),
            "svg": floor_plans(report, requirements),
            "constrained": constrained,
            "generation_seconds": round(seconds, 3),
        }

    def validate(self, payload: Payload) -> dict[str, Any]:
        from housebrain.design.validator import validate_design
        from housebrain.evaluation import extract_json

        if (
            not isinstance(payload.data, dict)
            or "requirements" not in payload.data
            or "design" not in payload.data
        ):
            found = sorted(payload.data) if isinstance(payload.data, dict) else type(payload.data).__name__
            raise RequestError("body", "an object with 'requirements' and 'design'", str(found))
        requirements = requirements_of(payload.data["requirements"], "requirements")
        design = payload.data["design"]
        if isinstance(design, str):
            design = extract_json(design)
        elif not isinstance(design, dict):
            raise RequestError("design", "a HouseDesign object or a reply text", type(design).__name__)
        report = validate_design(requirements, design)
        return {"findings": report.to_dict(), "svg": floor_plans(report, requirements)}

    @torch.no_grad()
    def _generate(self, requirements: dict[str, Any], max_new_tokens: int, constrained: bool) -> str:
        """Greedy reply to the training prompt, as `generate_reply`, with this process's token table."""
        from housebrain.data.chat import prompt_text
        from housebrain.data.generator import SYSTEM_PROMPT, USER_PREFIX

        messages = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": USER_PREFIX + json.dumps(requirements, separators=(",", ":"))},
        ]
        extra: dict[str, Any] = {}
        if constrained:
            extra["prefix_allowed_tokens_fn"] = self._schema_prefix_fn()
        ids = self.tokenizer(
            prompt_text(self.tokenizer, messages), add_special_tokens=False, return_tensors="pt"
        )
        input_ids = ids["input_ids"].to(next(self.model.parameters()).device)
        output = self.model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=self.end_token,
            pad_token_id=self.tokenizer.pad_token_id,
            use_cache=True,
            max_time=self.timeout_s,  # the request is answered 504 by then; stop spending the model on it
            **extra,
        )
        return self.tokenizer.decode(output[0, input_ids.shape[1] :], skip_special_tokens=True)

    def _schema_prefix_fn(self):
        from lmformatenforcer import JsonSchemaParser
        from lmformatenforcer.tokenenforcer import TokenEnforcer

        from housebrain.design.schema import HouseDesign

        enforcer = TokenEnforcer(self.token_table, JsonSchemaParser(HouseDesign.model_json_schema()))

        def allowed(batch_id: int, sequence: torch.Tensor) -> list[int]:
            return enforcer.get_allowed_tokens(sequence.tolist()).allowed_tokens

        return allowed
