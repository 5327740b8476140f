"""LoRA SFT end to end: the quickstart recipe through the real CLI, adapter-only checkpoints, resume, export."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from common.checkpoint import read_checkpoint
from common.export import export_checkpoint, load_bundle
from housebrain.data.chat import collate_rows, encode_conversation, read_chat_jsonl
from housebrain.evaluation import masked_loss
from housebrain.task import HouseDesignSFT

REPO = Path(__file__).resolve().parents[2]
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def test_loss_goes_down_on_reply_tokens(tiny_model: Path, dataset: Path) -> None:
    torch.manual_seed(0)
    task = HouseDesignSFT(
        model_path=str(tiny_model), lr=1e-2, eval_generate_samples=0, target_modules=ALL_LINEAR
    )
    samples = [encode_conversation(task.tokenizer, m) for m in read_chat_jsonl(dataset / "train.jsonl")[:2]]
    batch = collate_rows([[s] for s in samples], task.tokenizer.pad_token_id)
    optimizer = task.configure_optimizers()
    losses = []
    for _ in range(20):
        loss, _, _ = masked_loss(task(batch["input_ids"], batch["position_ids"]), batch["labels"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.3, losses
    # only LoRA weights train; the base model is frozen
    trainable = [n for n, p in task.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def test_the_whole_model_trains_in_training_mode_as_with_transformers_trainer(tiny_model: Path) -> None:
    task = HouseDesignSFT(model_path=str(tiny_model), lora_dropout=0.5, eval_generate_samples=0)
    assert all(module.training for module in task.modules())  # the base model too, not only LoRA
    dropouts = [m for n, m in task.named_modules() if n.endswith("lora_dropout.default")]
    assert dropouts and dropouts[0].p == 0.5
    assert (dropouts[0](torch.ones(1000)) == 0).any()  # active, not the identity


def test_gradient_checkpointing_gives_the_same_gradients(tiny_model: Path, dataset: Path) -> None:
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        task = HouseDesignSFT(
            model_path=str(tiny_model), lora_dropout=0.0, gradient_checkpointing=checkpointing
        )
        task.train()
        assert task.model.get_base_model().is_gradient_checkpointing == checkpointing
        for name, p in task.named_parameters():
            if "lora_B" in name:  # non-zero B so that A gets gradients too
                torch.nn.init.normal_(p, std=0.02, generator=torch.Generator().manual_seed(1))
        sample = encode_conversation(task.tokenizer, read_chat_jsonl(dataset / "train.jsonl")[0])
        batch = collate_rows([[sample]], task.tokenizer.pad_token_id)
        masked_loss(task(batch["input_ids"], batch["position_ids"]), batch["labels"])[0].backward()
        grads.append({n: p.grad.clone() for n, p in task.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-6, rtol=1e-4)


def test_quickstart_fit_checkpoints_resume_and_export(
    mtl, housebrain_cli, tmp_path: Path, tiny_model: Path, dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    shutil.copytree(dataset, tmp_path / "data")
    common = [
        "fit",
        "--config",
        str(REPO / "configs/housebrain/quickstart.yaml"),
        "--model.init_args.model_path",
        str(tiny_model),
        "--data.init_args.tokenizer",
        str(tiny_model),
        "--model.init_args.eval_generate_samples",
        "1",
        "--model.init_args.eval_max_new_tokens",
        "8",
        "--model.init_args.eval_constrained",
        "true",
        "--data.init_args.root",
        "data",
        "--data.init_args.max_val_samples",
        "2",
        "--checkpoint_every_n_steps",
        "2",
        "--keep_last_checkpoints",
        "2",
        "--trainer.val_check_interval",
        "4",
        "--trainer.enable_progress_bar",
        "false",
    ]
    mtl([*common, "--trainer.max_steps", "4"])
    run = tmp_path / "runs/housebrain/quickstart"
    last = run / "checkpoints/last.ckpt"
    checkpoint = read_checkpoint(last)
    assert checkpoint["global_step"] == 4
    assert checkpoint["state_dict"] and all("lora_" in k for k in checkpoint["state_dict"])
    assert last.stat().st_size < 1_000_000  # adapter + optimizer state, not the base model
    trainable = len(checkpoint["state_dict"])
    assert len(checkpoint["optimizer_states"][0]["state"]) == trainable
    assert (run / "checkpoints/best.ckpt").is_file()
    assert sorted(p.name for p in (run / "checkpoints").glob("step*.ckpt")) == [
        "step00000002.ckpt",
        "step00000004.ckpt",
    ]

    mtl([*common, "--trainer.max_steps", "6", "--ckpt_path", "last"])
    assert read_checkpoint(last)["global_step"] == 6
    metrics = json.loads((run / "export/metrics.json").read_text())
    assert metrics["global_step"] == 6 and "val/loss" in metrics and "val/json_parse_rate" in metrics
    assert "val/constrained_schema_valid_rate" in metrics
    # best.ckpt is chosen by val/select = this validation's loss minus its validator pass rate
    assert metrics["val/select"] == pytest.approx(
        metrics["val/loss"] - metrics["val/validator_pass_rate"], abs=1e-4
    )

    bundle = load_bundle(run / "export")
    resumed = read_checkpoint(last)["state_dict"]
    name = next(iter(resumed))
    torch.testing.assert_close(dict(bundle.named_parameters())[name], resumed[name])
    assert isinstance(
        bundle.generate(read_chat_jsonl(tmp_path / "data/eval.jsonl")[0][:-1], max_new_tokens=4), str
    )

    from peft import PeftModel

    from housebrain.models.causal_lm import load_causal_lm

    base, _ = load_causal_lm(tiny_model)
    adapter = PeftModel.from_pretrained(base, str(run / "export/adapter"))
    key = name.removeprefix("model.").replace(".default.", ".default.")
    torch.testing.assert_close(dict(adapter.named_parameters())[key], resumed[name])

    # the platform's `mtl export` works on adapter-only checkpoints too
    again = load_bundle(export_checkpoint(last, out=tmp_path / "from-ckpt"))
    torch.testing.assert_close(dict(again.named_parameters())[name], resumed[name])

    # and `mtl housebrain design` takes the export bundle as its model
    requirements = json.loads(
        read_chat_jsonl(tmp_path / "data/eval.jsonl")[0][1]["content"].split("\n", 1)[1]
    )
    (tmp_path / "req.json").write_text(json.dumps(requirements))
    housebrain_cli(
        ["design", "--model", run / "export", "--requirements", "req.json", "--max_new_tokens", "8"]
    )
    assert (tmp_path / "design/findings.json").is_file()
