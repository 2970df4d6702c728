"""Every method on every registered model, non-default layers, CAM's head check, clear errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnviz_core import entries, load_model
from cnnviz_core.attribution import METHODS, explain, explain_detailed
from cnnviz_core.errors import MethodUnavailableError, ParameterError
from cnnviz_core.hooks import hook_count

CHEAP = dict(channels=4, batch_size=64, samples=2, steps=2, patch=32, stride=32, masks=8, segments=8, concepts=2,
             nmf_iters=10)
# Which (model, method) pairs must be refused, from the architectures: CAM needs GAP -> one linear
# layer; guided backprop / deconvnet need ReLUs (ConvNeXt has only GELU, EfficientNet only SiLU).
GAP_LINEAR = {"shapes-cnn", "shapes-cnn-biased", "googlenet", "resnet18", "resnet50", "densenet121",
              "efficientnet_b0"}
NO_RELU = {"convnext_tiny", "efficientnet_b0"}
RELU_METHODS = {"deconvnet", "guided_backprop", "guided_gradcam"}
# LRP's rules cover convolutions, linear layers, BatchNorm right after them, ReLU, pooling and ResNet's
# residual addition; it refuses, in one line, what it has no rule for: a gated product (shapes-cnn; the
# biased variant has no gate),
# local response normalization (zfnet), GoogLeNet's input transform, BatchNorm before a conv
# (DenseNet), Hardswish, SiLU and LayerNorm.
LRP_REFUSED = {"shapes-cnn", "zfnet", "googlenet", "densenet121", "mobilenet_v3_large",
               "efficientnet_b0", "convnext_tiny"}
LRP_METHODS = {"lrp_epsilon", "lrp_gamma", "lrp_alpha_beta"}


def expected_unavailable(model: str, method: str) -> bool:
    return ((method == "cam" and model not in GAP_LINEAR) or (method in RELU_METHODS and model in NO_RELU)
            or (method in LRP_METHODS and model in LRP_REFUSED))


def _input(handle, size: int) -> torch.Tensor:
    return torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))


def _check(results, handle, size, layer):
    for key, res in results.items():
        m = METHODS[key]
        if expected_unavailable(handle.name, key):
            assert res.error and "\n" not in res.error, (handle.name, key)
            continue
        assert res.error is None, (handle.name, key, res.error)
        shape = (3, size, size) if m.family == "gradient" else (size, size)
        assert res.raw.shape == shape and res.scaled.shape == shape, (handle.name, key)
        assert res.raw.dtype == np.float32 and np.isfinite(res.raw).all(), (handle.name, key)
        if m.family != "gradient":
            assert 0.0 <= res.scaled.min() and res.scaled.max() <= 1.0
        assert res.layer == (layer if m.uses_layer else None)


@pytest.mark.slow
@pytest.mark.parametrize("entry", entries(), ids=lambda e: e.name)
def test_every_method_on_every_registered_model(entry):
    handle = load_model(entry.name, weights=None)
    size = 128 if entry.architecture.origin == "cnnviz" else 224 if entry.name == "zfnet" else 96
    results = explain_detailed(handle, _input(handle, size), list(METHODS), on_error="collect", cache=None, **CHEAP)
    assert list(results) == list(METHODS)
    _check(results, handle, size, handle.default_layer)


@pytest.mark.parametrize("name,layer,size", [("shapes-cnn", "stage3", 128), ("resnet18", "layer3", 64),
                                             ("vgg16", "features.28", 64)])
def test_non_default_layers(name, layer, size):
    handle = load_model(name, weights=None)
    cams = [k for k, m in METHODS.items() if m.family == "cam" and k != "cam"]
    results = explain_detailed(handle, _input(handle, size), cams + ["guided_gradcam"], layer=layer,
                               on_error="collect", cache=None, **CHEAP)
    _check(results, handle, size, layer)


def test_capture_is_not_altered_by_inplace_relu_after_a_conv_layer():
    """vgg16 features.28 is a conv followed by ReLU(inplace=True): Grad-CAM must see the conv output."""
    handle = load_model("vgg16", weights=None)
    x = _input(handle, 64)
    res = explain_detailed(handle, x, ["gradcam", "eigencam"], layer="features.28", cache=None)
    store = {}

    def hook(_m, _i, out):
        store["a"] = out.detach().clone().requires_grad_(True)
        return store["a"] * 1.0

    h = handle.model.features[28].register_forward_hook(hook)
    try:
        with torch.enable_grad():
            logits = handle.model(x)
            (g,) = torch.autograd.grad(logits[0, res["gradcam"].target], store["a"])
    finally:
        h.remove()
    a = store["a"][0].detach()
    assert (a < 0).any()  # the conv output really has negative values, a ReLU'd capture would not
    expected = torch.relu(torch.einsum("k,khw->hw", g[0].mean(dim=(1, 2)), a)).numpy()
    np.testing.assert_allclose(res["gradcam"].layer_map, expected, rtol=1e-4, atol=1e-6 * expected.max())


@pytest.mark.parametrize("name,size", [("shapes-cnn", 128), ("resnet18", 64)])
def test_cam_equals_gradcam_on_gap_linear_heads(name, size):
    """On GAP -> linear heads dy_c/dA_k = w_ck / hw everywhere, so CAM and Grad-CAM coincide."""
    handle = load_model(name, weights=None)
    x = _input(handle, size)
    for target in (0, 3):
        maps = explain(handle, x, ["cam", "gradcam"], target=target, cache=None)
        np.testing.assert_allclose(maps["cam"], maps["gradcam"], atol=1e-4)


def test_cam_refuses_models_without_gap_linear_head():
    handle = load_model("vgg16", weights=None)
    with pytest.raises(MethodUnavailableError, match="global average pooling"):
        explain(handle, _input(handle, 64), "cam", cache=None)


def test_guided_backprop_refused_without_relu_and_warned_for_mixed_activations():
    conv = load_model("convnext_tiny", weights=None)
    with pytest.raises(MethodUnavailableError, match="ReLU"):
        explain(conv, _input(conv, 64), "guided_backprop", cache=None)
    mobile = load_model("mobilenet_v3_large", weights=None)
    res = explain_detailed(mobile, _input(mobile, 64), "guided_backprop", cache=None)["guided_backprop"]
    assert res.info["relu_calls"] > 0 and "Hardswish" in res.info["warning"]


@pytest.fixture(scope="module")
def shapes():
    return load_model("shapes-cnn", weights=None)


@pytest.mark.parametrize("kwargs,match", [
    (dict(methods="gradcam", layer="stage9"), "no layer"),
    (dict(methods="gradcam", target=6), "out of range"),
    (dict(methods="gradcam", target="hexagon"), "unknown class"),
    (dict(methods="grad-cam"), "unknown method 'grad-cam'; choose from cam, gradcam"),
    (dict(methods=[]), "no method"),
    (dict(methods="gradcam", patch_size=8), "unknown parameter 'patch_size'"),
    (dict(methods="occlusion", patch=0), "patch"),
    (dict(methods="scorecam", channels=0), "channels"),
    (dict(methods="smoothgrad", batch_size=0), "batch_size"),
    (dict(methods="integrated_gradients", baseline="white"), "baseline"),
])
def test_bad_arguments_raise_parameter_error(shapes, kwargs, match):
    methods = kwargs.pop("methods")
    with pytest.raises(ParameterError, match=match):
        explain(shapes, _input(shapes, 128), methods, cache=None, **kwargs)


def test_bad_inputs_raise_parameter_error(shapes):
    with pytest.raises(ParameterError, match="one image"):
        explain(shapes, torch.zeros(2, 3, 128, 128), "gradcam", cache=None)
    with pytest.raises(ParameterError, match="one image"):
        explain(shapes, torch.zeros(3, 128, 128), "gradcam", cache=None)
    with pytest.raises(ParameterError, match="NaN"):
        explain(shapes, torch.full((1, 3, 128, 128), float("nan")), "gradcam", cache=None)
    with pytest.raises(ParameterError, match="scale"):
        explain(shapes, _input(shapes, 128), "gradcam", scale="log", cache=None)


def test_pil_input_and_all_zero_map(shapes):
    from PIL import Image

    img = Image.new("RGB", (160, 120), (30, 90, 200))
    maps = explain(shapes, img, ["gradcam", "saliency"], cache=None)
    assert maps["gradcam"].shape == (128, 128) and maps["saliency"].shape == (3, 128, 128)
    # a class whose Grad-CAM is negative everywhere gives an all-zero map, never NaN
    for target in range(6):
        m = explain(shapes, img, "gradcam", target=target, cache=None)["gradcam"]
        assert np.isfinite(m).all() and (m.max() == 0 or m.max() == pytest.approx(1.0))


#: The methods of the reference libraries that issue 16 asks for, by the keys it names.
REFERENCE_KEYS = ("eigengradcam", "gradcam_elementwise", "kpcacam", "fullgrad", "finercam", "shapleycam", "dff",
                  "sscam", "iscam", "smoothgradcam++", "refinecam", "input_x_gradient", "gradient_shap", "deeplift",
                  "deeplift_shap", "lime", "kernel_shap", "smoothgrad_sq", "vargrad", "blur_ig", "guided_ig", "xrai",
                  "lrp_epsilon", "lrp_gamma", "lrp_alpha_beta", "rise")
FIRST_SIXTEEN = ("cam", "gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "eigencam", "scorecam",
                 "ablationcam", "saliency", "deconvnet", "guided_backprop", "guided_gradcam", "smoothgrad",
                 "integrated_gradients", "occlusion")


def test_registry_metadata_is_complete():
    from cnnviz_core.attribution import FAMILIES

    assert list(METHODS)[:2] == ["cam", "gradcam"]
    assert set(FIRST_SIXTEEN) | set(REFERENCE_KEYS) <= set(METHODS), sorted(set(REFERENCE_KEYS) - set(METHODS))
    for key, m in METHODS.items():
        assert m.key == key and m.display_name and m.paper.link.startswith("https://")
        assert m.family in FAMILIES and m.cost
        assert 2013 <= m.paper.year <= 2026 and isinstance(m.class_discriminative, bool)
        assert set(m.needs) <= {"gradients", "gap_head", "extra_forwards", "relu"}
    assert not METHODS["guided_backprop"].class_discriminative and METHODS["gradcam"].class_discriminative
    slow = {k for k, m in METHODS.items() if m.long_running}
    assert {"scorecam", "ablationcam", "occlusion", "smoothgrad", "integrated_gradients", "sscam", "iscam", "rise",
            "lime", "kernel_shap", "xrai"} <= slow
    assert not slow & {"gradcam", "eigengradcam", "gradcam_elementwise", "fullgrad", "lrp_epsilon", "input_x_gradient"}


class SkipAcrossLayer(torch.nn.Module):
    """A value from before ``body`` is used after it (so the fx tail split must refuse), and the
    forward has data-dependent control flow when ``branchy`` (so fx cannot trace it at all)."""

    def __init__(self, branchy: bool) -> None:
        super().__init__()
        self.branchy = branchy
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.body = torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU())
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stem(x)
        if self.branchy and bool(s.mean() > 100):
            s = s * 2
        return self.fc((self.body(s) + s).mean(dim=(2, 3)))


@pytest.mark.parametrize("branchy", [False, True])
def test_ablationcam_fallback_for_graphs_that_cannot_be_split(branchy):
    from cnnviz_core.models import ModelHandle, ModelSpec
    from cnnviz_core.attribution.tail import layer_tail

    torch.manual_seed(0)
    model = SkipAcrossLayer(branchy).eval()
    spec = ModelSpec(name="skip", display_name="skip", class_names=tuple("abcd"), default_layer="body",
                     input_size=128, resize_size=128)
    handle = ModelHandle(spec, model, torch.device("cpu"), "test")
    assert layer_tail(handle.model, "body") is None
    x = _input(handle, 16)
    res = explain_detailed(handle, x, "ablationcam", target=1, cache=None, batch_size=3)["ablationcam"]
    assert res.info["ablation"].startswith("full forward")
    with torch.no_grad():  # naive Ablation-CAM: one forward per zeroed channel
        s = model.stem(x)
        a = model.body(s)
        y = model.fc((a + s).mean(dim=(2, 3)))[0, 1]
        weights = []
        for k in range(8):
            ablated = a.clone()
            ablated[:, k] = 0
            weights.append((y - model.fc((ablated + s).mean(dim=(2, 3)))[0, 1]) / y)
        expected = torch.relu(torch.einsum("k,khw->hw", torch.stack(weights), a[0])).numpy()
    np.testing.assert_allclose(res.layer_map, expected, rtol=1e-4, atol=1e-6 * max(expected.max(), 1e-12))
    assert hook_count(handle.model) == 0
