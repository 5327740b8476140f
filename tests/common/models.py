"""Small LightningModules and DataModules for the platform tests (importable by class path)."""

from __future__ import annotations

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.demos.boring_classes import BoringModel, RandomDataset
from torch.utils.data import DataLoader, Dataset
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from common.data import BaseDataModule
from common.task import BaseTask


class AdamBoringModel(BoringModel):
    """BoringModel with Adam (so the optimizer has state to resume) and an ONNX example input."""

    def __init__(self, hidden: int = 32, lr: float = 0.01) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Sequential(
            torch.nn.Linear(32, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 2)
        )
        self.example_input_array = torch.randn(4, 32)

    def validation_step(self, batch, batch_idx):
        output = super().validation_step(batch, batch_idx)
        self.log("valid_loss", output["x"])
        return output

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


class KnobDataset(Dataset):
    """Random vectors; holds `bytes_per_sample` of real memory per sample so memory grows with size."""

    def __init__(self, samples: int, bytes_per_sample: int) -> None:
        self.data = torch.randn(samples, 32)
        self.ballast = np.ones((samples, max(bytes_per_sample // 8, 1)), dtype=np.float64)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.data[index]


class KnobDataModule(LightningDataModule):
    """A datamodule whose knobs (max_samples, batch_size) are read when dataloaders are built."""

    def __init__(self, max_samples: int = 8, batch_size: int = 2, bytes_per_sample: int = 0) -> None:
        super().__init__()
        self.max_samples = max_samples
        self.batch_size = batch_size
        self.bytes_per_sample = bytes_per_sample

    def train_dataloader(self) -> DataLoader:
        return DataLoader(KnobDataset(self.max_samples, self.bytes_per_sample), batch_size=self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(RandomDataset(32, 8), batch_size=4)


class OutOfMemoryAtBatch(BoringModel):
    """Raises CUDA's out-of-memory error for batches of `oom_batch_size` or more (a simulated OOM)."""

    def __init__(self, oom_batch_size: int = 8) -> None:
        super().__init__()
        self.oom_batch_size = oom_batch_size

    def training_step(self, batch, batch_idx):
        if batch.shape[0] >= self.oom_batch_size:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return super().training_step(batch, batch_idx)


class IndexDataModule(LightningDataModule):
    """Sample i is the tensor i: a model can record exactly which samples it trained, in order."""

    def __init__(self, samples: int = 20, batch_size: int = 2, num_workers: int = 0) -> None:
        super().__init__()
        self.samples, self.batch_size, self.num_workers = samples, batch_size, num_workers

    def train_dataloader(self) -> DataLoader:
        from common.resumable_loader import EpochRandomSampler, ResumableLoader

        data = torch.arange(self.samples)
        return ResumableLoader(
            data, batch_size=self.batch_size, sampler=EpochRandomSampler(data), num_workers=self.num_workers
        )


class IndexRecordingModel(BoringModel):
    """Appends the sample indices it trains on, in order, to the text file `record` (one per line;
    under DDP one file per process, `<record>.rank<N>`)."""

    def __init__(self, record: str = "trained.txt") -> None:
        super().__init__()
        self.record = record
        self.layer = torch.nn.Linear(1, 1)

    def training_step(self, batch, batch_idx):
        path = self.record if self.trainer.world_size == 1 else f"{self.record}.rank{self.global_rank}"
        with open(path, "a") as out:
            out.writelines(f"{int(i)}\n" for i in batch)
        return self.layer(batch.float()[:, None]).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


class MeanDataset(Dataset):
    """Vectors (32,) around `offset`, labels from the sign of their first entry."""

    def __init__(self, samples: int, offset: float, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.randn(samples, 32, generator=generator) + offset
        self.y = (self.x[:, 0] > offset).long()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[index], "y": self.y[index]}


class TinyBaseDataModule(BaseDataModule):
    """A BaseDataModule that fits one statistic (the training mean) and hands it to the task."""

    def __init__(self, offset: float = 3.0, batch_size: int = 4, max_samples: int | None = None) -> None:
        super().__init__(batch_size=batch_size, max_samples=max_samples)
        self.offset = offset

    def setup(self, stage: str | None = None) -> None:
        self.train_set = MeanDataset(self.max_samples or 18, self.offset, seed=0)
        self.val_set = MeanDataset(8, self.offset, seed=1)

    def fitted_statistics(self) -> dict:
        return {"feature_mean": self.train_set.x.mean(0)}

    def data_summary(self) -> str:
        return f"| split | samples |\n|---|---|\n| train | {len(self.train_set)} |"

    def train_dataloader(self) -> DataLoader:
        return self.make_loader(self.train_set, "train")

    def val_dataloader(self) -> DataLoader:
        return self.make_loader(self.val_set, "val")


class TinyBaseTask(BaseTask):
    """A BaseTask that fills the three hooks: a linear classifier over mean-centred vectors."""

    def __init__(
        self,
        hidden: int = 8,
        optimizer: str = "adamw",
        lr: float = 0.01,
        scheduler: str = "none",
        warmup_steps: int = 0,
    ) -> None:
        super().__init__()

    def configure_models(self) -> None:
        self.net = torch.nn.Sequential(
            torch.nn.Linear(32, self.hparams.hidden), torch.nn.ReLU(), torch.nn.Linear(self.hparams.hidden, 2)
        )
        self.register_buffer("feature_mean", torch.zeros(32))

    def configure_losses(self) -> None:
        self.criterion = torch.nn.CrossEntropyLoss()

    def configure_metrics(self) -> MetricCollection:
        return MetricCollection({"acc": MulticlassAccuracy(2, average="micro")})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x - self.feature_mean)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits = self(batch["x"])
        loss = self.criterion(logits, batch["y"])
        self.log("train/loss", loss, batch_size=len(logits))
        self.log_stage_metrics("train", logits, batch["y"], batch_size=len(logits))
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        logits = self(batch["x"])
        self.log("val/loss", self.criterion(logits, batch["y"]), batch_size=len(logits))
        self.log_stage_metrics(self.stage, logits, batch["y"], batch_size=len(logits))
