"""`mtl housebrain <verb>`: generate, split, validate, design, merge, export-gguf, tiny-model.

    mtl housebrain generate --samples 500000 --out data/hb --workers 2
    mtl housebrain split --source data/hb --shards 6 --out data/hb-splits --zip true
    mtl housebrain merge --adapters runs/a/export runs/b/export --strategy average --out merged --eval data/hb/eval.jsonl
    mtl housebrain export-gguf --merged merged/merged --out housebrain-q8_0.gguf --quant q8_0
    mtl housebrain design --model merged/merged --requirements req.json --out design/

Heavy imports (torch, transformers, peft) happen inside the verbs so `mtl --help` stays fast.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from common.errors import MissingInputError, UserInputError


def generate(
    samples: int = 1000,
    out: str = "data/housebrain",
    workers: int = 1,
    eval_fraction: float = 0.02,
    seed: int = 0,
    validate: bool = True,
) -> dict[str, Any]:
    """Write procedural requests and their designs (or refusals) as chat JSONL (train.jsonl, eval.jsonl,
    meta.json with the dataset's statistics: feasibility, topologies, room programs, budget slack).

    Args:
        samples: number of samples in total (train + eval).
        out: output directory.
        workers: processes generating in parallel (the files do not depend on it).
        eval_fraction: share of samples in eval.jsonl (at least one).
        seed: dataset seed; the same seed gives the same files.
        validate: run the validator on every design (a failure is a generator bug and stops the run).
    """
    from housebrain.data.generator import write_dataset

    meta = write_dataset(
        out, samples, eval_fraction=eval_fraction, seed=seed, workers=workers, validate=validate
    )
    print(
        f"wrote {meta['train']} train + {meta['eval']} eval samples to {out} in {meta['seconds']:.1f} s "
        f"({meta['samples_per_second']:.0f} samples/s, {workers} worker(s), validated={validate})"
    )
    stats = meta["statistics"]
    slack = stats["budget_slack_cost_over_budget"]
    print(
        f"{stats['designs']} designs ({stats['reduced_designs']} reduced), {stats['refusals']} refusals "
        f"{stats['refusal_reasons']}; {stats['distinct_room_programs']} room programs; topologies "
        f"{stats['topologies']}; cost/budget p05 {slack['p05']} p50 {slack['p50']} p95 {slack['p95']}, "
        f"correlation {stats['cost_budget_correlation']} (all in {out}/meta.json)"
    )
    return meta


def split(
    source: str, shards: int = 6, out: str = "data/housebrain-splits", seed: int = 0, zip: bool = False
) -> dict[str, Any]:
    """Split train.jsonl into balanced, disjoint shards split_01..split_NN with a manifest.

    Args:
        source: dataset directory holding train.jsonl (and eval.jsonl, copied into every shard).
        shards: number of shards.
        out: output directory (split_NN/ folders, manifest.json, split_NN.zip).
        seed: permutation seed; the same source and seed give identical shards.
        zip: also write one split_NN.zip archive per shard.
    """
    from housebrain.data.shards import split_dataset

    manifest = split_dataset(source, shards, out, seed=seed, archive=zip)
    counts = ", ".join(f"{s['name']}: {s['train']}" for s in manifest["shards"])
    print(
        f"split {manifest['samples']} samples into {shards} shards in {out} ({counts}); manifest.json written"
    )
    return manifest


def validate(requirements: str, design: str) -> dict[str, Any]:
    """Check a design JSON file against a requirements JSON file; print the findings.

    Args:
        requirements: requirements JSON file.
        design: design JSON file (or a model reply containing one JSON object).
    """
    from housebrain.design.validator import validate_design
    from housebrain.evaluation import extract_json

    report = validate_design(_read_requirements(requirements), extract_json(Path(design).read_text()))
    for finding in report.findings:
        if finding.category == "parse":  # the JSON error's line and column are in this file
            finding.message = f"{design}: {finding.message}"
    result = report.to_dict()
    print(json.dumps(result, indent=2))
    if not report.passed:
        sys.exit(1)
    return result


def design(
    requirements: str,
    model: str | None = None,
    design_file: str | None = None,
    out: str = "design",
    max_new_tokens: int = 1024,
    constrained: bool = False,
) -> dict[str, Any]:
    """Design a house with a trained model (or draw a given design): JSON, findings, SVG per level, OBJ/GLB.

    Prints the design JSON and the validator's findings; writes design.json (the raw reply when it is
    not JSON), findings.json, level_<n>.svg for every level, massing.obj and massing.glb into `out`.

    Args:
        requirements: requirements JSON file (plot, floors, bedrooms, bathrooms, budget, ...).
        model: export bundle, .ckpt of `mtl fit`, peft adapter directory, merged model directory or .gguf file.
        design_file: draw this design JSON instead of generating one.
        out: output directory.
        max_new_tokens: generation length limit.
        constrained: decode with the HouseDesign JSON schema enforced (lm-format-enforcer).
    """
    from housebrain.data.generator import SYSTEM_PROMPT, USER_PREFIX
    from housebrain.design.render import floor_plan_svg, massing_glb, massing_obj
    from housebrain.design.validator import validate_design
    from housebrain.evaluation import extract_json

    req = _read_requirements(requirements)
    req_data = _read_json(requirements)  # the prompt shows the user's JSON as written
    if design_file:
        reply = Path(design_file).read_text()
    elif model:
        from housebrain.models.causal_lm import generate_reply, load_for_inference

        lm, tokenizer = load_for_inference(model)
        messages = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": USER_PREFIX + json.dumps(req_data, separators=(",", ":"))},
        ]
        reply = generate_reply(lm, tokenizer, messages, max_new_tokens, constrained=constrained)
    else:
        raise UserInputError("give --model (to generate a design) or --design_file (to draw one)")
    text = extract_json(reply)
    report = validate_design(req, text)
    directory = Path(out)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "design.json").write_text(text if report.parsed else reply)
    (directory / "findings.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    written = ["design.json", "findings.json"]
    if report.design is not None:
        for level in report.design.levels:
            name = f"level_{level.level}.svg"
            (directory / name).write_text(floor_plan_svg(level, req))
            written.append(name)
        (directory / "massing.obj").write_text(massing_obj(report.design))
        (directory / "massing.glb").write_bytes(massing_glb(report.design))
        written += ["massing.obj", "massing.glb"]
    print(text)
    print(json.dumps(report.to_dict(), indent=2))
    print(f"wrote {', '.join(written)} to {directory}")
    return {"passed": report.passed, "files": written}


def merge(
    adapters: list[str],
    out: str,
    strategy: Literal["average", "weighted", "best", "ties", "dare_ties", "dare_linear"] = "average",
    weights: list[float] | None = None,
    metric: str = "val/loss",
    metric_mode: Literal["auto", "min", "max"] = "auto",
    density: float = 0.5,
    seed: int = 0,
    eval: str | None = None,
    eval_samples: int = 16,
    generate_samples: int = 0,
    max_length: int = 1024,
    max_new_tokens: int = 1536,
    constrained: bool = False,
    merged_dtype: Literal["float32", "float16", "bfloat16"] = "bfloat16",
    base: str | None = None,
) -> dict[str, Any]:
    """Merge LoRA adapters; export a peft adapter dir and a merged full model; report against each input.

    Writes `out/adapter/` (peft, loadable with PeftModel.from_pretrained), `out/merged/` (transformers
    model with the merge folded into the weights), `out/report.json` and `out/report.md`.

    Args:
        adapters: adapter directories or export bundles (their `adapter/` is used).
        out: output directory.
        strategy: average | weighted | best (exact or selection) or ties | dare_ties | dare_linear
            (on the deltas scale * B @ A, as the TIES and DARE papers define them).
        weights: merge weights for average/weighted/ties/dare (normalised); default for weighted: from
            --metric (bundles' metrics.json, or measured with --eval).
        metric: metric that `weighted` and `best` use (val/loss, val/validator_pass_rate, ...).
        metric_mode: min (lower is better) or max; auto infers it for the project's metrics.
        density: fraction of each delta kept by ties (largest magnitudes) and dare (at random).
        seed: seed of DARE's random drop (recorded in the report; same seed, same merge).
        eval: chat JSONL to evaluate every adapter and the merge on (eval loss, token accuracy).
        eval_samples: number of eval samples used.
        generate_samples: eval prompts answered by generation for JSON/validator pass rates (0: skip).
        max_length: samples longer than this many tokens are truncated for the eval loss.
        max_new_tokens: generation length limit for --generate_samples.
        constrained: also generate with schema-constrained decoding and report those rates beside.
        merged_dtype: dtype of the merged full model's weights (16-bit: SmolLM2-135M ~270 MB).
        base: where the base model is on this machine (directory or .gguf); it must hold the weights the
            adapters were trained on (checked by SHA-256 and size). Default: the path recorded at training.
    """
    from housebrain.merging import merge_adapters

    report = merge_adapters(
        adapters,
        out,
        strategy=strategy,
        weights=weights,
        metric=metric,
        metric_mode=metric_mode,
        density=density,
        seed=seed,
        eval_file=eval,
        eval_samples=eval_samples,
        generate_samples=generate_samples,
        max_length=max_length,
        max_new_tokens=max_new_tokens,
        constrained=constrained,
        merged_dtype=merged_dtype,
        base=base,
    )
    print(Path(out, "report.md").read_text())
    return report


def export_gguf(merged: str, out: str, quant: Literal["q8_0", "f16"] = "q8_0") -> dict[str, Any]:
    """Write a merged model (`mtl housebrain merge`'s out/merged) as one GGUF file for llama.cpp.

    Args:
        merged: merged transformers model directory (Llama architecture: SmolLM2).
        out: the .gguf file to write.
        quant: q8_0 (8.5 bits a weight; SmolLM2-135M about 145 MB) or f16 (about 270 MB).
    """
    from housebrain.gguf_export import export_gguf as write

    result = write(merged, out, quant)
    print(f"wrote {result['out']}: {result['tensors']} tensors, {result['bytes'] / 1e6:.1f} MB ({quant})")
    return result


def tiny_model(out: str = ".cache/mtl/housebrain/tiny-llama", samples: int = 300) -> str:
    """Write a tiny random Llama with a tokenizer trained offline on generated designs (for tests/demos).

    Args:
        out: model directory.
        samples: generated samples the tokenizer is trained on.
    """
    from housebrain.models.causal_lm import ensure_tiny_llama

    path = ensure_tiny_llama(out, samples)
    print(f"tiny model in {path}")
    return str(path)


def _read_json(path: str) -> Any:
    file = Path(path)
    try:
        return json.loads(file.read_text())
    except FileNotFoundError:
        raise MissingInputError(f"{file}: file not found") from None
    except json.JSONDecodeError as error:
        raise UserInputError(f"{file}: not valid JSON ({error.msg} at line {error.lineno})") from error


def _read_requirements(path: str) -> Any:
    """Requirements from a JSON file; a bad field is reported with the file and the field's path."""
    from pydantic import ValidationError

    from housebrain.design.schema import Requirements

    try:
        return Requirements.model_validate(_read_json(path))
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in error.errors())
        raise UserInputError(f"{path}: invalid requirements: {problems}") from None


def commands() -> dict[str, Callable[..., Any]]:
    return {
        "generate": generate,
        "split": split,
        "validate": validate,
        "design": design,
        "merge": merge,
        "export-gguf": export_gguf,
        "tiny-model": tiny_model,
    }
