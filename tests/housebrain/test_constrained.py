"""Schema-constrained decoding: even a random model can only write reply JSON (a design or a refusal)."""

from __future__ import annotations

import re
from pathlib import Path

from housebrain.data.generator import sample
from housebrain.design.schema import reply_json_schema
from housebrain.models.causal_lm import generate_reply, load_causal_lm


def schema_keys() -> set[str]:
    schema = reply_json_schema()
    keys: set[str] = set()
    for definition in schema["$defs"].values():
        keys |= set(definition.get("properties", {}))
    return keys


def test_constrained_reply_follows_the_schema(tiny_model: Path) -> None:
    model, tokenizer = load_causal_lm(tiny_model)
    messages = sample(0)["messages"][:-1]
    free = generate_reply(model.eval(), tokenizer, messages, max_new_tokens=40)
    constrained = generate_reply(model, tokenizer, messages, max_new_tokens=120, constrained=True)
    assert constrained.lstrip().startswith("{")
    keys = re.findall(r'"([A-Za-z_0-9]+)"\s*:', constrained)
    assert keys and set(keys) <= schema_keys()
    assert not free.lstrip().startswith('{"')  # the untrained model alone writes no JSON


def test_token_table_is_built_once_per_tokenizer(tiny_model: Path, monkeypatch) -> None:
    """Building the table decodes every token twice; replies after the first reuse it."""
    from housebrain.models import constrained as constrained_module

    builds: list[int] = []
    real_build = constrained_module.build_tokenizer_data

    def counting_build(tokenizer, end_token_id):
        builds.append(id(tokenizer))
        return real_build(tokenizer, end_token_id)

    monkeypatch.setattr(constrained_module, "build_tokenizer_data", counting_build)
    monkeypatch.setattr(constrained_module, "_TABLES", {})
    model, tokenizer = load_causal_lm(tiny_model)
    model.eval()
    first, second = sample(0)["messages"][:-1], sample(1)["messages"][:-1]
    generate_reply(model, tokenizer, first, max_new_tokens=8, constrained=True)
    generate_reply(model, tokenizer, second, max_new_tokens=8, constrained=True)
    assert builds == [id(tokenizer)]
    _, other_tokenizer = load_causal_lm(tiny_model)  # another tokenizer object: its own table
    generate_reply(model, other_tokenizer, first, max_new_tokens=8, constrained=True)
    assert builds == [id(tokenizer), id(other_tokenizer)]
