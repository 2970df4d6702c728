"""Montage and normalization helpers (pure numpy)."""
from __future__ import annotations

import numpy as np
import pytest

from cnnviz_core.errors import ParameterError
from cnnviz_core.featureviz.tiles import montage, normalize_tiles, to_uint8


def test_per_tile_minmax_stretches_each_tile_to_full_range():
    tiles = np.stack([np.linspace(0, 1, 16).reshape(4, 4), np.linspace(10, 12, 16).reshape(4, 4)])
    out = normalize_tiles(tiles, "per_tile")
    assert out.dtype == np.float32 and out.shape == tiles.shape
    for t in out:
        assert t.min() == pytest.approx(0.0) and t.max() == pytest.approx(1.0)


def test_shared_scaling_keeps_relative_magnitudes():
    tiles = np.stack([np.full((3, 3), 1.0), np.full((3, 3), -2.0), np.full((3, 3), 0.0)])
    out = normalize_tiles(tiles, "shared", symmetric=True)
    assert out[2].mean() == pytest.approx(0.5)          # zero is mid grey
    assert out[1].mean() == pytest.approx(0.0)          # the largest |value| reaches the end
    assert out[0].mean() == pytest.approx(0.75)         # half the peak, positive


def test_constant_tiles_do_not_divide_by_zero():
    out = normalize_tiles(np.zeros((2, 3, 3)), "per_tile")
    assert np.isfinite(out).all()


def test_montage_layout_padding_and_upscale():
    tiles = np.ones((5, 2, 3, 3), np.float32) * 0.0
    grid = montage(tiles.reshape(10, 3, 3), columns=4, pad=1, pad_value=255, upscale=2)
    # 10 tiles, 4 columns -> 3 rows; each tile 6x6 after upscale
    assert grid.shape == (3 * 7 + 1, 4 * 7 + 1)
    assert grid.dtype == np.uint8
    assert (grid[0] == 255).all() and (grid[:, 0] == 255).all()
    assert (grid[1:7, 1:7] == 0).all()
    assert (grid[-7:-1, -7:-1] == 255).all()  # two empty slots in the last row stay background


def test_montage_colour_tiles_keep_channels():
    grid = montage(np.random.default_rng(0).random((4, 5, 5, 3)), pad=0)
    assert grid.shape == (10, 10, 3)


@pytest.mark.parametrize("bad", [np.zeros((0, 3, 3)), np.zeros((3, 3))])
def test_montage_rejects_bad_stacks(bad):
    with pytest.raises(ParameterError):
        montage(bad)


def test_to_uint8_rounds_and_clips():
    assert to_uint8(np.array([-1.0, 0.5, 2.0])).tolist() == [0, 128, 255]


def test_unknown_scaling_is_a_parameter_error():
    with pytest.raises(ParameterError, match="per_tile"):
        normalize_tiles(np.zeros((1, 2, 2)), "global")
