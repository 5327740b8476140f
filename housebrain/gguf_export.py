"""A merged HouseBrain model as one GGUF file (Q8_0 or F16), for llama.cpp and transformers' `gguf_file=`.

Written with the `gguf` package (the llama.cpp project's Python writer) in the layout of llama.cpp's
`convert_hf_to_gguf.py` for the Llama architecture (SmolLM2 is one): the `llama.*` hyperparameters,
a GPT-2 style BPE vocabulary (`tokenizer.ggml.tokens`, `token_type`, `merges`, special token ids and
the chat template), and tensors under the GGUF names that `gguf.get_tensor_name_map` gives for the
Hugging Face names. The q and k projections are stored with llama.cpp's rotary permutation (rows of
each head interleaved by halves), which transformers' GGUF loader undoes (`LlamaTensorProcessor`).

Q8_0 (blocks of 32 weights, one fp16 scale each: 8.5 bits a weight) is `gguf.quants.quantize`'s; 1-D
tensors (norms) stay F32 as llama.cpp keeps them. SmolLM2-135M: about 145 MB in Q8_0, 270 MB in F16.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.errors import UserInputError

QUANTS = ("q8_0", "f16")


class GGUFExportError(UserInputError):
    """A model that cannot be written as GGUF here (the message names the directory)."""


def rotary_permute(weights: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's permutation of a q/k projection (out, in): per head, rows (2, half) -> (half, 2)."""
    half = weights.shape[0] // heads // 2
    return weights.reshape(heads, 2, half, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


def _vocabulary(tokenizer: Any) -> tuple[list[str], list[int], list[str]]:
    """(tokens by id, token types, BPE merges) of a byte-level BPE tokenizer."""
    import gguf

    state = json.loads(tokenizer.backend_tokenizer.to_str())
    model = state["model"]
    if model.get("type") != "BPE":
        raise GGUFExportError(f"tokenizer model {model.get('type')!r}: only byte-level BPE is written")
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    special = set(tokenizer.all_special_ids) | {
        t["id"] for t in state.get("added_tokens", []) if t.get("special")
    }
    types = [
        int(gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL) for i in range(len(tokens))
    ]
    return [t if t is not None else f"[PAD{i}]" for i, t in enumerate(tokens)], types, merges


def export_gguf(merged: str | Path, out: str | Path, quant: str = "q8_0") -> dict[str, Any]:
    """Write the transformers model in `merged` to `out` (.gguf); returns what was written."""
    import gguf
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    merged, out = Path(merged), Path(out)
    if quant not in QUANTS:
        raise GGUFExportError(f"--quant must be one of {', '.join(QUANTS)}, got {quant!r}")
    if not (merged / "config.json").is_file():
        raise GGUFExportError(
            f"{merged}: expected a merged model directory with config.json (mtl housebrain merge's out/merged)"
        )
    config = AutoConfig.from_pretrained(merged, local_files_only=True)
    if config.model_type != "llama":
        raise GGUFExportError(
            f"{merged}: model_type {config.model_type!r}; export-gguf writes Llama models (SmolLM2)"
        )
    model = AutoModelForCausalLM.from_pretrained(merged, local_files_only=True, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(merged, local_files_only=True)
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    qtype = gguf.GGMLQuantizationType.Q8_0 if quant == "q8_0" else gguf.GGMLQuantizationType.F16

    writer = gguf.GGUFWriter(str(out), "llama")
    writer.add_name(merged.parent.name if merged.name == "merged" else merged.name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(head_dim)
    rope_theta = getattr(config, "rope_theta", None) or (getattr(config, "rope_parameters", None) or {}).get(
        "rope_theta", 10000.0
    )
    writer.add_rope_freq_base(float(rope_theta))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(len(tokenizer))
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if quant == "q8_0" else gguf.LlamaFileType.MOSTLY_F16)
    tokens, types, merges = _vocabulary(tokenizer)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for setter, token_id in (
        (writer.add_bos_token_id, tokenizer.bos_token_id),
        (writer.add_eos_token_id, tokenizer.eos_token_id),
        (writer.add_pad_token_id, tokenizer.pad_token_id),
    ):
        if token_id is not None:
            setter(int(token_id))
    if getattr(tokenizer, "chat_template", None):
        writer.add_chat_template(tokenizer.chat_template)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    written = 0
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight" and config.tie_word_embeddings:
            continue
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            if "rotary_emb" in hf_name:
                continue
            raise GGUFExportError(f"{merged}: no GGUF name for tensor {hf_name}")
        data = tensor.detach().float().numpy()
        if name.endswith("attn_q.weight"):
            data = rotary_permute(data, heads)
        elif name.endswith("attn_k.weight"):
            data = rotary_permute(data, kv_heads)
        if data.ndim == 1:
            writer.add_tensor(name, data.astype(np.float32))
        elif quant == "q8_0" and data.shape[-1] % 32 == 0:
            writer.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(name, data.astype(np.float16))
        written += 1
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return {"out": str(out), "quant": quant, "tensors": written, "bytes": out.stat().st_size}
