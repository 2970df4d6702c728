"""Blur IG, Guided IG and XRAI: parity with PAIR saliency 0.2.1 (saliency.core) and the papers' formulas.

PAIR works on numpy HWC arrays through a ``call_model_function`` that we write around a reference copy
of the model; both sides get the same normalized input (and the same baselines). Pearson r >= 0.99
per map on random-weight torchvision ResNet-18 and VGG-11 at 64 px, 2 targets each.
"""
from __future__ import annotations

import copy
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from cnnviz_core import load_model
from cnnviz_core.attribution import ChannelTarget, explain, explain_detailed
from cnnviz_core.attribution.path_methods import (gaussian_blur, guided_path_attribution, xrai_ranking,
                                                  xrai_segments)
from cnnviz_core.errors import Cancelled, ParameterError
from cnnviz_core.hooks import hook_count
from cnnviz_core.models import ModelHandle, ModelSpec
from cnnviz_core.progress import CancelToken

saliency = pytest.importorskip("saliency.core")
from saliency.core import guided_ig as pair_guided_ig  # noqa: E402
from saliency.core import xrai as pair_xrai  # noqa: E402

GRADS = saliency.base.INPUT_OUTPUT_GRADIENTS
SIZE = 64


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(np.corrcoef(a, b)[0, 1])


def _handle(name: str) -> ModelHandle:
    if name == "resnet18":
        return load_model("resnet18", weights=None)
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None)
    spec = ModelSpec(name=name, display_name=name, class_names=tuple(f"c{i}" for i in range(1000)),
                     default_layer="features", input_size=SIZE, resize_size=SIZE)
    return ModelHandle(spec, model, torch.device("cpu"), "random")


def _reference(model: nn.Module) -> nn.Module:
    ref = copy.deepcopy(model)
    for m in ref.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    return ref.eval()


def call_model_function(ref: nn.Module, target: int):
    """PAIR's callback: HWC batch -> {INPUT_OUTPUT_GRADIENTS: HWC gradients of the target logit}. The
    batch is made contiguous NCHW float32: Guided IG's path depends on the ranking of |gradient|, so
    even the float32 round-off of a strided input (r = 0.67 on VGG) would change the path."""

    def fn(x_batch, call_model_args=None, expected_keys=None):
        x = torch.tensor(np.asarray(x_batch), dtype=torch.float32).permute(0, 3, 1, 2).contiguous()
        x.requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(ref(x)[:, target].sum(), x)
        return {GRADS: g.permute(0, 2, 3, 1).numpy()}

    return fn


@pytest.fixture(scope="module", params=["resnet18", pytest.param("vgg11", marks=pytest.mark.slow)])
def case(request):
    handle = _handle(request.param)
    # a smooth image (upsampled noise): segments that follow its structure, like a photo's
    coarse = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    x = 1.5 * F.interpolate(coarse, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    logits = handle.forward(x)[0]
    targets = [int(logits.argmax()), int(logits.argsort()[len(logits) // 2])]
    return handle, x, targets, _reference(handle.model)


def hwc(t: torch.Tensor) -> np.ndarray:
    return t[0].permute(1, 2, 0).detach().numpy()


def test_blur_ig_matches_pair(case):
    handle, x, targets, ref = case
    for target in targets:
        ours = explain(handle, x, "blur_ig", target=target, cache=None, steps=12, batch_size=8)["blur_ig"]
        theirs = saliency.BlurIG().GetMask(hwc(x).astype(np.float64), call_model_function(ref, target), steps=12,
                                          batch_size=8)
        r = pearson(ours, theirs.transpose(2, 0, 1))
        assert r >= 0.99, f"{handle.name} target {target}: r={r:.4f}"


class _Numpy2:
    """numpy with ``quantile(..., interpolation=)``: PAIR 0.2.1's Guided IG still passes that keyword,
    which numpy 2 removed (its new name is ``method``)."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def quantile(a, q, interpolation="linear", **kwargs):
        return np.quantile(a, q, method=interpolation, **kwargs)


def test_guided_ig_matches_pair(case, monkeypatch):
    handle, x, targets, ref = case
    monkeypatch.setattr(pair_guided_ig, "np", _Numpy2())
    black = hwc(handle.normalize(torch.zeros_like(x)))
    for target in targets:
        ours = explain(handle, x, "guided_ig", target=target, cache=None, steps=12)["guided_ig"]
        theirs = saliency.GuidedIG().GetMask(hwc(x), call_model_function(ref, target), x_baseline=black, x_steps=12,
                                            fraction=0.25, max_dist=0.02)
        r = pearson(ours, theirs.transpose(2, 0, 1))
        assert r >= 0.99, f"{handle.name} target {target}: r={r:.4f}"


def _rgb(handle: ModelHandle, x: torch.Tensor) -> np.ndarray:
    return hwc(handle.denormalize(x).clamp(0, 1))


def test_xrai_segments_are_pairs_felzenszwalb_masks(case):
    handle, x, _, _ = case
    rgb = _rgb(handle, x)
    ours = xrai_segments(rgb)
    theirs = [m for m in pair_xrai._get_segments_felzenszwalb(rgb) if m.any()]
    assert len(ours) == len(theirs) > 6
    assert all(np.array_equal(a, b) for a, b in zip(ours, theirs))


def test_xrai_ranking_is_pairs_full_algorithm():
    rng = np.random.default_rng(0)
    labels = np.kron(rng.integers(0, 5, (8, 8)), np.ones((8, 8), int))  # 64 x 64, blocky regions
    segments = np.stack([labels == v for v in range(5)] + [np.roll(labels == v, 5, axis=1) for v in range(5)]
                        + [rng.random((64, 64)) < 0.3])
    segments[:, :12, :12] = False  # a corner no region covers
    attr = rng.normal(size=(64, 64))
    ours, regions = xrai_ranking(attr, segments)
    theirs, ranks = pair_xrai.XRAI._xrai(attr, list(segments), area_perc_th=1.0, min_pixel_diff=50)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)
    uncovered = ~np.any(regions, axis=0)
    assert uncovered.any() and ranks.max() == len(regions) + 1  # PAIR ranks the uncovered rest last
    assert not np.logical_and(regions[0], regions[1]).any()  # new pixels only


def test_xrai_matches_pair_given_the_papers_integrated_gradients(case):
    """PAIR's XRAI computes IG with ``np.linspace(0, 1, steps)`` (alpha = 0 included) summed and divided
    by ``steps``; the paper's IG (Sundararajan et al. Eq. 3, our ``integrated_gradients``) is the right
    Riemann sum. Measured end to end with PAIR's own IG at 20 steps: r = 0.93-0.999. So PAIR gets the
    paper's IG (black and white baselines, written here independently, batched) as its
    ``base_attribution``, and the regions from its own Felzenszwalb code on the RGB image."""
    handle, x, targets, ref = case
    steps = 8
    black, white = handle.normalize(torch.zeros_like(x)), handle.normalize(torch.ones_like(x))
    for target in targets:
        ours = explain_detailed(handle, x, "xrai", target=target, cache=None, steps=steps)["xrai"]
        grads = call_model_function(ref, target)
        igs = []
        for base in (black, white):
            path = torch.cat([base + (k / steps) * (x - base) for k in range(1, steps + 1)])
            g = grads(path.permute(0, 2, 3, 1).numpy())[GRADS].mean(axis=0)
            igs.append(hwc(x - base) * g)
        theirs = saliency.XRAI().GetMask(hwc(x), grads, base_attribution=np.mean(igs, axis=0),
                                         segments=pair_xrai._get_segments_felzenszwalb(_rgb(handle, x)))
        assert ours.raw.shape == (SIZE, SIZE) and ours.info["regions"] > 3
        r = pearson(ours.raw, theirs)
        assert r >= 0.99, f"{handle.name} target {target}: r={r:.4f}"


@pytest.mark.parametrize("sigma", [0.0, 0.004, 0.7, 3.2, 40.0])
def test_gaussian_blur_is_scipys_constant_mode_filter(sigma):
    from scipy import ndimage

    x = torch.randn(1, 3, 20, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ours = gaussian_blur(x, torch.tensor([sigma, 1.0], dtype=torch.float64))
    assert ours.shape == (2, 3, 20, 24)
    img = x[0].permute(1, 2, 0).numpy()
    theirs = img if sigma == 0 else ndimage.gaussian_filter(img, sigma=[sigma, sigma, 0], mode="constant")
    np.testing.assert_allclose(ours[0].permute(1, 2, 0).numpy(), theirs, atol=1e-12)


def _tiny_handle() -> ModelHandle:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding=1),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    spec = ModelSpec(name="tiny", display_name="tiny", class_names=tuple("abcd"), default_layer="3",
                     input_size=32, resize_size=32)
    return ModelHandle(spec, model, torch.device("cpu"), "test")


def test_blur_ig_is_complete():
    """Blur IG is a path method: it sums to F(x) - F(x blurred at max_sigma) (Xu et al., Sec. 3)."""
    handle = _tiny_handle()
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    blur = explain(handle, x, "blur_ig", target=2, cache=None, steps=200, max_sigma=20, batch_size=100)["blur_ig"]
    with torch.no_grad():
        f = handle.model(x)[0, 2]
        f_blurred = handle.model(gaussian_blur(x.double(), torch.tensor([20.0], dtype=torch.float64)).float())[0, 2]
    assert blur.sum() == pytest.approx(float(f - f_blurred), rel=0.05)
    # (Guided IG is not: its features jump up to max_dist ahead with the step's first gradient, so
    # its sum stays ~7 % off F(x) - F(baseline) here at any number of steps, in PAIR's code too.)


def test_guided_ig_without_deviation_is_left_riemann_integrated_gradients():
    handle = _tiny_handle()
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    base = handle.normalize(torch.zeros_like(x))
    steps = 10
    ours = explain(handle, x, "guided_ig", target=1, cache=None, steps=steps, max_dist=0)["guided_ig"]
    path = torch.cat([base + (k / steps) * (x - base) for k in range(steps)]).requires_grad_(True)
    (g,) = torch.autograd.grad(handle.model(path)[:, 1].sum(), path)
    expected = ((x - base)[0] * g.mean(dim=0)).numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())


def test_guided_path_keeps_features_within_max_dist_of_the_straight_line():
    """Every intermediate point of the guided path lies within max_dist (in alpha) of the straight line."""
    torch.manual_seed(0)
    w = torch.randn(50, dtype=torch.float64)
    x, base = torch.randn(50, dtype=torch.float64), torch.zeros(50, dtype=torch.float64)
    points = []

    def grad(p):
        points.append(p.clone())
        return torch.tanh(p) * w  # some non-constant gradient

    steps, max_dist = 20, 0.1
    guided_path_attribution(grad, x, base, steps, 0.25, max_dist)
    for k, p in enumerate(points):  # point k is where step k takes its gradient: alpha = k / steps
        alpha = (p - base) / (x - base)
        assert (alpha >= max(k / steps - max_dist, 0) - 1e-9).all() and (alpha <= k / steps + max_dist + 1e-9).all()


def test_unit_targets_progress_and_cancel():
    handle = load_model("resnet18", weights=None)
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(4))
    unit = ChannelTarget("layer2", 5)
    res = explain_detailed(handle, x, ["blur_ig", "guided_ig", "xrai"], target=unit, cache=None, steps=4)
    assert res["blur_ig"].raw.shape == res["guided_ig"].raw.shape == (3, SIZE, SIZE)
    assert res["xrai"].raw.shape == (SIZE, SIZE) and res["xrai"].unit is not None
    assert all(np.isfinite(r.raw).all() and np.abs(r.raw).max() > 0 for r in res.values())
    seen = []
    explain(handle, x, "blur_ig", cache=None, steps=6, batch_size=4, progress=seen.append)
    assert [(p.step, p.total) for p in seen] == [(4, 6), (6, 6)]
    token = CancelToken()
    token.cancel()
    for key in ("blur_ig", "guided_ig", "xrai"):
        with pytest.raises(Cancelled):
            explain(handle, x, key, cache=None, steps=4, cancel=token)
    assert hook_count(handle.model) == 0


def test_concurrent_calls_on_one_handle_give_the_sequential_maps():
    handle = _tiny_handle()
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    expected = {t: explain(handle, x, "guided_ig", target=t, cache=None, steps=8)["guided_ig"] for t in range(4)}
    got: dict = {}
    threads = [threading.Thread(target=lambda t=t: got.__setitem__(
        t, explain(handle, x, "guided_ig", target=t, cache=None, steps=8)["guided_ig"])) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for t in range(4):
        np.testing.assert_array_equal(got[t], expected[t])


@pytest.mark.parametrize("method,kwargs,match", [
    ("blur_ig", dict(max_sigma=0), "max_sigma"),
    ("blur_ig", dict(grad_step=-1), "grad_step"),
    ("blur_ig", dict(steps=0), "steps"),
    ("guided_ig", dict(fraction=0), "fraction"),
    ("guided_ig", dict(fraction=1.5), "fraction"),
    ("guided_ig", dict(max_dist=2), "max_dist"),
    ("guided_ig", dict(baseline="white"), "baseline"),
    ("xrai", dict(batch_size=0), "batch_size"),
])
def test_bad_parameters(method, kwargs, match):
    handle = _tiny_handle()
    with pytest.raises(ParameterError, match=match):
        explain(handle, torch.zeros(1, 3, 32, 32), method, cache=None, **kwargs)
