"""Unit targets (channel, neuron) through the engine, and the typed registry they run on."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from cnnviz_core import load_model
from cnnviz_core.attribution import (CAM_METHODS, METHODS, UNIT_METHODS, ChannelTarget, ClassTarget, Method,
                                     NeuronTarget, OcclusionParams, Product, ScoreCAMParams, explain,
                                     explain_detailed)
from cnnviz_core.attribution.cam import WeightedCAM
from cnnviz_core.attribution.occlusion import unit_occlusion
from cnnviz_core.attribution.registry import method_params
from cnnviz_core.cache import LRUCache
from cnnviz_core.errors import MethodUnavailableError, ParameterError
from cnnviz_core.hooks import forward_until, hook_count

PROJECTIONS = ["saliency", "deconvnet", "guided_backprop"]


@pytest.fixture(scope="module")
def shapes():
    return load_model("shapes-cnn", weights=None)


def _x(seed: int = 0, size: int = 128) -> torch.Tensor:
    return torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(seed))


class Counter:
    """Counts forwards of a module (a pre-hook, removed on exit)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module, self.calls = module, 0

    def __enter__(self) -> "Counter":
        self.h = self.module.register_forward_pre_hook(lambda *_: setattr(self, "calls", self.calls + 1))
        return self

    def __exit__(self, *exc: object) -> None:
        self.h.remove()


def _grad_of(handle, x, layer, score):
    xi = x.clone().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(score(forward_until(handle.model, xi, layer)), xi)
    return g[0].numpy()


def test_one_truncated_forward_for_three_projections(shapes):
    """The projections share one forward that stops after the unit's layer. (The receptive field
    costs one structural forward the first time a (layer, input size, unit) is seen; warmed here.)"""
    explain_detailed(shapes, _x(), "saliency", target=NeuronTarget("stage2", 4), cache=None)
    with Counter(shapes.model) as whole, Counter(shapes.module("stage3")) as after, \
            Counter(shapes.module("fusion")) as head:
        res = explain_detailed(shapes, _x(), PROJECTIONS, target=NeuronTarget("stage2", 4), cache=None)
    assert whole.calls == 1 and after.calls == 0 and head.calls == 0  # nothing past stage2 ran
    assert {r.info["passes_run"] for r in res.values()} == {1}
    assert hook_count(shapes.model) == 0


def test_neuron_without_position_is_the_channels_strongest(shapes):
    x = _x(1)
    res = explain_detailed(shapes, x, PROJECTIONS, target=NeuronTarget("stage2", 4), cache=None)
    with torch.no_grad():
        a = forward_until(shapes.model, x, "stage2")[0, 4]
    y, xx = divmod(int(a.reshape(-1).argmax()), a.shape[1])
    for r in res.values():
        assert (r.unit.layer, r.unit.channel, r.unit.y, r.unit.x) == ("stage2", 4, y, xx)
        assert r.unit.activation == pytest.approx(float(a.max()), rel=1e-6)
        assert r.target == -1 and r.layer == "stage2" and r.raw.shape == (3, 128, 128)
    expected = _grad_of(shapes, x, "stage2", lambda act: act[0, 4, y, xx])
    np.testing.assert_allclose(res["saliency"].raw, expected, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("reduce", ["sum", "max"])
def test_channel_targets_are_the_gradient_of_the_channels_sum_or_max(shapes, reduce):
    x = _x(2)
    res = explain_detailed(shapes, x, "saliency", target=ChannelTarget("stage3", 9, reduce), cache=None)["saliency"]
    score = (lambda a: a[0, 9].sum()) if reduce == "sum" else (lambda a: a[0, 9].amax())
    np.testing.assert_allclose(res.raw, _grad_of(shapes, x, "stage3", score), rtol=1e-4, atol=1e-7)
    assert (res.unit.y is None) == (reduce == "sum")
    t, l, b, r = res.receptive_field
    assert (b - t) * (r - l) > 0


def test_projections_are_zero_outside_the_receptive_field(shapes):
    x = _x(3)
    res = explain_detailed(shapes, x, [*PROJECTIONS, "smoothgrad", "integrated_gradients"],
                           target=NeuronTarget("stage3", 2), cache=None, samples=4, steps=4)
    t, l, b, r = res["saliency"].receptive_field
    assert 0 < b - t < 128 and 0 < r - l < 128
    for key, m in res.items():
        outside = np.abs(m.raw).copy()
        outside[:, t:b, l:r] = 0
        assert outside.max() == 0, key
        assert np.abs(m.raw[:, t:b, l:r]).max() > 0, key
        assert m.receptive_field == (t, l, b, r) and m.unit == res["saliency"].unit


def test_smoothgrad_and_ig_explain_the_same_neuron_on_every_sample(shapes):
    """The position is resolved on the clean image; IG of a unit satisfies completeness."""
    x = _x(4)
    target = NeuronTarget("stage2", 11)
    ig = explain_detailed(shapes, x, "integrated_gradients", target=target, cache=None, steps=64,
                          baseline="zero")["integrated_gradients"]
    u = ig.unit
    with torch.no_grad():
        at_x = forward_until(shapes.model, x, "stage2")[0, 11, u.y, u.x]
        at_0 = forward_until(shapes.model, torch.zeros_like(x), "stage2")[0, 11, u.y, u.x]
    assert float(ig.raw.sum()) == pytest.approx(float(at_x - at_0), rel=0.1, abs=1e-3)
    sg = explain_detailed(shapes, x, "smoothgrad", target=target, cache=None, samples=3)["smoothgrad"]
    assert (sg.unit.y, sg.unit.x) == (u.y, u.x)


def test_occlusion_of_a_unit_maps_the_drop_of_its_activation(shapes):
    x = _x(5)
    target = NeuronTarget("stage2", 6)
    res = explain_detailed(shapes, x, "occlusion", target=target, cache=None, patch=32, stride=32)["occlusion"]
    u = res.unit
    grey = shapes.normalize(torch.full_like(x, 0.5))
    with torch.no_grad():
        base = forward_until(shapes.model, x, "stage2")[0, 6, u.y, u.x]
        occluded = x.clone()
        occluded[..., 32:64, 64:96] = grey[..., 32:64, 64:96]
        drop = base - forward_until(shapes.model, occluded, "stage2")[0, 6, u.y, u.x]
    assert res.raw[40, 70] == pytest.approx(float(drop), abs=1e-5)
    fig7 = unit_occlusion(shapes, x, target, target=2, params=OcclusionParams(patch=32, stride=32))
    assert fig7.unit == NeuronTarget("stage2", 6, u.y, u.x) and fig7.target == 2
    np.testing.assert_allclose(fig7.unit_drop, res.raw, atol=1e-5)
    assert fig7.class_drop.shape == (128, 128) and np.abs(fig7.class_drop).max() > 0
    assert hook_count(shapes.model) == 0


def test_class_methods_refuse_unit_targets_in_one_line(shapes):
    with pytest.raises(MethodUnavailableError, match="explains classes"):
        explain(shapes, _x(), "gradcam", target=NeuronTarget("stage2", 1), cache=None)
    res = explain_detailed(shapes, _x(), ["gradcam", "guided_gradcam", "saliency"], target=ChannelTarget("stage2", 1),
                           cache=None, on_error="collect")
    assert res["gradcam"].error and res["guided_gradcam"].error and "\n" not in res["gradcam"].error
    assert res["saliency"].error is None
    assert {"saliency", "deconvnet", "guided_backprop", "smoothgrad", "integrated_gradients",
            "occlusion"} <= set(UNIT_METHODS)
    assert not set(UNIT_METHODS) & set(CAM_METHODS)  # a CAM explains a class through the head


@pytest.mark.parametrize("target,match", [
    (lambda: NeuronTarget("stage9", 0), "no layer"),
    (lambda: NeuronTarget("stage2", 48), "out of range"),
    (lambda: NeuronTarget("stage2", 0, 32, 0), "outside"),
    (lambda: NeuronTarget("stage2", 0, 3, None), "both y and x"),
    (lambda: NeuronTarget("stage2", -1), "channel"),
    (lambda: ChannelTarget("stage2", 0, "mean"), "sum or max"),
])
def test_bad_units_raise_parameter_error(shapes, target, match):
    with pytest.raises(ParameterError, match=match):
        explain(shapes, _x(), "saliency", target=target(), cache=None)


def test_unit_results_are_cached_and_separate_units(shapes):
    cache = LRUCache(32)
    first = explain_detailed(shapes, _x(6), PROJECTIONS, target=NeuronTarget("stage2", 3), cache=cache)
    with Counter(shapes.model) as c:
        again = explain_detailed(shapes, _x(6), PROJECTIONS, target=NeuronTarget("stage2", 3), cache=cache)
    assert c.calls == 0 and all(r.cached for r in again.values())
    assert again["deconvnet"].receptive_field == first["deconvnet"].receptive_field
    other = explain_detailed(shapes, _x(6), "saliency", target=NeuronTarget("stage2", 4), cache=cache)
    assert not other["saliency"].cached
    cls = explain_detailed(shapes, _x(6), "saliency", target=0, cache=cache)["saliency"]
    assert not cls.cached and cls.unit is None and cls.receptive_field is None


def test_first_conv_unit_projects_to_its_kernel(shapes):
    """No ReLU before a first-layer unit: every rule is the gradient, i.e. the (BN-free) kernel."""
    res = explain_detailed(shapes, _x(7), PROJECTIONS, target=NeuronTarget("stage1.conv1", 5, 20, 30), cache=None)
    kernel = shapes.module("stage1.conv1").weight[5].numpy()
    for key in PROJECTIONS:
        np.testing.assert_allclose(res[key].raw[:, 19:22, 29:32], kernel, rtol=1e-5, atol=1e-7)
        assert res[key].receptive_field == (19, 29, 22, 32)


# ---- the typed registry ---------------------------------------------------------------------------
def test_registry_order_is_definition_order_and_fields_are_keyword_only():
    keys = list(METHODS)
    first = ["cam", "gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "eigencam"]
    assert keys[:7] == first  # cam.py is imported first, its classes in definition order
    later = ["scorecam", "ablationcam", "saliency", "deconvnet", "guided_backprop", "guided_gradcam", "smoothgrad",
             "integrated_gradients", "occlusion"]
    assert [k for k in keys if k in later] == later  # the modules' import order, kept
    m = METHODS["gradcam"]
    with pytest.raises(TypeError):
        Method(*[getattr(m, f.name) for f in dataclasses.fields(m)])  # positional construction refused
    assert all(isinstance(p, Product) for m in METHODS.values() for p in m.passes)
    assert Product.LAYER_GRAD == "layer_grad" and {Product.LOGITS: 1}["logits"] == 1


def test_cam_family_methods_supply_only_channel_weights():
    """Every CAM-family method built on the shared pass is a WeightedCAM subclass that supplies its
    weights; the others of the family (FullGrad, fusion, RefineCAM, DFF) are functions of their own."""
    import importlib

    mods = [importlib.import_module(f"cnnviz_core.attribution.{name}")
            for name in ("cam", "perturbation", "cam_variants", "perturbation_cams")]
    classes = [v for mod in mods for v in vars(mod).values()
               if isinstance(v, type) and issubclass(v, WeightedCAM) and v is not WeightedCAM
               and v.__module__ == mod.__name__]
    assert len(classes) == 17 and len(CAM_METHODS) == 21
    for cls in classes:
        assert "weights" in vars(cls) and "compute" not in vars(cls) and "layer_map" not in vars(cls), cls


def test_parameters_are_typed_per_method():
    scorecam, occlusion = METHODS["scorecam"], METHODS["occlusion"]
    assert scorecam.params == {"aug_smooth": False, "eigen_smooth": False, "batch_size": 16, "channels": None}
    p = method_params(scorecam, {"batch_size": 8}, {"scorecam": {"channels": 4}})
    assert p == ScoreCAMParams(batch_size=8, channels=4)
    # a typed option changes that method only; the flat parameter still reaches the others
    assert method_params(occlusion, {"batch_size": 8}, {"scorecam": ScoreCAMParams(batch_size=2)}).batch_size == 8
    assert method_params(scorecam, {"batch_size": 8}, {"scorecam": ScoreCAMParams(batch_size=2)}).batch_size == 2
    with pytest.raises(ParameterError, match="scorecam has no parameter 'patch'"):
        method_params(scorecam, {}, {"scorecam": {"patch": 3}})
    with pytest.raises(ParameterError, match="batch_size"):
        ScoreCAMParams(batch_size=0)
    assert ScoreCAMParams(batch_size="4").batch_size == 4  # CLI strings are coerced


def test_options_reach_explain(shapes):
    x = _x(8, 64)
    res = explain_detailed(shapes, x, ["scorecam", "occlusion"], target=ClassTarget(1), cache=None,
                           options={"scorecam": ScoreCAMParams(channels=3), "occlusion": OcclusionParams(patch=16)})
    assert res["scorecam"].info["channels_used"] == 3 and res["occlusion"].info["patch"] == 16
    with pytest.raises(ParameterError, match="unknown method"):
        explain(shapes, x, "gradcam", cache=None, options={"grad-cam": {}})
