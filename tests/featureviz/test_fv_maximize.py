"""Activation maximization mechanics: the objective grows a lot, only the needed part of the
network runs, parameters stay frozen, the lock is released between steps, cancel is prompt."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from cnnviz_core.errors import Cancelled, ParameterError
from cnnviz_core.featureviz import maximize_activation
from cnnviz_core.hooks import capture, forward_until, hook_count
from cnnviz_core.progress import CancelToken

LAYER = "stage2.conv1"


@pytest.fixture(scope="module")
def channel(viz_shapes):
    """A channel of LAYER that responds positively to a plain grey image (a meaningful ratio)."""
    grey = viz_shapes.normalize(torch.full((1, 3, 64, 64), 0.5))
    with torch.no_grad():
        means = forward_until(viz_shapes.model, grey, LAYER)[0].mean(dim=(1, 2))
    return int(torch.argmax(means))


@pytest.mark.parametrize("parametrization", ["pixel", pytest.param("fourier", marks=pytest.mark.slow)])
def test_objective_rises_by_a_large_factor(viz_shapes, channel, parametrization):
    result = maximize_activation(viz_shapes, LAYER, channel, steps=30, size=64, lr=0.05,
                                 parametrization=parametrization, seed=1)
    assert result.start_value > 0
    assert result.final_value > 5 * result.start_value
    assert result.image.dtype == np.uint8 and result.image.shape == (64, 64, 3)
    assert hook_count(viz_shapes.model) == 0


@pytest.mark.slow
def test_neuron_and_class_targets(viz_shapes, channel):
    neuron = maximize_activation(viz_shapes, LAYER, channel, position="center", steps=15, size=64, seed=2)
    assert neuron.final_value > neuron.start_value
    logit = maximize_activation(viz_shapes, class_index="star", steps=15, size=64, seed=2, lr=0.1)
    assert logit.final_value > logit.start_value and logit.target.class_index == 3


def test_runs_only_up_to_the_layer_and_keeps_the_model_frozen(viz_shapes, channel):
    with capture(viz_shapes.model, ["stage3.conv1", "fc"]) as seen:
        maximize_activation(viz_shapes, LAYER, channel, steps=2, size=64)
    assert seen == {}  # nothing after stage2.conv1 ran
    assert all(not p.requires_grad and p.grad is None for p in viz_shapes.model.parameters())
    assert not viz_shapes.model.training


def test_seed_reproducibility(random_shapes):
    a = maximize_activation(random_shapes, LAYER, 1, steps=5, size=48, seed=7).image
    b = maximize_activation(random_shapes, LAYER, 1, steps=5, size=48, seed=7).image
    c = maximize_activation(random_shapes, LAYER, 1, steps=5, size=48, seed=8).image
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_cancel_within_one_step_and_lock_free_between_steps(random_shapes):
    token, reports, lock_free = CancelToken(), [], []

    def on_progress(p):
        reports.append(p)
        probe = threading.Thread(target=lambda: lock_free.append(random_shapes.lock.acquire(blocking=False)
                                                                 and (random_shapes.lock.release() or True)))
        probe.start()
        probe.join()
        if p.step == 2:
            token.cancel()

    with pytest.raises(Cancelled):
        maximize_activation(random_shapes, LAYER, 0, steps=50, size=48, progress=on_progress, cancel=token,
                            preview_every=1)
    assert [p.step for p in reports] == [1, 2]
    assert lock_free == [True, True]
    assert reports[0].preview.shape == (48, 48, 3) and "objective" in reports[0].losses
    assert hook_count(random_shapes.model) == 0


@pytest.mark.parametrize("kwargs, match", [
    ({"layer": LAYER, "steps": 0}, "steps"),
    ({"layer": LAYER, "size": 4000}, "size"),
    ({"layer": LAYER, "parametrization": "wavelet"}, "parametrization"),
    ({"layer": None}, "layer"),
    ({"layer": LAYER, "channel": 999}, "channel"),
    ({"layer": LAYER, "class_index": 1}, "either"),
])
def test_bad_parameters(random_shapes, kwargs, match):
    with pytest.raises(ParameterError, match=match):
        maximize_activation(random_shapes, steps=kwargs.pop("steps", 2), size=kwargs.pop("size", 48), **kwargs)
