"""Constrained decoding: replies that can only be JSON valid against the reply schema (design or refusal).

Uses lm-format-enforcer's character-level JSON-schema parser and token enforcer. Its transformers
integration module does not import with transformers 5 (it imports `transformers.tokenization_utils`),
so the small adapter it provides (token table + `prefix_allowed_tokens_fn`) is rebuilt here on its
public core classes.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch


def _decode(tokenizer: Any, tokens: list[int]) -> str:
    return tokenizer.decode(tokens).rstrip("\ufffd")


#: Token tables already built in this process, by tokenizer object and end token (building one decodes
#: every token twice: about a second for SmolLM2's 49k tokens, once per process instead of per reply).
_TABLES: dict[tuple[int, int, int], tuple[Any, Any]] = {}


def tokenizer_data(tokenizer: Any, end_token_id: int) -> Any:
    """lm-format-enforcer's view of a tokenizer (cached per process; see `_TABLES`)."""
    key = (id(tokenizer), len(tokenizer), end_token_id)
    cached = _TABLES.get(key)
    if cached is None or cached[0] is not tokenizer:
        cached = (tokenizer, build_tokenizer_data(tokenizer, end_token_id))
        _TABLES[key] = cached
    return cached[1]


def build_tokenizer_data(tokenizer: Any, end_token_id: int) -> Any:
    """lm-format-enforcer's view of a tokenizer: (id, text, starts a word) for every regular token."""
    from lmformatenforcer.tokenenforcer import TokenEnforcerTokenizerData

    zero = tokenizer.encode("0", add_special_tokens=False)[-1]
    special = set(tokenizer.all_special_ids)
    regular = []
    for token_id in range(len(tokenizer)):
        if token_id in special:
            continue
        after_zero = tokenizer.decode([zero, token_id])[1:]
        regular.append((token_id, after_zero, len(after_zero) > len(tokenizer.decode([token_id]))))
    return TokenEnforcerTokenizerData(
        regular, partial(_decode, tokenizer), end_token_id, False, len(tokenizer)
    )


def schema_prefix_fn(
    tokenizer: Any, schema: dict[str, Any], end_token_id: int
) -> Callable[[int, torch.Tensor], list[int]]:
    """`prefix_allowed_tokens_fn` for `model.generate` that only allows JSON matching `schema`."""
    from lmformatenforcer import JsonSchemaParser
    from lmformatenforcer.tokenenforcer import TokenEnforcer

    enforcer = TokenEnforcer(tokenizer_data(tokenizer, end_token_id), JsonSchemaParser(schema))

    def allowed(batch_id: int, sequence: torch.Tensor) -> list[int]:
        return enforcer.get_allowed_tokens(sequence.tolist()).allowed_tokens

    return allowed
