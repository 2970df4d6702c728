"""Style transfer mechanics on VGG-19 with random weights (ImageNet weights are not available
offline): losses fall as the paper's optimizer promises, outputs are valid images, the network is
truncated after the deepest used layer, cancel is prompt, nothing leaks."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cnnviz_core.errors import Cancelled, MethodUnavailableError, ParameterError
from cnnviz_core.featureviz import style_transfer, vgg_layer_paths
from cnnviz_core.featureviz.style import luminance
from cnnviz_core.hooks import capture, hook_count
from cnnviz_core.progress import CancelToken
from cnnviz_core.scenes import generate_scene

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def content():
    return Image.fromarray(generate_scene(2, objects=2, size=128).image).resize((128, 96))


@pytest.fixture(scope="module")
def style():
    rng = np.random.default_rng(0)
    stripes = (np.sin(np.arange(80) / 2.0)[None, :, None] * 120 + 128) * np.array([1.0, 0.4, 0.1])
    return Image.fromarray((np.broadcast_to(stripes, (80, 80, 3)) + rng.normal(0, 10, (80, 80, 3))).clip(0, 255)
                           .astype(np.uint8))


def test_vgg19_layer_names(random_vgg19):
    paths = vgg_layer_paths(random_vgg19.model)
    # torchvision VGG-19: conv1_1 is features.0 (its ReLU features.1), conv4_2 features.21/22, conv5_1 28/29
    assert (paths["conv1_1"], paths["conv4_2"], paths["conv5_1"]) == ("features.1", "features.22", "features.29")
    assert len(paths) == 16


def test_lbfgs_lowers_style_loss_tenfold_and_total_monotonically(random_vgg19, content, style):
    reports = []
    with capture(random_vgg19.model, ["features.30", "classifier.0"]) as later:
        result = style_transfer(random_vgg19, content, style, steps=8, size=64, optimizer="lbfgs",
                                progress=reports.append)
    assert later == {}  # truncated after conv5_1's ReLU (features.29)
    totals = [h["total"] for h in result.history]
    assert all(b <= a * (1 + 1e-6) for a, b in zip(totals, totals[1:]))
    assert result.history[-1]["style"] * 10 <= result.history[0]["style"]
    assert result.image.shape == (48, 64, 3) and result.image.dtype == np.uint8
    assert [p.step for p in reports] == list(range(1, 9))
    assert set(reports[0].losses) == {"content", "style", "tv", "total"}
    assert hook_count(random_vgg19.model) == 0
    assert all(p.grad is None and not p.requires_grad for p in random_vgg19.model.parameters())


def test_adam_noise_start_and_colour_preservation(random_vgg19, content, style):
    result = style_transfer(random_vgg19, content, style, steps=4, size=48, optimizer="adam", init="noise",
                            tv_weight=1e-3, preserve_color=True)
    assert result.history[-1]["total"] < result.history[0]["total"]
    assert result.image.shape == (36, 48, 3)
    # colour preservation: the output's chrominance (RGB minus luminance) is the content's
    out = torch.from_numpy(result.image).permute(2, 0, 1)[None].float() / 255
    ref = torch.from_numpy(np.array(content.resize((48, 36), Image.Resampling.BILINEAR))).permute(2, 0, 1)[None]
    ref = ref.float() / 255
    chroma_out, chroma_ref = out - luminance(out), ref - luminance(ref)
    assert (chroma_out - chroma_ref).abs().mean() < 0.03


def test_cancel_bounds_and_errors(random_vgg19, random_shapes, content, style):
    token, steps = CancelToken(), []

    def on_progress(p):
        steps.append(p.step)
        token.cancel()

    with pytest.raises(Cancelled):
        style_transfer(random_vgg19, content, style, steps=50, size=32, progress=on_progress, cancel=token)
    assert steps == [1]
    assert hook_count(random_vgg19.model) == 0
    with pytest.raises(ParameterError, match="size"):
        style_transfer(random_vgg19, content, style, size=2048)
    with pytest.raises(ParameterError, match="steps"):
        style_transfer(random_vgg19, content, style, steps=0)
    with pytest.raises(ParameterError, match="VGG layer"):
        style_transfer(random_vgg19, content, style, steps=1, size=32, content_layer="conv9_1")
    with pytest.raises(MethodUnavailableError):
        style_transfer(random_shapes, content, style, steps=1, size=32)
