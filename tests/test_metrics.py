"""Metrics: deletion/insertion (RISE), pointing game, energy pointing game, randomization check."""
from __future__ import annotations


import numpy as np
import pytest
import torch
from torch import nn

from cnnviz_core import load_model
from cnnviz_core.errors import ParameterError
from cnnviz_core.hooks import hook_count
from cnnviz_core.metrics import (
    compare_maps, deletion, energy_in_mask, format_table, insertion, pointing_game, pointing_game_table,
    randomization_check,
)
from cnnviz_core.models import ModelHandle, ModelSpec


class TopLeftModel(nn.Module):
    """Logit 0 = mean of the top-left 16x16 quadrant (channel sum); logit 1 = 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x[:, :, :16, :16].sum(dim=1).mean(dim=(1, 2))
        return torch.stack([s, torch.zeros_like(s)], dim=1)


@pytest.fixture(scope="module")
def toy():
    spec = ModelSpec(name="toy", display_name="toy", class_names=("a", "b"), default_layer="", input_size=32,
                     resize_size=32, head="softmax")
    return ModelHandle(spec, TopLeftModel(), torch.device("cpu"), "toy")


def test_deletion_and_insertion_reward_the_right_map(toy):
    x = torch.ones(1, 3, 32, 32)
    good = np.zeros((32, 32), np.float32)
    good[:16, :16] = 1 + np.random.default_rng(0).random((16, 16))
    bad = good[::-1, ::-1].copy()
    d_good, d_bad = deletion(toy, x, good, 0, step=16), deletion(toy, x, bad, 0, step=16)
    assert d_good.auc < d_bad.auc - 0.1
    assert d_good.probs[0] == pytest.approx(d_bad.probs[0]) and d_good.fractions[-1] == 1.0
    assert d_good.probs[-1] == pytest.approx(0.5)  # zeros substrate: both logits 0
    i_good = insertion(toy, x, good, 0, step=16, substrate="zeros")
    i_bad = insertion(toy, x, bad, 0, step=16, substrate="zeros")
    assert i_good.auc > i_bad.auc + 0.1 and len(i_good.probs) == 32 * 32 // 16 + 1
    assert insertion(toy, x, good, 0, step=64).substrate == "blur"
    with pytest.raises(ParameterError):
        deletion(toy, x, good[:8], 0)
    with pytest.raises(ParameterError):
        deletion(toy, x, good, 0, substrate="noise")


def test_gradient_maps_are_reduced_and_curves_report_progress(toy):
    seen = []
    curve = deletion(toy, torch.ones(1, 3, 32, 32), np.ones((3, 32, 32)), 0, step=128, progress=seen.append)
    assert seen[-1].step == seen[-1].total and 0 <= curve.auc <= 1


def test_pointing_game_and_energy():
    mask = np.zeros((20, 20), bool)
    mask[5:10, 5:10] = True
    sal = np.zeros((20, 20))
    sal[7, 7] = 1.0
    assert pointing_game(sal, mask)
    sal2 = np.zeros((20, 20))
    sal2[7, 13] = 1.0  # 4 px right of the mask's edge (column 9)
    assert not pointing_game(sal2, mask)
    assert not pointing_game(sal2, mask, tolerance=3) and pointing_game(sal2, mask, tolerance=4)
    assert not pointing_game(np.zeros((20, 20)), mask)  # a constant map points nowhere
    sal3 = np.zeros((20, 20))
    sal3[mask] = 1.0
    sal3[0, :5] = 5.0
    assert energy_in_mask(sal3, mask) == pytest.approx(25 / 50)
    assert energy_in_mask(np.zeros((20, 20)), mask) == 0.0


def test_compare_maps_detects_identity_and_change():
    a = np.random.default_rng(1).random((32, 32))
    rho, ssim = compare_maps(a, a)
    assert rho == pytest.approx(1.0) and ssim == pytest.approx(1.0)
    rho2, ssim2 = compare_maps(a, np.random.default_rng(2).random((32, 32)))
    assert abs(rho2) < 0.2 and ssim2 < 0.3


def test_randomization_check_uses_a_copy():
    handle = load_model("shapes-cnn", weights=None)
    before = [p.clone() for p in handle.model.parameters()]
    x = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    steps = randomization_check(handle, x, "gradcam", target=1, layers=["fc", "stage4.conv2", "stage1.conv1"])
    assert [s.layer for s in steps] == ["fc", "stage4.conv2", "stage1.conv1"]
    assert all(-1 <= s.spearman <= 1 and -1 <= s.ssim <= 1 for s in steps)
    assert steps[-1].spearman < 0.9  # a fully randomized network does not give the same map
    assert all(torch.equal(a, b) for a, b in zip(before, handle.model.parameters()))
    assert hook_count(handle.model) == 0
    with pytest.raises(ParameterError):
        randomization_check(handle, x, "gradcam", layers=["gap"])


def test_pointing_game_table_runs_on_scenes(shapes_model):
    from cnnviz_core.scenes import generate_scene

    handle = shapes_model  # trained: random weights can give all-zero maps, which point nowhere
    scenes = [generate_scene(20_000, i, objects=2) for i in range(2)]
    rows = pointing_game_table(handle, ["gradcam", "guided_backprop"], scenes)
    assert [r.method for r in rows] == ["gradcam", "guided_backprop"]
    assert all(r.n == 4 and 0 <= r.pointing <= 1 and 0 <= r.energy <= 1 for r in rows)
    two = pointing_game_table(handle, ["gradcam"], scenes, tolerance=(0, 1000))[0]
    assert two.pointing_by_tolerance[1000.0] == 1.0 and two.pointing == two.pointing_by_tolerance[0.0]
    assert "point@1000px" in format_table([two])
    assert rows[0].class_discriminative and not rows[1].class_discriminative
