"""CheckpointExport: write the self-contained export bundle when fit ends."""

from __future__ import annotations

from pathlib import Path

import yaml
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from common.export import export_bundle, model_config_from_run
from common.run_directory import run_directory


class CheckpointExport(Callback):
    """At the end of fit, export the trained module (see `common.export` for the bundle's layout).

    Args:
        enabled: set False to skip the export.
        out_dir: bundle directory; default `<run dir>/export` (SageMaker's profile points it at
            /opt/ml/model so the job's model artefact is the bundle).
        fp16: also write float16 weights (the FWI users train and infer in float16).
        bf16: also write bfloat16 weights.
        onnx: also write model.onnx, checked against PyTorch with onnxruntime; needs the module's
            `example_input_array`.
        onnx_tolerance: largest allowed onnxruntime-vs-PyTorch difference, relative to each output's
            scale (at least 1).
    """

    def __init__(
        self,
        enabled: bool = True,
        out_dir: str | None = None,
        fp16: bool = False,
        bf16: bool = False,
        onnx: bool = False,
        onnx_tolerance: float = 1e-4,
    ) -> None:
        self.enabled = enabled
        self.out_dir = out_dir
        self.fp16 = fp16
        self.bf16 = bf16
        self.onnx = onnx
        self.onnx_tolerance = onnx_tolerance
        self.exported_to: Path | str | None = None

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.enabled and not trainer.fast_dev_run:
            self._export(trainer, pl_module, Path(run_directory(trainer)))

    @rank_zero_only
    def _export(self, trainer: Trainer, pl_module: LightningModule, run_dir: Path) -> None:
        config_path = run_dir / "config.yaml"
        run_config = yaml.safe_load(config_path.read_text()) if config_path.is_file() else None
        metrics = {
            **trainer.logged_metrics,
            **trainer.callback_metrics,
            "global_step": trainer.global_step,
            "epoch": trainer.current_epoch,
        }
        self.exported_to = export_bundle(
            pl_module,
            self.out_dir or run_dir / "export",  # out_dir may be an fsspec URL
            model_config=model_config_from_run(run_config),
            run_config=run_config,
            metrics=metrics,
            fp16=self.fp16,
            bf16=self.bf16,
            onnx=self.onnx,
            onnx_tolerance=self.onnx_tolerance,
        )
        rank_zero_info(f"CheckpointExport: bundle written to {self.exported_to}")
