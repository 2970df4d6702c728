"""Kernels as images: views, scaling, and a planted kernel that must show up where expected."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnviz_core import load_model
from cnnviz_core.errors import ParameterError
from cnnviz_core.featureviz import kernel_montage, kernel_tiles


@pytest.fixture(scope="module")
def planted(tmp_path_factory, random_shapes):
    """shapes-cnn whose first filter is a red vertical edge detector (+ left, - right, red only)
    and whose second filter is 10x weaker copy of it."""
    state = {k: v.clone() for k, v in random_shapes.model.state_dict().items()}
    w = state["stage1.conv1.weight"]
    edge = torch.zeros(3, 3, 3)
    edge[0, :, 0], edge[0, :, 2] = 1.0, -1.0
    w[0], w[1] = edge, edge / 10
    path = tmp_path_factory.mktemp("w") / "planted.pt"
    torch.save(state, path)
    return load_model("shapes-cnn", weights=str(path))


def test_first_layer_rgb_tiles(planted):
    tiles = kernel_tiles(planted, "stage1.conv1")
    assert tiles.shape == (24, 3, 3, 3) and tiles.dtype == np.float32
    assert tiles.min() >= 0.0 and tiles.max() <= 1.0
    edge = tiles[0]
    assert np.allclose(edge[:, 0, 0], 1.0) and np.allclose(edge[:, 2, 0], 0.0)  # red: bright left, dark right
    assert np.allclose(edge[:, 1, 0], 0.5) and np.allclose(edge[..., 1:], 0.5)   # zero weights are mid grey


def test_per_tile_vs_shared_scaling(planted):
    per_tile = kernel_tiles(planted, "stage1.conv1", scaling="per_tile")
    shared = kernel_tiles(planted, "stage1.conv1", scaling="shared")
    assert np.allclose(per_tile[0], per_tile[1])  # same pattern, stretched alike
    weak_contrast = np.abs(shared[1] - 0.5).max()
    strong_contrast = np.abs(shared[0] - 0.5).max()
    assert weak_contrast == pytest.approx(strong_contrast / 10, rel=1e-4)


def test_deeper_layer_views(random_shapes):
    summary = kernel_tiles(random_shapes, "stage2.conv1")
    assert summary.shape == (48, 3, 3)
    assert summary.min() >= 0 and np.allclose(summary.reshape(48, -1).max(1), 1.0)
    per_channel = kernel_tiles(random_shapes, "stage2.conv1", view="per_channel", max_filters=5, max_channels=7)
    assert per_channel.shape == (5, 7, 3, 3)
    grid = kernel_montage(random_shapes, "stage2.conv1", view="per_channel", max_filters=5, max_channels=7,
                          upscale=2, pad=1)
    assert grid.shape == (5 * 7 + 1, 7 * 7 + 1) and grid.dtype == np.uint8


def test_rgb_montage_is_colour(random_shapes):
    grid = kernel_montage(random_shapes, "stage1.conv1", max_filters=8, upscale=3)
    assert grid.ndim == 3 and grid.shape[2] == 3 and grid.dtype == np.uint8


def test_alexnet_conv1_gives_one_colour_tile_per_filter():
    handle = load_model("alexnet", weights=None)
    tiles = kernel_tiles(handle, "features.0")
    assert tiles.shape == (64, 11, 11, 3)  # torchvision's AlexNet has 64 first-layer filters


@pytest.mark.parametrize("layer, view, match", [
    ("stage1", "auto", "not a 2-D convolution"),
    ("nope", "auto", "no layer"),
    ("stage2.conv1", "rgb", "3 input channels"),
    ("stage1.conv1", "fancy", "choose one of"),
])
def test_bad_requests(random_shapes, layer, view, match):
    with pytest.raises(ParameterError, match=match):
        kernel_tiles(random_shapes, layer, view=view)


def test_per_channel_view_scales_each_filter_over_its_channels(planted):
    tiles = kernel_tiles(planted, "stage1.conv1", view="per_channel", max_filters=2)
    assert tiles.shape == (2, 3, 3, 3)
    red, green = tiles[0, 0], tiles[0, 1]
    assert np.allclose(red[:, 0], 1.0) and np.allclose(red[:, 2], 0.0)
    assert np.allclose(green, 0.5)  # a zero channel stays grey: the range is the filter's, not the tile's
