"""`ssim` equals OpenFWI's formula (pytorch_ssim.py as test.py calls it), written out here separately."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.signal import convolve2d

from fwi.metrics import OpenFwiSSIM, openfwi_ssim


def reference_ssim(pred: np.ndarray, target: np.ndarray) -> float:
    """OpenFWI's SSIM with numpy/scipy: maps (N, 70, 70) on [-1, 1] -> one number over all pixels."""
    g = np.array([math.exp(-((x - 5) ** 2) / (2 * 1.5**2)) for x in range(11)])
    g /= g.sum()
    window = np.outer(g, g)
    values = []
    for a, b in zip((pred + 1) / 2, (target + 1) / 2, strict=True):

        def blur(image):  # zero padding, output the input's size
            return convolve2d(image, window[::-1, ::-1], mode="same", boundary="fill", fillvalue=0)

        mu_a, mu_b = blur(a), blur(b)
        var_a, var_b, cov = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
        c1, c2 = 0.01**2, 0.03**2
        values.append(
            ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
        )
    return float(np.mean(values))


def test_ssim_equals_openfwis_formula_and_differs_from_reflect_padding() -> None:
    from torchmetrics.functional.image import structural_similarity_index_measure

    rng = np.random.default_rng(0)
    target = np.repeat(np.sort(rng.uniform(-1, 1, (3, 70, 1)), axis=1), 70, axis=2)  # layered maps
    pred = np.clip(target + rng.normal(0, 0.1, target.shape), -1, 1)
    ours = openfwi_ssim(torch.from_numpy(pred)[:, None], torch.from_numpy(target)[:, None])
    assert ours.shape == (3,)
    assert float(ours.mean()) == pytest.approx(reference_ssim(pred, target), abs=1e-6)
    metric = OpenFwiSSIM()
    metric.update(torch.from_numpy(pred[:2, None]).float(), torch.from_numpy(target[:2, None]).float())
    metric.update(torch.from_numpy(pred[2:, None]).float(), torch.from_numpy(target[2:, None]).float())
    assert float(metric.compute()) == pytest.approx(reference_ssim(pred, target), abs=1e-5)
    reflect = structural_similarity_index_measure(
        torch.from_numpy(pred[:, None]).float(), torch.from_numpy(target[:, None]).float(), data_range=2.0
    )
    assert abs(float(reflect) - float(ours.mean())) > 0.01  # not the same number: why both exist
    same = openfwi_ssim(torch.from_numpy(target[:, None]), torch.from_numpy(target[:, None]))
    assert torch.allclose(same, torch.ones(3, dtype=torch.float64))
