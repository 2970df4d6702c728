"""Deletion/insertion AUC, pointing game and energy pointing, against small hand-checkable cases
and an independent one-curve-at-a-time implementation."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch import nn

from cnnviz_core.audit.faithfulness import check_metrics, curve_aucs, object_mask, pointing_tolerance
from cnnviz_core.errors import ParameterError
from cnnviz_core.scenes import generate_scene


class RegionModel(nn.Module):
    """Logit of class 0 = mean energy of channel 0 over the left half (x4); class 1 = minus that."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left = x[:, 0, :, : x.shape[-1] // 2].pow(2).mean(dim=(1, 2)) * 4
        return torch.stack([left, -left], dim=1)


class FakeHandle:
    def __init__(self, model: nn.Module) -> None:
        self.model, self.lock = model, threading.RLock()

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=1)

    def batch_logits(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.model(x)


def _naive_auc(handle, x, sal, target, metric, steps):
    """One image, one curve, step by step (reference implementation)."""
    h, w = sal.shape
    order = torch.argsort(sal.reshape(-1), descending=True, stable=True)
    if metric == "deletion":
        start, end = x, torch.zeros_like(x)
    else:
        start, end = TF.gaussian_blur(x[None], [11, 11], [5.0, 5.0])[0], x
    scores = []
    for k in range(steps + 1):
        n = int(round(k * h * w / steps))
        changed = torch.zeros(h * w, dtype=torch.bool)
        changed[order[:n]] = True
        img = torch.where(changed.reshape(1, h, w), end, start)
        scores.append(float(handle.probabilities(handle.model(img[None]))[0, target]))
    return float(np.trapezoid(scores, dx=1.0 / steps))


def test_curve_aucs_match_naive_reference():
    torch.manual_seed(0)
    handle = FakeHandle(RegionModel())
    x = torch.rand(3, 3, 16, 16) + 0.5
    sal = {"a": torch.rand(3, 16, 16), "b": torch.rand(3, 16, 16)}
    targets = torch.tensor([0, 1, 0])
    got = curve_aucs(handle, x, sal, targets, steps=8, chunk=7)
    for key in sal:
        for metric in ("deletion", "insertion"):
            for i in range(3):
                ref = _naive_auc(handle, x[i], sal[key][i], int(targets[i]), metric, 8)
                assert float(got[key][metric][i]) == pytest.approx(ref, abs=1e-5)


def test_faithful_map_beats_its_inverse():
    handle = FakeHandle(RegionModel())
    x = torch.ones(1, 3, 16, 16)
    x[0, 0, ::2, ::2] = x[0, 0, 1::2, 1::2] = -1.0  # checkerboard: a blur removes its energy
    good = torch.zeros(1, 16, 16)
    good[:, :, :8] = torch.linspace(1, 2, 8)  # the pixels the class-0 logit reads
    got = curve_aucs(handle, x, {"good": good, "bad": -good}, torch.tensor([0]), steps=16)
    assert got["good"]["deletion"][0] < got["bad"]["deletion"][0] - 0.1
    assert got["good"]["insertion"][0] > got["bad"]["insertion"][0] + 0.1
    for m in ("good", "bad"):
        assert 0.0 <= float(got[m]["deletion"][0]) <= 1.0


def test_constant_model_auc_is_its_probability():
    class Constant(nn.Module):
        def forward(self, x):
            return torch.tensor([[0.0, 1.0]]).expand(x.shape[0], 2)

    got = curve_aucs(FakeHandle(Constant()), torch.rand(2, 3, 8, 8), {"m": torch.rand(2, 8, 8)},
                     torch.tensor([1, 0]), steps=4)
    p1 = float(torch.softmax(torch.tensor([0.0, 1.0]), 0)[1])
    assert got["m"]["deletion"].tolist() == pytest.approx([p1, 1 - p1])


@pytest.mark.slow
def test_batched_curves_equal_the_single_image_engine(random_shapes):
    from cnnviz_core.metrics import causal_curve

    x = torch.cat([random_shapes.preprocess(Image.fromarray(generate_scene(4, i).image)) for i in range(3)])
    torch.manual_seed(1)
    sal = {"a": torch.rand(3, 128, 128), "b": torch.rand(3, 128, 128)}
    targets = torch.tensor([0, 3, 5])
    got = curve_aucs(random_shapes, x, sal, targets, steps=8, chunk=10)
    for key in sal:
        for kind in ("deletion", "insertion"):
            for i in range(3):
                ref = causal_curve(random_shapes, x[i:i + 1], sal[key][i], int(targets[i]), kind, step=128 * 128 // 8)
                assert float(got[key][kind][i]) == pytest.approx(ref.auc, abs=1e-4), (key, kind, i)


def test_pointing_tolerance_scales_with_input_size():
    assert pointing_tolerance(224) == 15 and pointing_tolerance(128) == 9


def test_object_mask_selects_the_target_objects():
    values = np.array([[0, 1], [2, 2]], np.uint8)
    assert object_mask(values, 4, (4, 3), (1, 2)).tolist() == [[False, True], [False, False]]
    assert object_mask(values, 5, (4, 3), (1, 2)) is None
    assert object_mask(values, 5, (), ()).tolist() == [[False, True], [True, True]]


def test_bad_metric_names():
    assert check_metrics(["deletion", " pointing", "deletion"]) == ("deletion", "pointing")
    with pytest.raises(ParameterError, match="unknown metric 'auc'"):
        check_metrics(["auc"])
    with pytest.raises(ParameterError, match="steps"):
        curve_aucs(FakeHandle(RegionModel()), torch.rand(1, 3, 8, 8), {"m": torch.rand(1, 8, 8)},
                   torch.tensor([0]), steps=1)
