"""Feature maps: one hooked forward, channel ranking, top-N grid, no hooks left behind."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cnnviz_core.errors import ParameterError
from cnnviz_core.featureviz import feature_maps, rank_channels, top_channels_grid
from cnnviz_core.hooks import forward_until, hook_count
from cnnviz_core.scenes import generate_scene


@pytest.fixture(scope="module")
def scene():
    return Image.fromarray(generate_scene(3, objects=2).image)


def test_maps_match_truncated_forwards(random_shapes, scene):
    layers = ["stage1.conv1", "stage1.bn1", "stage2.relu1", "stage4", "fc"]
    maps = feature_maps(random_shapes, scene, layers)
    assert list(maps) == layers
    x = random_shapes.preprocess(scene)
    with torch.no_grad():
        expected = forward_until(random_shapes.model, x, "stage2.relu1")[0]
    assert torch.allclose(maps["stage2.relu1"], expected, atol=1e-5)
    assert maps["stage1.conv1"].shape == (24, 128, 128)
    assert maps["stage4"].shape == (128, 32, 32)
    assert maps["fc"].shape == (6, 1, 1)
    # the BN output is captured before the in-place ReLU that follows it: it keeps its negatives
    assert (maps["stage1.bn1"] < 0).any() and (maps["stage2.relu1"] >= 0).all()
    assert hook_count(random_shapes.model) == 0


def test_ranking_and_grid(random_shapes, scene):
    fmap = feature_maps(random_shapes, scene, ["stage3.relu2"])["stage3.relu2"]
    ranked = rank_channels(fmap, "max")
    scores = [s for _, s in ranked]
    assert scores == sorted(scores, reverse=True)
    assert sorted(c for c, _ in ranked) == list(range(fmap.shape[0]))
    best = ranked[0][0]
    assert scores[0] == pytest.approx(float(fmap[best].max()))
    grid = top_channels_grid(fmap, 6, by="mean", pad=2, upscale=2)
    h, w = fmap.shape[1:]
    assert grid.image.dtype == np.uint8 and grid.image.shape == (2 * (2 * h + 2) + 2, 3 * (2 * w + 2) + 2)
    assert grid.channels == [c for c, _ in rank_channels(fmap, "mean")[:6]]


def test_bad_layers(random_shapes, scene):
    with pytest.raises(ParameterError):
        feature_maps(random_shapes, scene, ["stage9"])
    with pytest.raises(ParameterError):
        feature_maps(random_shapes, scene, [])
    with pytest.raises(ParameterError, match="ranking"):
        rank_channels(torch.zeros(2, 3, 3), "median")
