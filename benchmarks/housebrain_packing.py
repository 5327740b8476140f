"""Training throughput with and without sequence packing (baseline: no packing, batch 1 as in the plan).

    .venv/bin/python benchmarks/housebrain_packing.py [--steps 4] [--max-length 2048] [--model PATH|tiny] [--device cuda]

Short samples (single-floor designs; SmolLM2-135M by default, CPU one thread): reply-masked LoRA SFT steps
(forward, backward, AdamW) on rows of one sample each (padded batches of `--batch` samples) versus rows
packed to `--max-length` tokens, with per-sample attention (ours) and, for comparison, transformers'
dense block-diagonal mask. Throughput counts real tokens only (padding excluded).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from housebrain.data.chat import collate_rows, encode_conversation, pack
from housebrain.data.generator import requirements_from_prompt, sample
from housebrain.evaluation import masked_loss
from housebrain.models.causal_lm import default_model_path, ensure_tiny_llama
from housebrain.task import HouseDesignSFT


def tokens_per_second(task: HouseDesignSFT, rows: list, batch: int, steps: int) -> float:
    optimizer = task.configure_optimizers()
    batches = [
        collate_rows(rows[i : i + batch], task.tokenizer.pad_token_id) for i in range(0, len(rows), batch)
    ]
    real = 0
    start = None
    for step in range(steps + 1):
        if step == 1:  # the first step warms up kernels and allocators
            start = time.perf_counter()
            real = 0
        data = batches[step % len(batches)]
        data = {k: v.to(task.device) for k, v in data.items()}
        loss, _, _ = masked_loss(task(data["input_ids"], data["position_ids"]), data["labels"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        real += int((data["sample_index"] >= 0).sum())
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return real / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--model", default="", help="local HF dir, .gguf or 'tiny' (default: SmolLM2 GGUF)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()
    if args.device == "cpu":
        torch.set_num_threads(1)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        model_path = args.model or default_model_path()
        if args.model == "tiny":
            model_path = str(ensure_tiny_llama(Path(tmp) / "tiny", samples=100))
        task = HouseDesignSFT(model_path=model_path, eval_generate_samples=0).to(args.device)
        short = [
            s
            for s in (sample(i)["messages"] for i in range(400))
            if requirements_from_prompt(s[1]["content"])["floors"] == 1
        ]
        samples = [encode_conversation(task.tokenizer, m) for m in short[:120]]
        mean = sum(len(s.input_ids) for s in samples) / len(samples)
        plain = tokens_per_second(task, [[s] for s in samples], args.batch, args.steps)
        packed_rows = pack(samples, args.max_length)
        packed = tokens_per_second(task, packed_rows, args.batch, args.steps)
        task.model.get_base_model().set_attn_implementation("sdpa")  # transformers' block-diagonal mask
        masked = tokens_per_second(task, packed_rows, args.batch, args.steps)
    print(
        f"{len(samples)} single-floor samples, mean {mean:.0f} tokens; packed {len(samples) / len(packed_rows):.1f} per row"
    )
    print(f"no packing, batch {args.batch} (baseline): {plain:8.0f} tokens/s")
    print(f"packing to {args.max_length}, batch {args.batch}:  {packed:8.0f} tokens/s  x{packed / plain:.2f}")
    print(
        f"packing, transformers' dense block mask instead of per-sample attention: {masked:8.0f} tokens/s"
        f"  x{masked / plain:.2f}"
    )


if __name__ == "__main__":
    main()
