"""Batched attribution equals the single-image engine, image by image, for every shared-pass method."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cnnviz_core.attribution import explain
from cnnviz_core.attribution.passes import shared_pass
from cnnviz_core.audit.batched import explain_batch
from cnnviz_core.errors import ParameterError
from cnnviz_core.hooks import hook_count
from cnnviz_core.scenes import generate_scene

SHARED_PASS_METHODS = ["cam", "gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "eigencam",
                       "saliency", "deconvnet", "guided_backprop", "guided_gradcam"]


@pytest.fixture(scope="module")
def batch(random_shapes):
    images = [Image.fromarray(generate_scene(9, i, objects=1 + i % 2).image) for i in range(5)]
    return torch.cat([random_shapes.preprocess(im) for im in images])


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    return np.allclose(a, b, rtol=1e-4, atol=1e-5 * max(1.0, float(np.abs(b).max())))


@pytest.mark.slow
def test_batched_maps_equal_single_image_maps(random_shapes, batch):
    result = explain_batch(random_shapes, batch, SHARED_PASS_METHODS)
    for i in range(batch.shape[0]):
        single = explain(random_shapes, batch[i:i + 1], SHARED_PASS_METHODS, cache=None)
        for method in SHARED_PASS_METHODS:
            assert result.errors[method][i] is None
            assert result.maps[method][i].shape == single[method].shape
            assert _close(result.maps[method][i], single[method]), (method, i)
    assert hook_count(random_shapes.model) == 0


def test_targets_per_image_and_top1_default(random_shapes, batch):
    targets = torch.tensor([2, -1, 5, 0, -1])
    result = explain_batch(random_shapes, batch, ["gradcam", "saliency"], targets=targets)
    top1 = random_shapes.forward(batch).argmax(1)
    expected = torch.where(targets < 0, top1, targets)
    assert torch.equal(result.targets, expected)
    for i in (0, 2):
        single = explain(random_shapes, batch[i:i + 1], ["gradcam", "saliency"], target=int(targets[i]), cache=None)
        assert _close(result.maps["gradcam"][i], single["gradcam"])
        assert _close(result.maps["saliency"][i], single["saliency"])


@pytest.mark.slow
def test_method_that_needs_its_own_passes_still_works(random_shapes, batch):
    result = explain_batch(random_shapes, batch[:2], ["gradcam", "scorecam"], channels=8)
    single = explain(random_shapes, batch[1:2], ["scorecam"], channels=8, cache=None)
    assert _close(result.maps["scorecam"][1], single["scorecam"])


@pytest.mark.slow
def test_unavailable_method_is_an_error_entry_not_an_exception():
    from cnnviz_core import load_model

    zfnet = load_model("zfnet", weights=None, device="cpu")  # fully connected head: no CAM
    x = torch.randn(2, 3, zfnet.spec.input_size, zfnet.spec.input_size)
    result = explain_batch(zfnet, x, ["cam", "gradcam"])
    assert result.maps["cam"] == [None, None] and "CAM needs" in result.errors["cam"][0]
    assert all(m is not None for m in result.maps["gradcam"])


def test_bad_arguments(random_shapes, batch):
    with pytest.raises(ParameterError, match="unknown method"):
        explain_batch(random_shapes, batch, ["nope"])
    with pytest.raises(ParameterError, match="target 99 is out of range"):
        explain_batch(random_shapes, batch, ["gradcam"], targets=torch.tensor([99] * 5))
    with pytest.raises(ParameterError, match="got 2 targets for 5 images"):
        explain_batch(random_shapes, batch, ["gradcam"], targets=torch.tensor([1, 2]))
    with pytest.raises(ParameterError, match="cannot compute products"):
        shared_pass(random_shapes, batch, "stage4", {"smoothgrad_noise"})
