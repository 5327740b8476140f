"""`mtl fwi import-openfwi`: a checkpoint written from OpenFWI's own InversionNet, rebuilt here.

The network below follows lanl/OpenFWI `network.py` (ConvBlock / DeconvBlock / ConvBlock_Tanh with a
`layers` Sequential, InversionNet's dim1..dim5), at a quarter of the paper's channels so the test is
fast; the checkpoint dict is what OpenFWI's `train.py` saves, `args` an argparse.Namespace.
"""

from __future__ import annotations

import argparse
import csv
import pickle
from math import ceil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from common.errors import CheckpointError
from tests.conftest import REPO


class ConvBlock(nn.Module):
    def __init__(self, cin, cout, kernel_size=3, stride=1, padding=1):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(cin, cout, kernel_size, stride, padding), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2)
        )

    def forward(self, x):
        return self.layers(x)


class DeconvBlock(nn.Module):
    def __init__(self, cin, cout, kernel_size=2, stride=2, padding=0):
        super().__init__()
        self.layers = nn.Sequential(
            nn.ConvTranspose2d(cin, cout, kernel_size, stride, padding),
            nn.BatchNorm2d(cout),
            nn.LeakyReLU(0.2),
        )

    def forward(self, x):
        return self.layers(x)


class ConvBlockTanh(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.layers = nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1), nn.BatchNorm2d(cout), nn.Tanh())

    def forward(self, x):
        return self.layers(x)


class OpenFwiInversionNet(nn.Module):
    def __init__(self, dim1=8, dim2=16, dim3=32, dim4=64, dim5=128):
        super().__init__()
        t, tp = (3, 1), (1, 0)
        self.convblock1 = ConvBlock(5, dim1, kernel_size=(7, 1), stride=(2, 1), padding=(3, 0))
        self.convblock2_1 = ConvBlock(dim1, dim2, kernel_size=t, stride=(2, 1), padding=tp)
        self.convblock2_2 = ConvBlock(dim2, dim2, kernel_size=t, padding=tp)
        self.convblock3_1 = ConvBlock(dim2, dim2, kernel_size=t, stride=(2, 1), padding=tp)
        self.convblock3_2 = ConvBlock(dim2, dim2, kernel_size=t, padding=tp)
        self.convblock4_1 = ConvBlock(dim2, dim3, kernel_size=t, stride=(2, 1), padding=tp)
        self.convblock4_2 = ConvBlock(dim3, dim3, kernel_size=t, padding=tp)
        self.convblock5_1 = ConvBlock(dim3, dim3, stride=2)
        self.convblock5_2 = ConvBlock(dim3, dim3)
        self.convblock6_1 = ConvBlock(dim3, dim4, stride=2)
        self.convblock6_2 = ConvBlock(dim4, dim4)
        self.convblock7_1 = ConvBlock(dim4, dim4, stride=2)
        self.convblock7_2 = ConvBlock(dim4, dim4)
        self.convblock8 = ConvBlock(dim4, dim5, kernel_size=(8, ceil(70 / 8)), padding=0)
        self.deconv1_1 = DeconvBlock(dim5, dim5, kernel_size=5)
        self.deconv1_2 = ConvBlock(dim5, dim5)
        self.deconv2_1 = DeconvBlock(dim5, dim4, kernel_size=4, stride=2, padding=1)
        self.deconv2_2 = ConvBlock(dim4, dim4)
        self.deconv3_1 = DeconvBlock(dim4, dim3, kernel_size=4, stride=2, padding=1)
        self.deconv3_2 = ConvBlock(dim3, dim3)
        self.deconv4_1 = DeconvBlock(dim3, dim2, kernel_size=4, stride=2, padding=1)
        self.deconv4_2 = ConvBlock(dim2, dim2)
        self.deconv5_1 = DeconvBlock(dim2, dim1, kernel_size=4, stride=2, padding=1)
        self.deconv5_2 = ConvBlock(dim1, dim1)
        self.deconv6 = ConvBlockTanh(dim1, 1)

    def forward(self, x):
        for name, block in self.named_children():
            x = block(x)
            if name == "deconv5_2":
                x = F.pad(x, [-5, -5, -5, -5])
        return x


def openfwi_network(seed: int = 0) -> OpenFwiInversionNet:
    """Random weights and BatchNorm statistics, so a wrong mapping cannot pass by chance."""
    torch.manual_seed(seed)
    net = OpenFwiInversionNet()
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.normal_(0, 0.1)
    return net.eval()


def save_openfwi_checkpoint(net: nn.Module, path: Path, legacy: bool = False) -> Path:
    state = net.state_dict()
    if legacy:  # DDP prefix and the old block names that OpenFWI's replace_legacy renames
        renamed = {}
        for key, value in state.items():
            block = key.split(".")[0]
            old = "Deconv2DwithBN" if block.startswith("deconv") and block.endswith("_1") else "Conv2DwithBN"
            renamed["module." + key.replace(".layers.", f".{old}.", 1)] = value
        state = renamed
    args = argparse.Namespace(model="InversionNet", dataset="flatvel-a", lr=1e-4, lr_milestones=[], k=1.0)
    torch.save({"model": state, "optimizer": {}, "epoch": 119, "step": 1000, "args": args}, path)
    return path


def openfwi_prediction(net: nn.Module, seismic: np.ndarray) -> np.ndarray:
    """OpenFWI's transforms (LogTransform, MinMaxNormalize with FlatVel-A's limits) and denormalisation."""

    def log_transform(x):
        return np.log1p(np.abs(x)) * np.sign(x)

    low, high = log_transform(-26.95), log_transform(52.77)
    x = (log_transform(seismic.astype(np.float64)) - low) / (high - low)
    x = (x - 0.5) * 2
    with torch.no_grad():
        y = net(torch.from_numpy(x).float()).numpy()
    return (y / 2 + 0.5) * 3000 + 1500


@pytest.mark.parametrize("legacy", [False, True])
def test_imported_checkpoint_predicts_as_openfwis_network(
    openfwi_root: Path, tmp_path: Path, legacy: bool
) -> None:
    from common.export import load_bundle
    from fwi.openfwi_import import import_openfwi

    net = openfwi_network()
    checkpoint = save_openfwi_checkpoint(net, tmp_path / "checkpoint.pth", legacy=legacy)
    with pytest.raises(pickle.UnpicklingError, match=r"Namespace"):
        torch.load(checkpoint, weights_only=True)  # why the import allow-lists argparse.Namespace
    bundle = import_openfwi(checkpoint, tmp_path / "bundle", family="flatvel_a")
    task = load_bundle(bundle)
    seismic = np.load(openfwi_root / "FlatVel-A/data/data1.npy")[:3]
    with torch.no_grad():
        ours = task(torch.from_numpy(seismic)).numpy()  # family unknown: the bundle has only FlatVel-A
    np.testing.assert_allclose(ours, openfwi_prediction(net, seismic), atol=2e-3)  # m/s, float32
    with pytest.raises(CheckpointError, match="exists and is not empty"):
        import_openfwi(checkpoint, bundle, family="FlatVel-A")


def test_foreign_checkpoints_are_refused_with_the_file_named(tmp_path: Path) -> None:
    from fwi.openfwi_import import import_openfwi

    other = tmp_path / "other.pth"
    torch.save({"model": {"encoder.weight": torch.zeros(3)}}, other)
    with pytest.raises(CheckpointError, match=r"other\.pth: not an OpenFWI InversionNet checkpoint"):
        import_openfwi(other, tmp_path / "b1", family="FlatVel-A")
    net = openfwi_network()
    state = {k: v for k, v in net.state_dict().items() if not k.startswith("deconv6")}
    partial = tmp_path / "partial.pth"
    torch.save({"model": state}, partial)
    with pytest.raises(CheckpointError, match=r"partial\.pth: does not fit InversionNet .* missing \['head"):
        import_openfwi(partial, tmp_path / "b2", family="FlatVel-A")


def test_import_verb_then_submit_and_validate(
    openfwi_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """The real `mtl` entry point, in this process (a subprocess per verb costs ~25 s here)."""
    from common.cli import main

    monkeypatch.chdir(tmp_path)
    checkpoint = save_openfwi_checkpoint(openfwi_network(), tmp_path / "checkpoint.pth", legacy=True)
    main(
        ["fwi", "import-openfwi", "--checkpoint", str(checkpoint), "--out", "bundle", "--family", "FlatVel-A"]
    )
    test_dir = tmp_path / "test"
    test_dir.mkdir()
    gathers = np.load(openfwi_root / "FlatVel-A/data/data1.npy")
    for i in range(2):
        np.save(test_dir / f"{i}.npy", gathers[i])
    main(["fwi", "submit", "--checkpoint", "bundle", "--test_dir", str(test_dir), "--out", "sub.csv"])
    rows = list(csv.reader((tmp_path / "sub.csv").open()))
    assert len(rows) == 1 + 2 * 70
    small = tmp_path / "small.yaml"
    small.write_text(
        "trainer:\n  accelerator: cpu\n  logger: false\n  enable_progress_bar: false\n"
        f"data:\n  init_args:\n    root: {openfwi_root / 'FlatVel-A'}\n"
        "    split: files\n    batch_size: 4\n    num_workers: 0\n"
    )
    capsys.readouterr()
    config = str(REPO / "configs/fwi/openfwi/flatvel-a.yaml")
    main(["validate", "--config", config, "--config", str(small), "--ckpt_path", "bundle/model.ckpt"])
    printed = capsys.readouterr().out
    assert "val/mae" in printed and "val/ssim" in printed
