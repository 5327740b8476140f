"""VelocityEnsemble: several trained velocity models as one LightningModule with the task's forward contract.

`forward(seismic, family=None)` takes raw gathers (B, 5, 1000, 70) and returns m/s (B, 1, 70, 70),
like `VelocityInversionTask`, so `mtl fwi submit` and `common.export.load_bundle` take an ensemble
bundle like any model. Each member keeps its own normalisation (its buffers) and architecture; the
ensemble combines their m/s maps per pixel:

    median    the per-pixel median (the MAE-optimal point summary of the members; default)
    mean      the per-pixel mean
    weighted  a weighted mean, weights >= 0 summing to one, fitted to minimise MAE on validation data;
              with `family_weights` one vector per family, used for samples whose family is known
              (OpenFWI validation/test data), the global `weights` for the rest (Kaggle test files)

`tta: true` averages each member with its mirrored survey flipped back before combining (the flip
TTA of `submit --tta`, which also composes on top). `refine` applies a TV prior from
`fwi.refinement` to the combined map. The bundle stores every member's class path and init args in
the ensemble's own init args and every member's weights under `members.<i>.` in one safetensors
file: nothing outside the bundle directory is needed to load it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule
from torch import nn

from common.errors import UserInputError
from fwi.data.datasets import mirror_sample
from fwi.data.families import FAMILIES, family_index
from fwi.data.normalization import denormalize_velocity, normalize_velocity
from fwi.refinement import PRIORS, flat_families_mask, refine
from fwi.task import TRAINING_DATA_FILE, VELOCITY_SCALE

METHODS = ("median", "mean", "weighted")


class EnsembleError(UserInputError):
    """An ensemble that cannot be built from what the user gave (the message names the member/field)."""


def combine(predictions: torch.Tensor, method: str, weights: torch.Tensor | None = None) -> torch.Tensor:
    """(M, B, 1, H, W) member maps -> (B, 1, H, W): median, mean or weighted mean over members."""
    if method == "median":
        # the mean of the two middle values for an even M (as numpy), not torch.median's lower one
        ordered = predictions.sort(dim=0).values
        m = predictions.shape[0]
        return 0.5 * (ordered[(m - 1) // 2] + ordered[m // 2])
    if method == "mean":
        return predictions.mean(0)
    if method == "weighted":
        if weights is None:
            raise EnsembleError("method weighted needs weights (fit them with a validation directory)")
        w = weights.to(predictions).reshape(-1, *([1] * (predictions.dim() - 1)))
        return (predictions * w).sum(0)
    raise EnsembleError(f"--method: expected one of {METHODS}, got {method!r}")


def fit_weights(predictions: torch.Tensor, target: torch.Tensor, steps: int = 300) -> torch.Tensor:
    """Simplex weights (M,) minimising the MAE of the weighted mean of `predictions` (M, N, ...) to `target`.

    Softmax-parameterised, Adam on the exact L1 loss, started from equal weights (the mean ensemble).
    """
    m = predictions.shape[0]
    logits = torch.zeros(m, requires_grad=True)
    optimizer = torch.optim.Adam([logits], lr=0.05)
    flat_predictions = predictions.reshape(m, -1).float()
    flat_target = target.reshape(-1).float()
    for _ in range(steps):
        optimizer.zero_grad()
        loss = (torch.softmax(logits, 0) @ flat_predictions - flat_target).abs().mean()
        loss.backward()
        optimizer.step()
    return torch.softmax(logits.detach(), 0)


def family_weight_table(
    family_weights: Mapping[str, Sequence[float]] | None, weights: torch.Tensor
) -> torch.Tensor:
    """(n_families, M) simplex rows: each named family's weights (normalised), the global ones elsewhere."""
    table = weights[None].repeat(len(FAMILIES), 1)
    for name, row in (family_weights or {}).items():
        try:
            index = family_index(name)
        except UserInputError as error:
            raise EnsembleError(f"family_weights: {error}") from None
        if len(row) != weights.numel():
            raise EnsembleError(
                f"family_weights.{name}: expected {weights.numel()} weights (one per member), got {len(row)}"
            )
        vector = torch.tensor(list(row), dtype=torch.float32)
        if (vector < 0).any() or vector.sum() <= 0:
            raise EnsembleError(f"family_weights.{name}: expected non-negative weights with a positive sum")
        table[index] = vector / vector.sum()
    return table


def _description(module: nn.Module) -> dict[str, Any] | None:
    describe = getattr(module, "training_data_description", None)
    return describe() if callable(describe) else None


def member_config(module: LightningModule) -> dict[str, Any]:
    """{"class_path", "init_args"} of a trained module, as export bundles store it."""
    from common.export import class_path_of

    hparams = {k: v for k, v in dict(module.hparams).items() if not k.startswith("_")}
    return {"class_path": class_path_of(module), "init_args": hparams}


class VelocityEnsemble(LightningModule):
    """Raw gathers (B, 5, 1000, 70) -> velocity in m/s (B, 1, 70, 70) from several members.

    Args:
        members: each member's {"class_path", "init_args"} (a VelocityInversionTask, or another ensemble).
        method: median, mean or weighted.
        weights: one weight per member for `weighted` (normalised to sum to one).
        family_weights: for `weighted`, {family name: one weight per member}: used instead of `weights`
            for samples of that family (when the batch says which).
        names: a label per member (its bundle directory), for reports.
        tta: average each member with its mirrored-survey prediction flipped back.
        refine: TV prior applied to the combined map: none, flat, tv2d or auto (see fwi.refinement).
        refine_weight: TV weight on the [-1, 1] scale.
    """

    def __init__(
        self,
        members: list[dict[str, Any]],
        method: str = "median",
        weights: list[float] | None = None,
        family_weights: dict[str, list[float]] | None = None,
        names: list[str] | None = None,
        tta: bool = False,
        refine: str = "none",
        refine_weight: float = 0.05,
    ) -> None:
        super().__init__()
        from common.export import build_module

        if not members:
            raise EnsembleError("--members: expected at least one export bundle, got none")
        if method not in METHODS:
            raise EnsembleError(f"--method: expected one of {METHODS}, got {method!r}")
        if refine not in PRIORS:
            raise EnsembleError(f"--refine: expected one of {PRIORS}, got {refine!r}")
        if weights is not None and len(weights) != len(members):
            raise EnsembleError(f"weights: expected {len(members)} (one per member), got {len(weights)}")
        if method == "weighted" and weights is None:
            raise EnsembleError("--method weighted: needs --val_dir to fit the weights on")
        self.save_hyperparameters()
        self.members = nn.ModuleList(build_module(config) for config in members)
        w = torch.tensor(weights if weights is not None else [1.0] * len(members), dtype=torch.float32)
        self.register_buffer("weights", w / w.sum())
        # (n_families, M): the family's vector where one was fitted, the global one elsewhere; derived
        # from the init args, so not stored in the weights file
        self.register_buffer(
            "family_weight_table", family_weight_table(family_weights, self.weights), persistent=False
        )
        self.register_buffer("float16_inputs", torch.tensor(False))  # members convert their own inputs

    @classmethod
    def from_modules(cls, modules: Sequence[LightningModule], **kwargs: Any) -> VelocityEnsemble:
        """An ensemble of already trained modules, their weights copied in."""
        ensemble = cls(members=[member_config(m) for m in modules], **kwargs)
        for target, source in zip(ensemble.members, modules, strict=True):
            target.load_state_dict(source.state_dict(), strict=True)
        return ensemble.eval()

    def member_predictions(self, seismic: torch.Tensor, family: torch.Tensor | None = None) -> torch.Tensor:
        """(M, B, 1, 70, 70) m/s, one map per member (mirror-TTA averaged when `tta`)."""
        maps = []
        for member in self.members:
            velocity = member(seismic, family).float()
            if self.hparams.tta:
                mirrored, _ = mirror_sample(seismic)
                velocity = 0.5 * (velocity + torch.flip(member(mirrored, family).float(), dims=(-1,)))
            maps.append(velocity)
        return torch.stack(maps)

    def combine_predictions(
        self, predictions: torch.Tensor, family: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(M, B, 1, 70, 70) m/s -> (B, 1, 70, 70) m/s: the combination, per family where it is known."""
        if self.hparams.method != "weighted" or not self.hparams.family_weights or family is None:
            return combine(predictions, self.hparams.method, self.weights)
        family = family.to(self.weights.device).long()
        rows = self.family_weight_table[family.clamp(min=0)]  # (B, M)
        rows = torch.where((family >= 0)[:, None], rows, self.weights[None])
        return torch.einsum("mb...,bm->b...", predictions, rows.to(predictions))

    def combine_members(self, predictions: torch.Tensor, family: torch.Tensor | None = None) -> torch.Tensor:
        """(M, B, 1, 70, 70) m/s -> (B, 1, 70, 70) m/s: the combination, then the optional refinement."""
        combined = self.combine_predictions(predictions, family)
        if self.hparams.refine == "none":
            return combined
        known_flat = None
        if family is not None and self.hparams.refine == "auto" and bool((family >= 0).all()):
            known_flat = flat_families_mask(family)
        refined = refine(
            normalize_velocity(combined), self.hparams.refine, self.hparams.refine_weight, flat=known_flat
        )
        return denormalize_velocity(refined)

    def forward(self, seismic: torch.Tensor, family: torch.Tensor | None = None) -> torch.Tensor:
        return self.combine_members(self.member_predictions(seismic, family), family)

    def training_data_description(self) -> dict[str, Any]:
        """Each member's training data (see `VelocityInversionTask.training_data_description`)."""
        names = self.hparams.names or [str(i) for i in range(len(self.members))]
        return {
            "members": [
                {"name": name, "training_data": _description(member)}
                for name, member in zip(names, self.members, strict=True)
            ]
        }

    def export_extras(self, directory: str | Path) -> None:
        """`training_data.json` in the ensemble bundle: the members' descriptions."""
        text = json.dumps(self.training_data_description(), indent=2, sort_keys=True) + "\n"
        (Path(directory) / TRAINING_DATA_FILE).write_text(text)

    # -- evaluation through `mtl validate` / `mtl test` / `mtl predict` --------------------------------
    def _evaluate(self, batch: Mapping[str, Any], prefix: str) -> None:
        if batch["seismic"].shape[0] == 0:
            return
        velocity = self(batch["seismic"], batch.get("family"))
        error = (velocity - batch["velocity"].float()).abs().mean()
        size = batch["seismic"].shape[0]
        self.log(f"{prefix}/mae_ms", error, batch_size=size)
        self.log(f"{prefix}/mae", error / VELOCITY_SCALE, batch_size=size)

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, Any]:
        family = batch.get("family")
        return {
            "velocity": self(batch["seismic"], family if isinstance(family, torch.Tensor) else None),
            "oid": batch.get("oid"),
        }
