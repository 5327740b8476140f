"""Causal attention per packed sample: the cost of packing without its dense block mask.

A packed row holds several samples whose position ids restart at 0. transformers' `sdpa` keeps them
apart with a block-diagonal (T x T) mask, but a masked SDPA cannot use the fused causal kernels and
computes every block, the off-diagonal ones too: for rows of 2048 tokens holding three samples of ~740
tokens that is about 4x the attention work of the samples alone, and on CPU it made packed training
slower than unpacked (0.81x for SmolLM2-135M). Here each sample of a row gets its own `is_causal` SDPA
call on its slice, so attention costs the sum of the samples' squares, like variable-length flash
attention, on any device and with no mask at all. Isolation holds by construction: a sample's queries
only ever see its own keys.

Registered with transformers as `SEGMENTED_ATTENTION` (attention and mask functions). Whenever a padding
mask is given (batched generation) or queries and keys differ in length (decoding with a KV cache),
both functions hand over to transformers' `sdpa`, so generation is unchanged.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from itertools import pairwise

import torch
import torch.nn.functional as F

from common.lightning_private import tensor_version

SEGMENTED_ATTENTION = "housebrain_segmented_sdpa"
#: Keyword arguments of attention variants this function does not implement, as transformers' attention
#: modules pass them: sliding windows (Mistral, Qwen2, Gemma), logit soft-capping (Gemma 2) and
#: attention sinks (gpt-oss's `s_aux`).
UNSUPPORTED_VARIANTS = ("sliding_window", "softcap", "s_aux")

#: Samples per row of the packed batch being run (None: not packed), set by `expect_packed_rows`.
_packed_rows: ContextVar[list[int] | None] = ContextVar("housebrain_packed_rows", default=None)


class PackedAttentionError(RuntimeError):
    """A packed batch whose samples the attention cannot keep apart (the message says why)."""


@contextmanager
def expect_packed_rows(samples_per_row: list[int] | None) -> Iterator[None]:
    """Within: a forward of rows packing `samples_per_row[b]` samples each; attention that gets no
    position ids, or fewer position restarts than samples, raises instead of mixing the samples."""
    token = _packed_rows.set(samples_per_row)
    try:
        yield
    finally:
        _packed_rows.reset(token)


def unsupported_variant(config: object) -> str | None:
    """Which attention variant of a model config this attention does not implement (None: none)."""
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
        return f"sliding-window attention (sliding_window={config.sliding_window})"
    if getattr(config, "attn_logit_softcapping", None):
        return f"attention logit soft-capping ({config.attn_logit_softcapping})"
    if getattr(config, "model_type", "") == "gpt_oss":
        return "attention sinks (gpt-oss)"
    return None


def segment_bounds(position_ids: torch.Tensor) -> list[list[tuple[int, int]]]:
    """Per row, the [start, end) spans of its samples: a new sample starts where the position is 0."""
    rows = []
    length = position_ids.shape[-1]
    for starts in (position_ids == 0).cpu().tolist():
        cuts = [i for i, is_start in enumerate(starts) if is_start and i > 0]
        edges = [0, *cuts, length]
        rows.append(list(pairwise(edges)))
    return rows


class LastSegmentBounds:
    """The bounds of the last `position_ids` seen: every layer of one forward gets the same tensor, so
    the device-to-host copy in `segment_bounds` happens once per forward, not once per layer. Held by
    weak reference and checked against the tensor's version counter, so a new or modified tensor is
    never matched to old bounds. Tensors made under `torch.inference_mode` (Lightning's validation and
    `mtl validate`) have no version counter, so their bounds are computed again at every layer."""

    def __init__(self) -> None:
        self.tensor: weakref.ref | None = None
        self.version: int | None = None
        self.bounds: list[list[tuple[int, int]]] = []

    def get(self, position_ids: torch.Tensor) -> list[list[tuple[int, int]]]:
        version = None if position_ids.is_inference() else tensor_version(position_ids)
        if (
            version is None
            or self.tensor is None
            or self.tensor() is not position_ids
            or self.version != version
        ):
            self.bounds = segment_bounds(position_ids)
            self.tensor, self.version = weakref.ref(position_ids), version
        return self.bounds


_last_bounds = LastSegmentBounds()


def segmented_sdpa_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """transformers attention function: query (B, H, T, D), key/value (B, H_kv, T, D) -> (B, T, H, D)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    variants = [name for name in UNSUPPORTED_VARIANTS if kwargs.get(name) is not None]
    if variants or getattr(module, "sinks", None) is not None:
        raise NotImplementedError(
            f"{SEGMENTED_ATTENTION}: {type(module).__name__} uses {variants or ['sinks']}, which this "
            "attention does not implement; load the model with attn_implementation='sdpa'"
        )
    position_ids = kwargs.get("position_ids")
    packed = _packed_rows.get()
    if packed is not None and attention_mask is None:
        if position_ids is None:
            raise PackedAttentionError(
                f"{SEGMENTED_ATTENTION}: a packed batch reached {type(module).__name__} without "
                "position_ids, so its samples would attend to each other; pass position_ids through "
                "the model or train with data.packing false"
            )
        found = [len(spans) for spans in _last_bounds.get(position_ids)]
        if len(found) == 1 and len(packed) > 1:
            found = found * len(packed)
        if any(f < n for f, n in zip(found, packed, strict=False)):
            raise PackedAttentionError(
                f"{SEGMENTED_ATTENTION}: rows pack {packed} samples but their position ids restart only "
                f"{found} times; the model rewrote the position ids and the samples would mix"
            )
    if attention_mask is not None or position_ids is None or query.shape[2] != key.shape[2]:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    groups = query.shape[1] // key.shape[1]
    if groups > 1:
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    bounds = _last_bounds.get(position_ids)
    if len(bounds) == 1 and query.shape[0] > 1:  # one row of positions shared by the batch
        bounds = bounds * query.shape[0]
    rows = []
    for row, spans in enumerate(bounds):
        pieces = [
            F.scaled_dot_product_attention(
                query[row : row + 1, :, start:end],
                key[row : row + 1, :, start:end],
                value[row : row + 1, :, start:end],
                dropout_p=dropout,
                is_causal=True,
                scale=scaling,
            )
            for start, end in spans
        ]
        rows.append(torch.cat(pieces, dim=2))
    return torch.cat(rows, dim=0).transpose(1, 2).contiguous(), None


def segmented_mask(*args, attention_mask: torch.Tensor | None = None, **kwargs) -> torch.Tensor | None:
    """No mask unless a padding mask is given (then `sdpa`'s, for `sdpa_attention_forward`)."""
    if attention_mask is None:
        return None
    from transformers.masking_utils import sdpa_mask

    return sdpa_mask(*args, attention_mask=attention_mask, **kwargs)


def register_segmented_attention() -> str:
    """Register the attention and mask functions with transformers (idempotent); returns their name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(SEGMENTED_ATTENTION, segmented_sdpa_forward)
    AttentionMaskInterface.register(SEGMENTED_ATTENTION, segmented_mask)
    return SEGMENTED_ATTENTION
