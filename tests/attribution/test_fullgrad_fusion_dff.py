"""FullGrad, multi-layer CAM fusion, RefineCAM and Deep Feature Factorization.

One pass for several layers (``passes_run`` and a forward counter), the papers' formulas computed
independently here, hook hygiene after errors, parameter validation, and (slow) parity with
pytorch-grad-cam ("pgc") and TorchCAM on random-weight torchvision architectures, 2 targets each.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnviz_core import load_model
from cnnviz_core.attribution import explain, explain_detailed
from cnnviz_core.attribution import dff as dff_mod
from cnnviz_core.attribution import fullgrad as fg
from cnnviz_core.attribution import fusion
from cnnviz_core.attribution.passes import LAYER_PRODUCTS, PassContext
from cnnviz_core.attribution.registry import Product as P
from cnnviz_core.errors import MethodUnavailableError, ParameterError
from cnnviz_core.hooks import hook_count
from cnnviz_core.models import ModelHandle, ModelSpec

from test_attr_parity import _minmax, pearson, reference_copy
from test_attr_passes import ForwardCounter

RESNET_LAYERS = "layer2,layer3,layer4"


@pytest.fixture(scope="module")
def resnet():
    return load_model("resnet18", weights=None)


@pytest.fixture(scope="module")
def vgg_bn():
    return load_model("vgg11_bn", weights=None)


def _x(size: int, seed: int = 3) -> torch.Tensor:
    return torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _unit(m: torch.Tensor) -> torch.Tensor:
    lo, hi = m.min(), m.max()
    return (m - lo) / (hi - lo) if hi > lo else torch.zeros_like(m)


def _up(m: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(m[None, None], size=(size, size), mode="bilinear", align_corners=False)[0, 0]


# ---- one pass ----------------------------------------------------------------------------------
def test_every_layer_of_a_request_comes_from_one_forward(resnet):
    methods = ["gradcam", "multilayer_cam", "refinecam", "fullgrad", "saliency", "dff"]
    with ForwardCounter(resnet.model) as counter:
        res = explain_detailed(resnet, _x(64), methods, target=7, cache=None, layers=RESNET_LAYERS)
    assert counter.calls == 1
    assert {r.info["passes_run"] for r in res.values()} == {1}
    assert res["multilayer_cam"].info["layers"] == RESNET_LAYERS.split(",")
    assert hook_count(resnet.model) == 0


def test_fused_maps_are_the_per_layer_maps_fused(resnet):
    """mean / max / product of each layer's own Grad-CAM (computed alone, at that layer), each
    min-max scaled at layer resolution: the fusions' definitions."""
    x, size = _x(64), 64
    layers = RESNET_LAYERS.split(",")
    alone = [torch.from_numpy(explain_detailed(resnet, x, "gradcam", target=3, layer=layer, cache=None)
                              ["gradcam"].layer_map.copy()) for layer in layers]
    scaled = [_unit(m) for m in alone]
    kw = dict(target=3, cache=None, scale="none", layers=RESNET_LAYERS, base_method="gradcam")
    mean = explain(resnet, x, "multilayer_cam", **kw)["multilayer_cam"]
    np.testing.assert_allclose(mean, torch.stack([_up(m, size) for m in scaled]).mean(0).numpy(), atol=1e-5)
    big = max(m.shape[0] for m in scaled)
    top = torch.stack([_up(m, big) for m in scaled]).amax(0)
    got = explain(resnet, x, "multilayer_cam", fusion="max", **kw)["multilayer_cam"]
    np.testing.assert_allclose(got, _up(top, size).numpy(), atol=1e-5)
    prod = explain(resnet, x, "refinecam", **kw)["refinecam"]
    np.testing.assert_allclose(prod, torch.stack([_up(m, size) for m in scaled]).prod(0).numpy(), atol=1e-5)
    assert not np.allclose(mean, prod)


def test_an_unplanned_layer_costs_exactly_one_more_pass(resnet):
    x = _x(64)
    ctx = PassContext(resnet, x, "layer4", 5)
    ctx.plan(LAYER_PRODUCTS)
    ctx.plan_layers(["layer3"])
    ctx.product(P.ACTIVATION)
    g3 = ctx.layer_product("layer3", P.LAYER_GRAD)
    assert ctx.passes_run == 1
    g2 = ctx.layer_product("layer2", P.LAYER_GRAD)  # not planned
    ctx.layer_product("layer2", P.ACTIVATION)
    ctx.layer_view("layer2").product(P.LAYER_GRAD)
    assert ctx.passes_run == 2
    store = {}

    def keep(name):
        def hook(_m, _i, out):
            store[name] = out.detach().clone().requires_grad_(True)
            return store[name] * 1.0
        return hook

    hs = [resnet.model.get_submodule(n).register_forward_hook(keep(n)) for n in ("layer2", "layer3")]
    try:
        with torch.enable_grad():
            y = resnet.model(x)[0, 5]
            # layer3's own leaf is replaced, so d/d(layer2) goes through layer3's leaf: take them separately
            (d3,) = torch.autograd.grad(y, store["layer3"], retain_graph=True)
    finally:
        for h in hs:
            h.remove()
    np.testing.assert_allclose(g3.numpy(), d3.numpy(), rtol=1e-4, atol=1e-7)
    assert g2.shape == (1, 128, 8, 8) and torch.isfinite(g2).all()
    with pytest.raises(ParameterError, match="no layer"):
        ctx.layer_product("layer9", P.ACTIVATION)


def test_default_layers_are_the_stage_ends(resnet):
    vgg = load_model("vgg16", weights=None)
    assert fusion.default_layers(PassContext(resnet, _x(64), "layer4", None)) == ("layer2", "layer3", "layer4")
    assert fusion.default_layers(PassContext(vgg, _x(64), "features.29", None)) == (
        "features.15", "features.22", "features.29")
    assert hook_count(vgg.model) == 0
    res = explain_detailed(resnet, _x(64, 4), ["multilayer_cam", "refinecam"], cache=None)
    assert res["refinecam"].info["layers"] == ["layer2", "layer3", "layer4"]
    assert {r.info["passes_run"] for r in res.values()} == {1}


# ---- FullGrad: the paper's decomposition and formula -----------------------------------------
def _fullgrad_terms(handle, x, target):
    """Independently of cnnviz's passes: the input gradient and, per conv/BN layer with a bias, the
    gradient at its output (hooks keep a leaf copy of each output)."""
    store, hs = {}, []
    layers = [(n, m) for n, m in handle.model.named_modules()
              if (isinstance(m, nn.Conv2d) and m.bias is not None) or isinstance(m, nn.BatchNorm2d)]

    def keep(name):
        def hook(_m, _i, out):
            store[name] = out
            return out.clone()
        return hook

    xi = x.clone().requires_grad_(True)
    try:
        hs = [m.register_forward_hook(keep(n)) for n, m in layers]
        with torch.enable_grad():
            y = handle.model(xi)[0, target]
            grads = torch.autograd.grad(y, [xi] + [store[n] for n, _ in layers])
    finally:
        for h in hs:
            h.remove()
    biases = []
    for (name, m), g in zip(layers, grads[1:]):
        if isinstance(m, nn.BatchNorm2d):
            b = m.bias - m.weight * m.running_mean / torch.sqrt(m.running_var + m.eps)
        else:
            b = m.bias
        biases.append((name, g[0] * b[:, None, None]))
    return float(y.detach()), grads[0][0] * x[0], biases


def test_fullgrad_completeness_and_formula(vgg_bn):
    """Completeness (Eq. 2) on a piecewise-linear net: logit = sum(x * grad) + sum of all bias
    terms (conv/BN plus the linear layers'); and the map is Eq. 4 with psi = |.|, min-max, bilinear."""
    handle, x, target, size = vgg_bn, _x(64), 11, 64
    y, inp, biases = _fullgrad_terms(handle, x, target)
    ctx = PassContext(handle, x, handle.default_layer, target)
    ctx.plan({P.INPUT_GRAD})
    ctx.plan_layers(fg._plan(ctx, fg.FullGradParams()))
    ours = fg.bias_gradients(ctx)
    assert set(ours) == {n for n, _ in biases} and ctx.passes_run == 1
    for name, b in biases:
        np.testing.assert_allclose(ours[name].numpy(), b.detach().numpy(), rtol=1e-4, atol=1e-6 * float(b.abs().max()))
    # linear biases: d y_t / d b of each Linear, by autograd on a copy whose biases require grad
    ref = reference_copy(handle.model)
    linears = [m.bias for m in ref.modules() if isinstance(m, nn.Linear)]
    with torch.enable_grad():
        out = ref(x)[0, target]
        lin = sum(float((g * b).sum().detach()) for g, b in zip(torch.autograd.grad(out, linears), linears))
    total = float(fg.input_gradient_term(ctx).sum()) + sum(float(t.sum()) for t in ours.values()) + lin
    assert total == pytest.approx(y, rel=1e-3, abs=1e-4)

    def psi(t, dims):
        t = t.abs()
        lo, hi = t.amin(dim=dims, keepdim=True), t.amax(dim=dims, keepdim=True)
        return torch.where(hi > lo, (t - lo) / (hi - lo).clamp(min=1e-30), torch.zeros_like(t))

    expected = psi(inp, (0, 1, 2)).sum(0)
    for _, b in biases:
        per_channel = psi(b.detach(), (1, 2))
        expected = expected + F.interpolate(per_channel[None], size=(size, size), mode="bilinear",
                                            align_corners=False)[0].sum(0)
    got = explain(handle, x, "fullgrad", target=target, scale="none", cache=None)["fullgrad"]
    np.testing.assert_allclose(got, expected.detach().numpy(), rtol=1e-4, atol=1e-4)


def test_fullgrad_shares_the_pass_and_does_not_depend_on_the_layer(resnet):
    x = _x(64)
    res = explain_detailed(resnet, x, ["fullgrad", "gradcam", "saliency"], target=2, cache=None)
    assert res["fullgrad"].info["passes_run"] == 1 and res["fullgrad"].info["bias_layers"] == 20
    assert res["fullgrad"].layer is None
    other = explain(resnet, x, "fullgrad", target=2, layer="layer2", cache=None)["fullgrad"]
    np.testing.assert_allclose(other, res["fullgrad"].scaled, atol=1e-6)


def test_smoothing_options_of_fullgrad_and_fusion(resnet):
    x = _x(48)
    plain = explain(resnet, x, ["fullgrad", "multilayer_cam"], target=2, cache=None, layers=RESNET_LAYERS)
    for opt in ("aug_smooth", "eigen_smooth"):
        res = explain_detailed(resnet, x, ["fullgrad", "multilayer_cam"], target=2, cache=None,
                               layers=RESNET_LAYERS, **{opt: True})
        for key, r in res.items():
            assert r.scaled.shape == (48, 48) and np.isfinite(r.scaled).all() and r.scaled.max() == pytest.approx(1)
            assert not np.allclose(r.scaled, plain[key]), (key, opt)
    assert "aug_smooth" in res["fullgrad"].info or "eigen_smooth" in res["fullgrad"].info


# ---- hooks and errors ----------------------------------------------------------------------------
class Boom(nn.Module):
    """conv -> BN -> ReLU -> conv(bias) -> GAP -> fc; raises at the head when ``armed``."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        if self.armed:
            raise RuntimeError("boom")
        return self.fc(h.mean(dim=(2, 3)))


def test_hooks_are_removed_when_a_pass_fails():
    torch.manual_seed(0)
    model = Boom().eval()
    spec = ModelSpec(name="boom", display_name="boom", class_names=tuple("abcd"), default_layer="body",
                     input_size=32, resize_size=32)
    handle = ModelHandle(spec, model, torch.device("cpu"), "test")
    x = _x(32)
    ok = explain_detailed(handle, x, ["fullgrad", "multilayer_cam", "refinecam", "dff"], cache=None)
    assert ok["refinecam"].info["layers"] == ["body.2", "body"]
    assert ok["fullgrad"].info["bias_layers"] == 2
    model.armed = True
    for methods in (["fullgrad"], ["multilayer_cam"], ["refinecam", "dff"]):
        with pytest.raises(RuntimeError, match="boom"):
            explain(handle, x, methods, target=1, cache=None, layers="body.0,body")
        assert hook_count(model) == 0
    with pytest.raises(RuntimeError, match="boom"):  # the default layers' shape probe fails too
        explain(handle, _x(48), ["multilayer_cam"], target=1, cache=None)
    assert hook_count(model) == 0
    with pytest.raises(ParameterError, match="no layer"):
        explain(handle, x, "multilayer_cam", target=1, cache=None, layers="body,head")
    assert hook_count(model) == 0


# ---- parameters ----------------------------------------------------------------------------------
@pytest.mark.parametrize("method,kwargs,match", [
    ("multilayer_cam", dict(fusion="sum"), "fusion"),
    ("multilayer_cam", dict(base_method="scorecam"), "base_method"),
    ("multilayer_cam", dict(base_method="cam"), "base_method"),
    ("multilayer_cam", dict(layers=5), "layers"),
    ("multilayer_cam", dict(layers="layer3,nothing"), "no layer 'nothing'"),
    ("refinecam", dict(layers="layer4"), "at least two"),
    ("refinecam", dict(base_method="refinecam"), "base_method"),
    ("fullgrad", dict(eigen_smooth="maybe"), "eigen_smooth"),
    ("dff", dict(concepts=0), "concepts"),
    ("dff", dict(nmf_iters=1.5), "nmf_iters"),
    ("dff", dict(top_classes=-1), "top_classes"),
    ("dff", dict(seed="x"), "seed"),
])
def test_bad_parameters_raise_parameter_error(resnet, method, kwargs, match):
    with pytest.raises(ParameterError, match=match):
        explain(resnet, _x(64), method, cache=None, **kwargs)
    assert hook_count(resnet.model) == 0


def test_layers_parameter_forms():
    assert fusion.parse_layers(" layer2, layer3 ,layer2,") == ("layer2", "layer3")
    assert fusion.parse_layers("layer3+layer4") == ("layer3", "layer4")
    assert fusion.parse_layers(["a", "b"]) == ("a", "b") and fusion.parse_layers("") is None
    assert {"gradcam", "gradcam++", "layercam", "eigencam"} <= set(fusion.base_methods())
    assert not {"cam", "scorecam", "multilayer_cam", "refinecam", "dff"} & set(fusion.base_methods())


# ---- DFF ---------------------------------------------------------------------------------------
def test_dff_nmf_is_sklearns_multiplicative_update():
    """Same data, same start, same solver (pgc wraps scikit-learn's NMF): equal to 1e-10."""
    sk = pytest.importorskip("sklearn.decomposition")
    a = torch.rand(64, 49, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a[a < 0.4] = 0
    w0, h0 = dff_mod.random_init(a, 4, 3)
    w, h = dff_mod.nmf(a, w0, h0, 60)
    model = sk.NMF(n_components=4, init="custom", solver="mu", max_iter=60, tol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        W = model.fit_transform(a.numpy(), W=w0.numpy().copy(), H=h0.numpy().copy())
    np.testing.assert_allclose(w.numpy(), W, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(h.numpy(), model.components_, rtol=1e-10, atol=1e-12)
    # the multiplicative updates never increase the error; no rank-4 factorization beats the SVD's
    errors = [float(torch.linalg.norm(a - ww @ hh)) for ww, hh in
              (dff_mod.nmf(a, w0, h0, n) for n in (0, 5, 20, 60))]
    assert all(e2 <= e1 + 1e-12 for e1, e2 in zip(errors, errors[1:])) and errors[-1] < 0.9 * errors[0]
    assert errors[-1] >= float(torch.linalg.svdvals(a)[4:].square().sum().sqrt()) - 1e-9


def test_dff_concepts_maps_and_scores(resnet):
    x = _x(96)
    res = explain_detailed(resnet, x, ["dff", "gradcam"], target=9, cache=None, concepts=4, top_classes=3)
    r = res["dff"]
    assert r.info["passes_run"] == 1 and r.info["concept_head"].startswith("network after the layer")
    maps, emb = r.info["concept_maps"], r.info["concept_embeddings"]
    assert maps.shape == (4, 96, 96) and emb.shape == (4, 512) and (emb >= 0).all()
    # each heatmap scaled to [0, 1] at layer resolution, then upsampled (half-pixel bilinear)
    assert maps.min() >= 0 and maps.max() <= 1 + 1e-6 and (maps.max(axis=(1, 2)) > 0.9).all()
    assert r.layer_map.shape == (3, 3) and r.layer_map.max() == pytest.approx(1) and r.layer_map.min() == 0
    np.testing.assert_allclose(r.raw, maps[r.info["concept"]], atol=1e-6)
    # scores: the GAP -> linear head applied to each embedding directly (pgc's computation_on_concepts)
    probs = torch.softmax(resnet.model.fc(torch.from_numpy(emb)), dim=1).detach().numpy()
    for j, c in enumerate(r.info["concepts"]):
        np.testing.assert_allclose(c["scores"], probs[j, c["classes"]], rtol=1e-4)
        assert c["classes"] == list(np.argsort(-probs[j])[:3]) and c["target_score"] == pytest.approx(probs[j, 9], rel=1e-4)
        assert len(c["names"]) == 3 and all(isinstance(n, str) for n in c["names"])
    assert r.info["concept"] == int(np.argmax(probs[:, 9]))
    # reconstruction: W H ~= ReLU(A) with the reported error, each heatmap's peak is 1
    a = PassContext(resnet, x, "layer4", 9).product(P.ACTIVATION)[0].clamp(min=0).reshape(512, -1).double()
    w0, h0 = dff_mod.random_init(a, 4, 0)
    w, h = dff_mod.nmf(a, w0, h0, 200)
    rel = float(torch.linalg.norm(a - w @ h) / torch.linalg.norm(a))
    assert r.info["nmf"]["relative_error"] == pytest.approx(rel, rel=1e-6) and rel < 0.6
    again = explain_detailed(resnet, x, "dff", target=9, cache=None, concepts=4)["dff"]
    np.testing.assert_array_equal(again.info["concept_maps"], maps)  # deterministic
    other = explain_detailed(resnet, x, "dff", target=9, cache=None, concepts=4, seed=1)["dff"]
    assert not np.array_equal(other.info["concept_maps"], maps)


def test_dff_concept_scores_through_a_graph_that_cannot_be_split():
    """A value from before the layer is used after it: the concepts go through a full forward with
    the layer's output replaced by each concept's constant map."""
    from test_attr_methods import SkipAcrossLayer

    torch.manual_seed(0)
    model = SkipAcrossLayer(branchy=False).eval()
    spec = ModelSpec(name="skip", display_name="skip", class_names=tuple("abcd"), default_layer="body",
                     input_size=16, resize_size=16)
    handle = ModelHandle(spec, model, torch.device("cpu"), "test")
    x = _x(16)
    r = explain_detailed(handle, x, "dff", target=2, cache=None, concepts=3, top_classes=4)["dff"]
    assert r.info["concept_head"].startswith("full forward")
    emb = torch.from_numpy(r.info["concept_embeddings"])
    with torch.no_grad():
        s = model.stem(x)
        logits = model.fc((emb[:, :, None, None] + s).mean(dim=(2, 3)))
    probs = torch.softmax(logits, dim=1).numpy()
    for j, c in enumerate(r.info["concepts"]):
        np.testing.assert_allclose(c["scores"], probs[j, c["classes"]], rtol=1e-4, atol=1e-7)
    assert r.info["concept"] == int(np.argmax(probs[:, 2])) and hook_count(model) == 0


def test_dff_error_is_close_to_sklearns_coordinate_descent(resnet):
    """pgc's solver (coordinate descent, its own start) reaches about the same reconstruction error."""
    sk = pytest.importorskip("sklearn.decomposition")
    x = _x(128)
    r = explain_detailed(resnet, x, "dff", cache=None, nmf_iters=400)["dff"]
    a = PassContext(resnet, x, "layer4", None).product(P.ACTIVATION)[0].clamp(min=0).reshape(512, -1).double().numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = sk.NMF(n_components=5, init="random", random_state=0)
        W = model.fit_transform(a)
    theirs = np.linalg.norm(a - W @ model.components_) / np.linalg.norm(a)
    assert r.info["nmf"]["relative_error"] <= theirs * 1.05


# ---- parity (slow) -----------------------------------------------------------------------------
pgc = pytest.importorskip("pytorch_grad_cam")
tcm = pytest.importorskip("torchcam.methods")

PARITY = [("resnet18", 96, RESNET_LAYERS), ("vgg11", 64, "features.10,features.15,features.20"),
          ("densenet121", 64, "features.denseblock2,features.denseblock3,features.denseblock4")]


@pytest.fixture(scope="module", params=PARITY, ids=[p[0] for p in PARITY])
def case(request):
    name, size, layers = request.param
    handle = load_model(name, weights=None)
    x = _x(size)
    logits = handle.forward(x)[0]
    targets = [int(logits.argmax()), int(logits.argsort()[len(logits) // 2])]
    return handle, x, targets, reference_copy(handle.model), layers


@pytest.mark.slow
def test_fullgrad_matches_pytorch_grad_cam(case):
    """pgc rescales the input-gradient term per colour channel; the paper (and its authors' code)
    rescales it as a whole, which we do. With pgc's convention recomposed from our terms, r = 1.0000
    on all cases; our (paper) map against pgc's measured r = 0.978 - 0.997 (the paper formula itself
    is tested in test_fullgrad_completeness_and_formula)."""
    handle, x, targets, ref, _ = case
    for target in targets:
        with pgc.FullGrad(model=ref, target_layers=[]) as cam:  # FullGrad is linear in the score
            theirs = _minmax(cam(input_tensor=x.clone(), targets=[lambda o, t=target: o[t] * 1e6])[0])
        ctx = PassContext(handle, x, handle.default_layer, target)
        ctx.plan({P.INPUT_GRAD})
        ctx.plan_layers(fg._plan(ctx, fg.FullGradParams()))
        _, maps, _ = fg.term_maps(ctx)
        per_colour = fg._unit_range(fg.input_gradient_term(ctx).abs(), (1, 2)).sum(0)
        recomposed = _minmax((maps[1:].sum(0) + per_colour).numpy())
        r = pearson(recomposed, theirs)
        assert r >= 0.99, f"{handle.name} target {target}: r={r:.4f}"
        ours = explain(handle, x, "fullgrad", target=target, cache=None)["fullgrad"]
        assert pearson(ours, theirs) >= 0.97


@pytest.mark.slow
@pytest.mark.parametrize("base", ["gradcam", "layercam"])
def test_fusion_matches_pgc_mean_and_torchcam_max(case, base):
    handle, x, targets, ref, layers = case
    paths = layers.split(",")
    mods = [ref.get_submodule(p) for p in paths]
    cls_pgc, cls_tc = {"gradcam": ("GradCAM", "GradCAM"), "layercam": ("LayerCAM", "LayerCAM")}[base]
    size = x.shape[-1]
    for target in targets:
        res = explain_detailed(handle, x, "multilayer_cam", target=target, cache=None, layers=layers, base_method=base)
        assert res["multilayer_cam"].info["passes_run"] == 1
        with getattr(pgc, cls_pgc)(model=ref, target_layers=mods) as cam:  # linear in the score
            theirs = cam(input_tensor=x.clone(), targets=[lambda o, t=target: o[t] * 1e6])[0]
        r = pearson(res["multilayer_cam"].scaled, _minmax(theirs))
        assert r >= 0.99, f"{handle.name} {base} mean target {target}: r={r:.4f}"
        ours = explain(handle, x, "multilayer_cam", target=target, cache=None, layers=layers, base_method=base,
                       fusion="max")["multilayer_cam"]
        with getattr(tcm, cls_tc)(ref, target_layer=paths, input_shape=(3, size, size)) as extractor:
            cams = extractor(target, ref(x.clone()))
            # the generic fusion (TorchCAM's LayerCAM class would add its tanh scaling first)
            fused = tcm.GradCAM.fuse_cams(cams)
        theirs = F.interpolate(fused[:, None], size=(size, size), mode="bilinear", align_corners=False)[0, 0]
        r = pearson(ours, _minmax(theirs.detach().numpy()))
        assert r >= 0.99, f"{handle.name} {base} max target {target}: r={r:.4f}"


@pytest.mark.slow
def test_refinecam_matches_pytorch_grad_cam(case):
    """pgc's RefineCAM (the paper author's code) multiplies at input resolution, as we do: r >= 0.99
    (measured 0.9999 with Grad-CAM++, 1.0000 with Grad-CAM). TorchCAM multiplies at the largest layer
    resolution: measured r = 0.992 - 0.999 with Grad-CAM."""
    handle, x, targets, ref, layers = case
    paths = layers.split(",")
    mods = [ref.get_submodule(p) for p in paths]
    size = x.shape[-1]
    for target in targets:
        res = explain_detailed(handle, x, ["refinecam"], target=target, cache=None, layers=layers)["refinecam"]
        assert res.info["base_method"] == "gradcam++"
        theirs = pgc.RefineCAM(ref, mods)(x.clone(), [lambda o, t=target: o[t]])[0]  # Grad-CAM++ is not linear
        r = pearson(res.scaled, _minmax(theirs))
        assert r >= 0.99, f"{handle.name} refinecam target {target}: r={r:.4f}"
        ours = explain(handle, x, "refinecam", target=target, cache=None, layers=layers, base_method="gradcam")
        with tcm.RefineCAM(ref, paths, input_shape=(3, size, size), base_method=tcm.GradCAM) as extractor:
            refined = extractor(target, ref(x.clone()))[0]
        theirs = F.interpolate(refined[:, None], size=(size, size), mode="bilinear", align_corners=False)[0, 0]
        r = pearson(ours["refinecam"], _minmax(theirs.detach().numpy()))
        assert r >= 0.99, f"{handle.name} refinecam (TorchCAM) target {target}: r={r:.4f}"
