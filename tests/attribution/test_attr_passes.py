"""Shared passes, result cache, progress/cancel, and shared-model safety under concurrency."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from cnnviz_core import load_model
from cnnviz_core.attribution import explain, explain_detailed
from cnnviz_core.cache import LRUCache
from cnnviz_core.errors import Cancelled
from cnnviz_core.hooks import hook_count
from cnnviz_core.progress import CancelToken

COMPARE_SIX = ["gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "guided_backprop"]


@pytest.fixture(scope="module")
def shapes():
    return load_model("shapes-cnn", weights=None)


def _x(seed: int = 0, size: int = 128) -> torch.Tensor:
    return torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(seed))


class ForwardCounter:
    """Counts forwards of the whole model (a pre-hook removed on exit)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model, self.calls = model, 0

    def __enter__(self) -> "ForwardCounter":
        self.handle = self.model.register_forward_pre_hook(lambda *_: setattr(self, "calls", self.calls + 1))
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.remove()


def test_compare_six_runs_one_forward(shapes):
    with ForwardCounter(shapes.model) as counter:
        results = explain_detailed(shapes, _x(), COMPARE_SIX + ["saliency", "deconvnet", "guided_gradcam"], cache=None)
    assert counter.calls == 1
    assert {r.info["passes_run"] for r in results.values()} == {1}
    assert len({r.target for r in results.values()}) == 1


def test_shared_pass_gives_the_same_maps_as_separate_calls(shapes):
    x = _x(1)
    together = explain(shapes, x, COMPARE_SIX + ["saliency", "deconvnet"], target=2, scale="none", cache=None)
    for key, value in together.items():
        alone = explain(shapes, x, key, target=2, scale="none", cache=None)[key]
        np.testing.assert_allclose(value, alone, rtol=1e-5, atol=1e-8)


def test_saliency_is_the_plain_input_gradient(shapes):
    x = _x(2)
    ours = explain(shapes, x, ["saliency", "guided_backprop"], target=4, cache=None)
    xi = x.clone().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(shapes.model(xi)[0, 4], xi)
    np.testing.assert_allclose(ours["saliency"], g[0].numpy(), rtol=1e-4, atol=1e-9)
    assert not np.allclose(ours["guided_backprop"], ours["saliency"])


def test_cache_answers_reruns_and_separates_inputs(shapes):
    cache = LRUCache(32)
    first = explain_detailed(shapes, _x(3), COMPARE_SIX + ["saliency"], cache=cache)
    with ForwardCounter(shapes.model) as counter:
        again = explain_detailed(shapes, _x(3), COMPARE_SIX, cache=cache)
    assert counter.calls == 0 and all(r.cached for r in again.values())
    np.testing.assert_array_equal(first["gradcam"].scaled, again["gradcam"].scaled)
    other = explain_detailed(shapes, _x(3) + 1e-3, COMPARE_SIX, cache=cache)
    assert not any(r.cached for r in other.values())
    assert not np.array_equal(first["guided_backprop"].raw, other["guided_backprop"].raw)
    layer3 = explain_detailed(shapes, _x(3), ["gradcam", "saliency"], layer="stage3", cache=cache)
    assert not layer3["gradcam"].cached and layer3["saliency"].cached  # saliency does not use the layer


def test_scale_none_keeps_raw_cam_values(shapes_model, shapes_scene_image):
    x = shapes_model.preprocess(shapes_scene_image)  # a scene: the trained map is not all zero
    res = explain_detailed(shapes_model, x, "gradcam", cache=None)["gradcam"]
    raw = explain(shapes_model, x, "gradcam", scale="none", cache=None)["gradcam"]
    np.testing.assert_array_equal(raw, res.raw)
    assert raw.min() >= 0 and raw.max() > 0
    np.testing.assert_allclose(res.scaled, (raw - raw.min()) / (raw.max() - raw.min()), atol=1e-6)
    assert res.layer_map.shape == (32, 32)  # fusion of shapes-cnn: stride 4


def test_progress_and_cancel_for_long_methods(shapes):
    for method, params in [("scorecam", dict(batch_size=16, channels=32)), ("ablationcam", dict(batch_size=32)),
                           ("occlusion", dict(patch=16, stride=16, batch_size=4)),
                           ("smoothgrad", dict(samples=8, batch_size=4)),
                           ("integrated_gradients", dict(steps=8, batch_size=4))]:
        seen = []
        explain(shapes, _x(5, 64), method, cache=None, progress=seen.append, **params)
        assert len(seen) >= 2 and seen[-1].step == seen[-1].total, method
        token = CancelToken()

        def cancel_after_first(p, token=token):
            token.cancel()

        with pytest.raises(Cancelled):
            explain(shapes, _x(5, 64), method, cache=None, progress=cancel_after_first, cancel=token, **params)
    assert hook_count(shapes.model) == 0


def test_concurrent_calls_match_serial_and_leave_no_trace(shapes):
    x = _x(6, 64)
    methods = ["gradcam", "gradcam++", "guided_backprop", "saliency", "eigencam"]
    serial = {t: explain(shapes, x, methods, target=t, scale="none", cache=None) for t in range(6)}
    barrier = threading.Barrier(8)

    def work(i: int):
        barrier.wait()
        t = i % 6
        return t, explain(shapes, x, methods, target=t, scale="none", cache=None)

    with ThreadPoolExecutor(8) as pool:
        for t, maps in pool.map(work, range(8)):
            for key in methods:
                np.testing.assert_allclose(maps[key], serial[t][key], rtol=1e-5, atol=1e-9)
    assert hook_count(shapes.model) == 0
    assert all(p.grad is None and not p.requires_grad for p in shapes.model.parameters())
    assert not shapes.model.training
