"""Deep Dream mechanics: the layer norm rises, octaves and bounds hold, guided and class variants
run, cancel is prompt, and repeated calls leave no hooks or tensors behind."""
from __future__ import annotations

import gc

import numpy as np
import pytest
import torch
from PIL import Image

from cnnviz_core.errors import Cancelled, ParameterError
from cnnviz_core.featureviz import deep_dream
from cnnviz_core.hooks import capture, hook_count
from cnnviz_core.progress import CancelToken
from cnnviz_core.scenes import generate_scene


@pytest.fixture(scope="module")
def photo():
    return Image.fromarray(generate_scene(5, objects=2, size=96).image).resize((120, 90))


@pytest.mark.slow
def test_layer_norm_rises_on_average(viz_shapes, photo):
    result = deep_dream(viz_shapes, photo, "stage3.relu2", octaves=1, steps=12, step_size=0.02, jitter=4, seed=0)
    h = np.array(result.history)
    assert len(h) == 12
    assert np.mean(np.diff(h) > 0) >= 0.7
    assert h[-1] > 1.5 * h[0]
    assert result.image.shape == (90, 120, 3) and result.image.dtype == np.uint8


def test_octaves_bounds_and_truncation(viz_shapes, photo):
    with capture(viz_shapes.model, ["stage4", "fc"]) as later:
        result = deep_dream(viz_shapes, photo, "stage2.relu1", channel=3, octaves=3, octave_scale=1.3,
                            steps=2, max_side=64)
    assert later == {}  # nothing after the dreamed layer ran
    assert result.image.shape == (48, 64, 3)
    assert result.octave_sizes[-1] == (48, 64) and result.octave_sizes[0][1] < 64
    assert all(min(s) >= 32 for s in result.octave_sizes) and len(result.history) == 2 * len(result.octave_sizes)


@pytest.mark.slow
def test_guided_and_class_targeted(viz_shapes, photo):
    guide = Image.fromarray(generate_scene(9, size=96).image)
    guided = deep_dream(viz_shapes, photo, "stage3", guide=guide, octaves=1, steps=6, step_size=0.02, jitter=0)
    assert guided.history[-1] > guided.history[0]
    hallucinated = deep_dream(viz_shapes, photo, class_index=1, octaves=1, steps=6, step_size=0.05, jitter=0)
    assert hallucinated.history[-1] > hallucinated.history[0]
    with pytest.raises(ParameterError, match="guide"):
        deep_dream(viz_shapes, photo, "stage3", channel=1, guide=guide, steps=1)


@pytest.mark.slow
def test_cancel_and_no_leaks(random_shapes, photo):
    token, steps = CancelToken(), []

    def on_progress(p):
        steps.append(p.step)
        if p.step == 3:
            token.cancel()

    with pytest.raises(Cancelled):
        deep_dream(random_shapes, photo, "stage3", octaves=2, steps=5, max_side=64, progress=on_progress, cancel=token)
    assert steps == [1, 2, 3]

    def tensors() -> int:
        gc.collect()
        return sum(1 for o in gc.get_objects() if issubclass(type(o), torch.Tensor))

    deep_dream(random_shapes, photo, "stage3", octaves=2, steps=2, max_side=64)
    before = tensors()
    for _ in range(3):
        deep_dream(random_shapes, photo, "stage3", octaves=2, steps=2, max_side=64)
    assert tensors() <= before + 2
    assert hook_count(random_shapes.model) == 0


@pytest.mark.parametrize("kwargs, match", [
    ({"octaves": 9}, "octaves"), ({"steps": 2001}, "steps"), ({"max_side": 16}, "max_side"),
    ({"step_size": 0.0}, "step_size"),
])
def test_bad_parameters(random_shapes, photo, kwargs, match):
    with pytest.raises(ParameterError, match=match):
        deep_dream(random_shapes, photo, "stage3", **kwargs)


@pytest.mark.parametrize("precision", ["bfloat16", "float32"])
def test_mixed_precision_and_channels_last_flags(random_shapes, photo, precision):
    result = deep_dream(random_shapes, photo, "stage2", octaves=1, steps=2, max_side=48, precision=precision,
                        channels_last=True)
    assert result.image.shape == (36, 48, 3) and np.isfinite(result.history).all()
    with pytest.raises(ParameterError, match="precision"):
        deep_dream(random_shapes, photo, "stage2", steps=1, max_side=48, precision="int8")
