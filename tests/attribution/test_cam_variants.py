"""The pytorch-grad-cam ("pgc") gradient-CAM variants and the aug_smooth / eigen_smooth options.

Parity: Pearson r >= 0.99 per map against pgc 1.5.7 on random-weight torchvision architectures, two
targets each, after the same ReLU and min-max scaling (see test_attr_parity for the conventions:
DenseNet at its dense block, the 1e6 gain on linear-in-score targets for MobileNetV3).

Principal-component signs. A principal component's sign is arbitrary: pgc keeps whatever the SVD
(or scikit-learn's KernelPCA) returns, so after the ReLU its map is sometimes the complement of the
other sign's. We orient every projection so that it correlates non-negatively with the channel sum
of what is projected (documented in cam.py). To compare the maps themselves, pgc's projection
functions are wrapped here so that their output gets the same orientation; the wrapper calls pgc's
own function and only flips the sign (the "same noise on both sides" rule of the parity tests).
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from cnnviz_core import load_model
from cnnviz_core.attribution import METHODS, explain, explain_detailed
from cnnviz_core.attribution.cam import AUGMENTATIONS, WeightedCAM, principal_projection
from cnnviz_core.attribution.cam_variants import (FinerCAMParams, KPCACAMParams, ShapleyCAMParams,
                                                  centred_kernel)
from cnnviz_core.attribution.registry import CAMParams, method_params
from cnnviz_core.cache import LRUCache
from cnnviz_core.errors import ParameterError

from test_attr_parity import PGC_LAYER, _minmax, pearson, reference_copy

pgc = pytest.importorskip("pytorch_grad_cam")
import pytorch_grad_cam.base_cam as pgc_base  # noqa: E402
import pytorch_grad_cam.eigen_grad_cam as pgc_eigengrad  # noqa: E402
import pytorch_grad_cam.grad_cam_elementwise as pgc_elementwise  # noqa: E402
import pytorch_grad_cam.kpca_cam as pgc_kpca  # noqa: E402
from pytorch_grad_cam.utils.model_targets import (ClassifierOutputReST, ClassifierOutputTarget,  # noqa: E402
                                                  FinerWeightedTarget)

VARIANTS = ["eigengradcam", "gradcam_elementwise", "kpcacam", "finercam", "shapleycam"]


def _oriented(projection_fn):
    """pgc's projection, each image's map flipped where it correlates negatively with the channel
    sum of the maps it projects (our orientation rule)."""

    def wrapped(batch, *args, **kwargs):
        out = projection_fn(batch, *args, **kwargs)
        for i in range(len(out)):
            ref = np.nan_to_num(np.asarray(batch[i], np.float64)).sum(axis=0).ravel()
            p = out[i].astype(np.float64).ravel()
            if ((p - p.mean()) * (ref - ref.mean())).sum() < 0:
                out[i] = -out[i]
        return out

    return wrapped


@pytest.fixture(scope="module", autouse=True)
def oriented_pgc_projections():
    with pytest.MonkeyPatch.context() as mp:
        for module in (pgc_base, pgc_eigengrad, pgc_elementwise):
            mp.setattr(module, "get_2d_projection", _oriented(module.get_2d_projection))
        mp.setattr(pgc_kpca, "get_2d_projection_kernel", _oriented(pgc_kpca.get_2d_projection_kernel))
        yield


def _case(name: str, size: int):
    handle = load_model(name, weights=None)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(3))
    logits = handle.forward(x)[0]
    targets = [int(logits.argmax()), int(logits.argsort()[len(logits) // 2])]
    return handle, x, targets, reference_copy(handle.model)


# MobileNetV3 with random weights has activations ~1e-8 and logits ~1e-10 (see test_attr_parity):
# pgc's min-max (max + 1e-7) flattens its maps, so targets get a 1e6 gain there (every map compared
# here is linear in the score: scaled maps are unaffected on our side); its sigmoid kernel is
# tanh(1 + ~1e-16), a constant even in float64, so KPCA-CAM is compared with the linear kernel there.
ARCHS = [("resnet18", 96), ("vgg16", 64), ("densenet121", 64), ("mobilenet_v3_large", 96)]
GAIN = {"mobilenet_v3_large": 1e6}
KPCA_OPTIONS = {"mobilenet_v3_large": {"kpca_kernel": "linear"}}


@pytest.fixture(scope="module")
def r18():
    """Random-weight ResNet-18, a 64 px input and two targets (the fast tests)."""
    handle = load_model("resnet18", weights=None)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    logits = handle.forward(x)[0]
    return handle, x, [int(logits.argmax()), int(logits.argsort()[len(logits) // 2])]


@pytest.fixture(scope="module", params=ARCHS, ids=[a for a, _ in ARCHS])
def case(request):
    return _case(*request.param)


def _pgc(cls, ref, layer, x, target=None, *, gain=1.0, target_cls=ClassifierOutputTarget, **call):
    with cls(model=ref, target_layers=[layer]) as cam:
        targets = None if target is None else [lambda out, t=target_cls(target): t(out) * gain]
        return _minmax(cam(input_tensor=x.clone(), targets=targets, **call)[0])


def _assert_close(ours: np.ndarray, theirs: np.ndarray, what: str) -> None:
    r = pearson(ours, theirs)
    assert r >= 0.99, f"{what}: r={r:.4f}"


def _compare_variants(case):
    handle, x, targets, ref = case
    path = PGC_LAYER.get(handle.name, handle.default_layer)
    layer, gain = ref.get_submodule(path), GAIN.get(handle.name, 1.0)
    kpca = KPCA_OPTIONS.get(handle.name, {})
    for target in targets:
        ours = explain(handle, x, VARIANTS + ["gradcam"], target=target, layer=path, cache=None,
                       options={"kpcacam": kpca})
        smooth = explain(handle, x, ["gradcam", "gradcam_elementwise"], target=target, layer=path, cache=None,
                         eigen_smooth=True)
        rest = explain(handle, x, "shapleycam", target=target, layer=path, cache=None, utility="rest")
        what = f"{handle.name} target {target}"
        _assert_close(ours["eigengradcam"], _pgc(pgc.EigenGradCAM, ref, layer, x, target, gain=gain),
                      f"eigengradcam {what}")
        _assert_close(ours["gradcam_elementwise"], _pgc(pgc.GradCAMElementWise, ref, layer, x, target, gain=gain),
                      f"gradcam_elementwise {what}")
        _assert_close(smooth["gradcam_elementwise"], _pgc(pgc.GradCAMElementWise, ref, layer, x, target, gain=gain,
                                                          eigen_smooth=True), f"gradcam_elementwise eigen {what}")
        _assert_close(smooth["gradcam"], _pgc(pgc.GradCAM, ref, layer, x, target, gain=gain, eigen_smooth=True),
                      f"gradcam eigen_smooth {what}")
        with pgc.KPCA_CAM(model=ref, target_layers=[layer], kernel=kpca.get("kpca_kernel", "sigmoid")) as cam:
            _assert_close(ours["kpcacam"], _minmax(cam(input_tensor=x.clone(), targets=None)[0]), f"kpcacam {what}")
        _assert_close(ours["shapleycam"], _pgc(pgc.ShapleyCAM, ref, layer, x, target, gain=gain),
                      f"shapleycam {what}")
        _assert_close(rest["shapleycam"], _pgc(pgc.ShapleyCAM, ref, layer, x, target, gain=gain,
                                               target_cls=ClassifierOutputReST), f"shapleycam rest {what}")
        with pgc.FinerCAM(model=ref, target_layers=[layer]) as cam:
            if gain == 1.0:  # pgc picks the similar classes itself
                theirs = cam(input_tensor=x.clone(), targets=None, target_idx=target)[0]
            else:  # the same selection (3 closest logits), given to pgc as its own target with the gain
                logits = handle.forward(x)[0]
                similar = [int(i) for i in (logits - logits[target]).abs().argsort()[1:4]]
                finer = FinerWeightedTarget(target, similar, 1.0)
                theirs = cam(input_tensor=x.clone(), targets=[lambda out: finer(out) * gain])[0]
        _assert_close(ours["finercam"], _minmax(theirs), f"finercam {what}")


@pytest.mark.slow
def test_variants_match_pytorch_grad_cam(case):
    _compare_variants(case)


@pytest.mark.slow
def test_aug_smooth_matches_pytorch_grad_cam(case):
    handle, x, targets, ref = case
    path = PGC_LAYER.get(handle.name, handle.default_layer)
    layer, gain = ref.get_submodule(path), GAIN.get(handle.name, 1.0)
    for target in targets:
        ours = explain(handle, x, "gradcam", target=target, layer=path, cache=None, aug_smooth=True)["gradcam"]
        _assert_close(ours, _pgc(pgc.GradCAM, ref, layer, x, target, gain=gain, aug_smooth=True),
                      f"gradcam aug_smooth {handle.name} target {target}")


@pytest.mark.slow
def test_aug_smooth_with_eigen_smooth_and_on_other_methods_matches_pytorch_grad_cam():
    handle, x, targets, ref = _case("resnet18", 96)
    layer = ref.get_submodule(handle.default_layer)
    for target in targets:
        ours = explain(handle, x, ["gradcam", "hirescam"], target=target, cache=None, aug_smooth=True,
                       options={"gradcam": {"eigen_smooth": True}})
        _assert_close(ours["gradcam"], _pgc(pgc.GradCAM, ref, layer, x, target, aug_smooth=True, eigen_smooth=True),
                      f"gradcam aug+eigen target {target}")
        _assert_close(ours["hirescam"], _pgc(pgc.HiResCAM, ref, layer, x, target, aug_smooth=True),
                      f"hirescam aug_smooth target {target}")


@pytest.mark.slow
def test_other_finercam_and_kpca_parameters_match_pytorch_grad_cam():
    handle, x, targets, ref = _case("vgg16", 64)
    layer = ref.get_submodule(handle.default_layer)
    target = targets[0]
    ours = explain(handle, x, ["finercam", "kpcacam"], target=target, cache=None, comparison_strength=0.6,
                   comparison_categories="1,4", base_method="layercam", kpca_kernel="rbf", kpca_gamma=0.01)
    with pgc.FinerCAM(model=ref, target_layers=[layer], base_method=pgc.LayerCAM) as cam:
        theirs = cam(input_tensor=x.clone(), targets=None, target_idx=target, alpha=0.6,
                     comparison_categories=[1, 4])[0]
    _assert_close(ours["finercam"], _minmax(theirs), "finercam layercam alpha 0.6 ranks 1,4")
    with pgc.KPCA_CAM(model=ref, target_layers=[layer], kernel="rbf", gamma=0.01) as cam:
        _assert_close(ours["kpcacam"], _minmax(cam(input_tensor=x.clone(), targets=None)[0]), "kpcacam rbf")


# ---- the formulas, independently ----------------------------------------------------------------------
def _activation_and_grad(handle, x, target, layer=None):
    store = {}

    def hook(_m, _i, out):
        store["a"] = out.detach().requires_grad_(True)
        return store["a"] * 1.0

    h = handle.module(layer or handle.default_layer).register_forward_hook(hook)
    try:
        with torch.enable_grad():
            logits = handle.model(x)
            (g,) = torch.autograd.grad(logits[0, target], store["a"])
    finally:
        h.remove()
    return store["a"][0].detach().double(), g[0].double()


def test_eigen_smooth_is_the_oriented_first_component_of_the_weighted_activations(r18):
    handle, x, targets = r18
    layer = "layer3"  # 4x4 positions, 256 channels
    for target in targets:
        res = explain_detailed(handle, x, "gradcam", target=target, layer=layer, cache=None,
                               eigen_smooth=True)["gradcam"]
        a, g = _activation_and_grad(handle, x, target, layer)
        weighted = g.mean(dim=(1, 2))[:, None, None] * a
        o = weighted.reshape(a.shape[0], -1).T.numpy()
        o = o - o.mean(axis=0)
        v = np.linalg.svd(o, full_matrices=False)[2][0]
        v = v if v.sum() >= 0 else -v  # the same orientation: correlates with the plain CAM
        expected = np.maximum(o @ v, 0).reshape(a.shape[1:])
        assert pearson(res.layer_map, expected) >= 0.999
        assert res.info["eigen_smooth"].startswith("first principal component")
        plain = (weighted.sum(0) - weighted.sum(0).mean()).numpy().ravel()
        assert np.dot(o @ v, plain) >= 0


def test_principal_projection_orientation_and_degenerate_input():
    torch.manual_seed(0)
    maps = torch.randn(8, 5, 5)
    p = principal_projection(maps)
    assert torch.allclose(p, principal_projection(maps)) and float(p.sum()) == pytest.approx(0, abs=1e-9)
    assert float(((p - p.mean()) * (maps.sum(0) - maps.sum(0).mean())).sum()) >= 0
    assert torch.equal(principal_projection(torch.zeros(4, 3, 3)), torch.zeros(3, 3, dtype=torch.float64))
    assert principal_projection(torch.ones(4, 1, 1)).shape == (1, 1)


def test_shapleycam_is_gradient_minus_half_hessian_vector_product(r18):
    """Written independently with torch.func on the head after the layer (float64)."""
    handle, x, targets = r18
    head = copy.deepcopy(torch.nn.Sequential(handle.model.avgpool, torch.nn.Flatten(), handle.model.fc)).double()
    for target in targets:
        res = explain_detailed(handle, x, "shapleycam", target=target, cache=None, utility="rest")["shapleycam"]
        a, _ = _activation_and_grad(handle, x, target)

        def utility(act):
            y = head(act[None])[0]
            return 2 * y[target] - torch.logsumexp(y, 0)

        g = torch.func.grad(utility)(a)
        _, hvp = torch.func.jvp(torch.func.grad(utility), (a,), (a,))
        w = (g - 0.5 * hvp).mean(dim=(1, 2))
        expected = torch.relu(torch.einsum("k,khw->hw", w, a)).numpy()
        assert float(hvp.abs().max()) > 0 and res.info["hvp_norm"] > 0
        assert pearson(res.layer_map, expected) >= 0.999
    # the logit utility through resnet18's linear head: no curvature, so ShapleyCAM == Grad-CAM
    both = explain_detailed(handle, x, ["shapleycam", "gradcam"], target=targets[0], cache=None)
    assert both["shapleycam"].info["hvp_norm"] == 0.0
    np.testing.assert_allclose(both["shapleycam"].layer_map, both["gradcam"].layer_map, rtol=1e-4, atol=1e-6)


def test_finercam_contrast_gradient_by_hand(r18):
    handle, x, targets = r18
    target = targets[0]
    res = explain_detailed(handle, x, "finercam", target=target, cache=None, comparison_strength=0.5,
                           comparison_categories=(2,))["finercam"]
    logits = handle.forward(x)[0]
    second = int((logits - logits[target]).abs().argsort()[2])  # rank 2: [0] is the target itself
    assert res.info["compared_with"] == [handle.class_name(second)]
    a, g_c = _activation_and_grad(handle, x, target)
    _, g_d = _activation_and_grad(handle, x, second)
    # one class: the softmax weight cancels (p_d * S / p_d) and the contrast is linear
    w = (g_c - 0.5 * g_d).mean(dim=(1, 2))
    expected = torch.relu(torch.einsum("k,khw->hw", w, a)).numpy()
    assert pearson(res.layer_map, expected) >= 0.999


def test_kpca_kernel_matrix_is_centred_and_matches_the_linear_pca(r18):
    torch.manual_seed(1)
    a = torch.randn(6, 4, 4)
    kc = centred_kernel(a, "linear", None)
    assert torch.allclose(kc.sum(0), torch.zeros(16, dtype=torch.float64), atol=1e-9)
    # with a linear kernel, kernel PCA's first component is ordinary PCA's (same orientation rule)
    handle, x, _ = r18
    res = explain_detailed(handle, x, "kpcacam", layer="layer3", cache=None, kpca_kernel="linear")["kpcacam"]
    act, _ = _activation_and_grad(handle, x, 0, "layer3")
    expected = principal_projection(act).clamp(min=0).numpy()
    assert pearson(res.layer_map, expected) >= 0.999


# ---- options, parameters, cache ----------------------------------------------------------------------
def test_every_cam_family_method_takes_the_smoothing_options():
    weighted = [k for k, m in METHODS.items() if isinstance(getattr(m.compute, "__self__", None), WeightedCAM)]
    assert set(VARIANTS) | {"gradcam", "eigencam", "scorecam", "ablationcam"} <= set(weighted)
    for key in weighted:  # the base applies the options to every weighted CAM
        m = METHODS[key]
        assert m.family == "cam" and issubclass(m.params_type, CAMParams), key
        assert {"aug_smooth", "eigen_smooth"} <= set(m.params), key
    for key in VARIANTS:
        m = METHODS[key]
        assert m.family == "cam" and m.cost and m.paper.link.startswith("https://") and m.uses_layer


def test_parameters_are_validated():
    assert FinerCAMParams(comparison_categories="2, 5", comparison_strength="0.3").comparison_categories == (2, 5)
    assert FinerCAMParams(comparison_categories=4).comparison_categories == (4,)
    assert KPCACAMParams(kpca_kernel="RBF", kpca_gamma="none") == KPCACAMParams(kpca_kernel="rbf")
    assert CAMParams(aug_smooth="true").aug_smooth is True
    bad = [(FinerCAMParams, {"comparison_categories": "0,1"}, "comparison_categories"),
           (FinerCAMParams, {"comparison_categories": (1, 1)}, "comparison_categories"),
           (FinerCAMParams, {"comparison_categories": "a"}, "comparison_categories"),
           (FinerCAMParams, {"comparison_categories": ()}, "comparison_categories"),
           (FinerCAMParams, {"comparison_strength": -1}, "comparison_strength"),
           (FinerCAMParams, {"comparison_strength": float("nan")}, "comparison_strength"),
           (FinerCAMParams, {"base_method": "scorecam"}, "base_method"),
           (KPCACAMParams, {"kpca_kernel": "laplacian"}, "kpca_kernel"),
           (KPCACAMParams, {"kpca_gamma": 0}, "kpca_gamma"),
           (KPCACAMParams, {"kpca_gamma": "x"}, "kpca_gamma"),
           (ShapleyCAMParams, {"utility": "softmax"}, "utility"),
           (CAMParams, {"eigen_smooth": 2}, "eigen_smooth"),
           (ShapleyCAMParams, {"aug_smooth": "maybe"}, "aug_smooth")]
    for cls, kwargs, name in bad:
        with pytest.raises(ParameterError, match=name) as err:
            cls(**kwargs)
        assert "\n" not in str(err.value)


def test_options_reach_explain_flat_and_per_method(r18):
    handle, x, targets = r18
    target = targets[0]
    plain = explain_detailed(handle, x, ["gradcam", "hirescam", "saliency"], target=target, cache=None)
    flat = explain_detailed(handle, x, ["gradcam", "hirescam", "saliency"], target=target, cache=None,
                            aug_smooth=True)
    own = explain_detailed(handle, x, ["gradcam", "hirescam"], target=target, cache=None,
                           options={"gradcam": {"aug_smooth": True}})
    for key in ("gradcam", "hirescam"):
        assert "aug_smooth" in flat[key].info and flat[key].layer_map is None
        assert not np.allclose(flat[key].scaled, plain[key].scaled)
    np.testing.assert_array_equal(flat["saliency"].raw, plain["saliency"].raw)  # not a CAM: unaffected
    np.testing.assert_array_equal(own["gradcam"].scaled, flat["gradcam"].scaled)
    np.testing.assert_array_equal(own["hirescam"].scaled, plain["hirescam"].scaled)
    assert "aug_smooth" not in own["hirescam"].info
    with pytest.raises(ParameterError, match="gradcam has no parameter"):
        explain(handle, x, "gradcam", cache=None, options={"gradcam": {"kpca_kernel": "rbf"}})
    with pytest.raises(ParameterError, match="aug_smooth"):
        explain(handle, x, "gradcam", cache=None, aug_smooth="sometimes")


def test_aug_smooth_is_the_mean_of_the_six_augmentations(r18):
    """By hand: each augmented input explained by plain Grad-CAM, min-max scaled, flipped back."""
    handle, x, targets = r18
    target = targets[1]
    res = explain_detailed(handle, x, "gradcam", target=target, cache=None, aug_smooth=True)["gradcam"]
    assert len(AUGMENTATIONS) == 6 and set(AUGMENTATIONS) == {(f, s) for f in (False, True) for s in (0.9, 1.0, 1.1)}
    maps = []
    for flip, factor in AUGMENTATIONS:
        xa = (x * factor).flip(-1) if flip else x * factor
        m = explain_detailed(handle, xa, "gradcam", target=target, cache=None)["gradcam"].scaled
        maps.append(m[:, ::-1] if flip else m)
    # our scaling is at input resolution here vs layer resolution there: same up to the bilinear's range
    assert pearson(res.raw, np.mean(maps, axis=0)) >= 0.999
    assert 0 <= res.raw.min() and res.raw.max() <= 1


def test_options_change_the_cache_key(r18):
    handle, x, targets = r18
    cache = LRUCache(16)
    first = explain_detailed(handle, x, "gradcam", target=targets[0], cache=cache)["gradcam"]
    again = explain_detailed(handle, x, "gradcam", target=targets[0], cache=cache, eigen_smooth=False)["gradcam"]
    smooth = explain_detailed(handle, x, "gradcam", target=targets[0], cache=cache, eigen_smooth=True)["gradcam"]
    assert again.cached and not smooth.cached and not np.array_equal(first.scaled, smooth.scaled)
    assert explain_detailed(handle, x, "gradcam", target=targets[0], cache=cache,
                            options={"gradcam": CAMParams(eigen_smooth=True)})["gradcam"].cached
    assert repr(method_params(METHODS["gradcam"], {"aug_smooth": True})) != repr(CAMParams())


class SkipAcrossLayer(torch.nn.Module):
    """A value from before ``body`` is used after it, so the fx tail cannot be split off and the
    tail backward falls back to a forward with the layer's output replaced."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.body = torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU())
        self.fc = torch.nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stem(x)
        return self.fc(torch.tanh(self.body(s) + s).mean(dim=(2, 3)))


def _skip_handle(classes: int):
    from cnnviz_core.models import ModelHandle, ModelSpec

    torch.manual_seed(0)
    spec = ModelSpec(name=f"skip{classes}", display_name="skip", class_names=tuple("abcd"[:classes]),
                     default_layer="body", input_size=16, resize_size=16)
    return ModelHandle(spec, SkipAcrossLayer(classes).eval(), torch.device("cpu"), "test")


def test_tail_backward_falls_back_to_a_replaced_output_forward():
    from cnnviz_core.attribution.tail import layer_tail
    from cnnviz_core.hooks import hook_count

    handle = _skip_handle(4)
    assert layer_tail(handle.model, "body") is None
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    res = explain_detailed(handle, x, ["shapleycam", "finercam"], target=1, cache=None, comparison_categories=(1,))
    assert res["shapleycam"].info["backward"].startswith("full forward")
    assert res["finercam"].info["backward"].startswith("full forward")
    assert hook_count(handle.model) == 0
    # by hand: the same network with the layer's output as the variable (tanh: H A != 0)
    m = handle.model
    fc = copy.deepcopy(m.fc).double()
    with torch.no_grad():
        s = m.stem(x).double()
        a = m.body(m.stem(x))[0].double()

    def logits(act):
        return fc(torch.tanh(act[None] + s).mean(dim=(2, 3)))[0]

    g = torch.func.grad(lambda act: logits(act)[1])(a)
    _, hvp = torch.func.jvp(torch.func.grad(lambda act: logits(act)[1]), (a,), (a,))
    w = (g - 0.5 * hvp).mean(dim=(1, 2))
    y = logits(a).detach()
    d = int([i for i in (y - y[1]).abs().argsort() if i != 1][0])
    g_finer = torch.func.grad(lambda act: logits(act)[1] - logits(act)[d])(a)
    expected = torch.relu(torch.einsum("k,khw->hw", w, a)).numpy()
    assert pearson(res["shapleycam"].layer_map, expected) >= 0.999
    expected = torch.relu(torch.einsum("k,khw->hw", g_finer.mean(dim=(1, 2)), a)).numpy()
    assert pearson(res["finercam"].layer_map, expected) >= 0.999


def test_finercam_needs_another_class():
    from cnnviz_core.errors import MethodUnavailableError

    handle = _skip_handle(1)
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with pytest.raises(MethodUnavailableError, match="only one"):
        explain(handle, x, "finercam", cache=None)
    res = explain_detailed(handle, x, ["finercam", "gradcam"], cache=None, on_error="collect")
    assert res["finercam"].error and res["gradcam"].error is None


def test_aug_smooth_contexts_are_shared_by_the_methods_of_a_request(monkeypatch, r18):
    import cnnviz_core.attribution.passes as passes

    calls = []
    real = passes.shared_pass

    def counting(*args, **kwargs):
        calls.append(args[1].detach().clone())
        return real(*args, **kwargs)

    monkeypatch.setattr(passes, "shared_pass", counting)
    handle, x, targets = r18
    res = explain_detailed(handle, x, ["gradcam", "hirescam", "eigencam"], target=targets[1], cache=None,
                           aug_smooth=True)
    assert len(calls) == len(AUGMENTATIONS)  # one pass per augmentation for all three methods
    expected = {((x * f).flip(-1) if flip else x * f).numpy().tobytes() for flip, f in AUGMENTATIONS}
    assert {c.numpy().tobytes() for c in calls} == expected
    assert all(r.target == targets[1] for r in res.values())


def test_shapleycam_skips_the_tail_only_where_the_tail_is_piecewise_linear(r18):
    from cnnviz_core.attribution.tail import is_piecewise_linear, layer_tail

    handle, x, targets = r18
    assert is_piecewise_linear(layer_tail(handle.model, "layer4"))
    res = explain_detailed(handle, x, ["shapleycam", "gradcam"], target=targets[0], cache=None)
    assert res["shapleycam"].info["backward"].startswith("none: the network after the layer is piecewise linear")
    np.testing.assert_allclose(res["shapleycam"].layer_map, res["gradcam"].layer_map, rtol=1e-5, atol=1e-7)
    rest = explain_detailed(handle, x, "shapleycam", target=targets[0], cache=None, utility="rest")["shapleycam"]
    assert not rest.info["backward"].startswith("none")  # the softmax's curvature needs the double backward
    curved = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.GELU(), torch.nn.Flatten(), torch.nn.LazyLinear(2))
    curved(torch.zeros(1, 3, 8, 8))
    assert not is_piecewise_linear(layer_tail(curved.eval(), "0"))
