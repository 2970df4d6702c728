"""Captum's methods: Input x Gradient, GradientSHAP, DeepLift, DeepLiftSHAP, the NoiseTunnel variants
(SmoothGrad², VarGrad), LIME and KernelSHAP - parity with captum 0.9.0 and the papers' formulas.

Parity: Pearson r >= 0.99 per map on random-weight ResNet-18, VGG-11 and MobileNetV3-small (small
inputs, 2 targets). Stochastic methods get the SAME draws on both sides: our draw functions make
them, and captum receives them through its own arguments (baselines, feature masks, a perturbation
generator) or, where captum draws internally (NoiseTunnel's noise, GradientShap's reference indices
and alphas), through a monkeypatch of the drawing call.

DeepLift: captum 0.9.0 departs from the paper in three ways, worked around on captum's side only:
* adjacent hooked modules (ReLU -> MaxPool in VGG, ResNet's stem) read stale output gradients
  (captum issue #1104, fixed after 0.9.0 by PR #1843): measured r = 0.28 on VGG-16 at 64 px, and
  captum's own convergence delta is far from 0. ``captum_ready`` puts ``x * 1.0`` before each hooked
  module, which restores summation-to-delta on captum's side;
* module hooks cannot tell two calls of one module apart (ResNet's blocks call ``self.relu`` twice):
  captum raises; ``captum_ready`` gives each call its own module;
* its max-pool rule scatters with ``max_unpool2d``, which keeps ONE window's share where 3x3 stride-2
  windows overlap (ResNet's stem): r = 0.82 on ResNet-18 and convergence delta -0.48 against ours ~1e-7.
  The test swaps in a summing unpool (``summing_unpool``), which is the same rule with shares added.
Captum also treats Hardswish / Hardsigmoid as linear (only its listed modules get the rule); the
paper's rescale rule covers every elementwise nonlinearity, so the test extends captum's table.
"""
from __future__ import annotations

import copy
import types
from functools import lru_cache

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from cnnviz_core import load_model
from cnnviz_core.attribution import METHODS, NeuronTarget, explain, explain_detailed
from cnnviz_core.attribution.gradient_extra import (GradientShapParams, NoiseTunnelParams, gradient_shap_draws,
                                                    noise_tunnel_bases, reference_set, tunnel_noise)
from cnnviz_core.attribution.passes import PassContext
from cnnviz_core.attribution.surrogate import (KernelShapParams, LimeParams, kernel_shap_samples, lime_samples,
                                               superpixels, weighted_linear_fit)
from cnnviz_core.errors import Cancelled, MethodUnavailableError, ParameterError
from cnnviz_core.hooks import forward_until, hook_count
from cnnviz_core.models import ModelHandle, ModelSpec
from cnnviz_core.progress import CancelToken

captum_attr = pytest.importorskip("captum.attr")
import captum._utils.common as captum_common  # noqa: E402
from captum._utils.models.linear_model import SkLearnLinearRegression  # noqa: E402
from captum.attr._core import deep_lift as captum_dl  # noqa: E402
from captum.attr._core import gradient_shap as captum_gs  # noqa: E402
from captum.attr._core.noise_tunnel import NoiseTunnel  # noqa: E402

from test_attr_parity import pearson, reference_copy  # noqa: E402

SIZE = 32
#: Region methods need a few superpixels: a slightly larger input.
REGION_SIZE = 40
ARCHS = ["resnet18", "vgg11", "mobilenet_v3_small"]
#: ResNet blocks call their ``relu`` module this many times per forward.
REUSED = {"BasicBlock": 2, "Bottleneck": 3}


@lru_cache(maxsize=None)
def _handle(arch: str) -> ModelHandle:
    """The registered resnet18, or a seeded random-weight torchvision model (CAM layer ``features``)."""
    if arch == "resnet18":
        return load_model(arch, weights=None)
    torch.manual_seed(0)
    model = torchvision.models.get_model(arch, weights=None)
    spec = ModelSpec(name=arch, display_name=arch, class_names=tuple(f"c{i}" for i in range(1000)),
                     default_layer="features", input_size=SIZE, resize_size=SIZE)
    return ModelHandle(spec, model, torch.device("cpu"), "random")


def _input(seed: int = 3, size: int = SIZE) -> torch.Tensor:
    return torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _targets(handle: ModelHandle, x: torch.Tensor) -> list[int]:
    logits = handle.forward(x)[0]
    return [int(logits.argmax()), int(logits.argsort()[len(logits) // 2])]


@pytest.fixture(scope="module", params=ARCHS)
def case(request):
    handle = _handle(request.param)
    x = _input()
    return handle, x, _targets(handle, x)


# ---- captum-side workarounds (see the module docstring) -------------------------------------------
class Through(nn.Module):
    """``x * 1.0``: a non-hooked op between two hooked modules (captum issue #1104)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 1.0


class InOrder(nn.Module):
    """Stands for one module called ``k`` times per forward: call ``i`` runs its own copy ``i % k``."""

    def __init__(self, module: nn.Module, k: int) -> None:
        super().__init__()
        self.copies = nn.ModuleList([nn.Sequential(Through(), copy.deepcopy(module)) for _ in range(k)])
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        module = self.copies[self.calls % len(self.copies)]
        self.calls += 1
        return module(x)


def captum_ready(model: nn.Module) -> nn.Module:
    """A reference copy captum's DeepLift computes correctly: no in-place ops, every hooked module
    (and hard-swish / hard-sigmoid, see :func:`captum_paper_rules`) behind a ``Through``, each call of a
    reused module on its own module. The wrappers change no value and no gradient, so the copy
    serves captum's other methods too."""
    ref = reference_copy(model)
    for m in ref.modules():
        if hasattr(m, "inplace"):
            m.inplace = False
    hooked = (*captum_dl.SUPPORTED_NON_LINEAR, nn.Hardswish, nn.Hardsigmoid)
    for parent in list(ref.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, hooked):
                k = REUSED.get(type(parent).__name__, 1)
                setattr(parent, name, InOrder(child, k) if k > 1 else nn.Sequential(Through(), child))
    return ref


@lru_cache(maxsize=None)
def _ref(arch: str) -> nn.Module:
    """The captum-side copy of ``_handle(arch)``'s model, made once (captum removes its hooks after each call)."""
    return captum_ready(_handle(arch).model)


def summing_unpool(values, indices, kernel_size, stride, padding, output_size):  # noqa: ANN001
    """``max_unpool2d`` that ADDS the values of windows sharing an argmax (instead of keeping one)."""
    n, c = values.shape[:2]
    h, w = output_size[-2:]
    out = torch.zeros(n, c, h * w, dtype=values.dtype, device=values.device)
    return out.scatter_add_(2, indices.flatten(2), values.flatten(2)).view(n, c, h, w)


@pytest.fixture
def captum_paper_rules(monkeypatch):
    """Captum's DeepLift with the max-pool shares summed and the rescale rule on hard-swish/-sigmoid."""
    def maxpool2d(module, inputs, outputs, grad_input, grad_output, eps=1e-10):  # noqa: ANN001
        return captum_dl.maxpool(module, F.max_pool2d, summing_unpool, inputs, outputs, grad_input, grad_output,
                                 eps=eps)

    monkeypatch.setitem(captum_dl.SUPPORTED_NON_LINEAR, nn.MaxPool2d, maxpool2d)
    monkeypatch.setitem(captum_dl.SUPPORTED_NON_LINEAR, nn.Hardswish, captum_dl.nonlinear)
    monkeypatch.setitem(captum_dl.SUPPORTED_NON_LINEAR, nn.Hardsigmoid, captum_dl.nonlinear)


def _same_noise(monkeypatch, noise: torch.Tensor) -> None:
    """NoiseTunnel adds ``noise`` (the copies' offsets, already scaled) instead of drawing its own."""
    monkeypatch.setattr(NoiseTunnel, "_add_noise_to_input",
                        staticmethod(lambda inp, stdev, n: inp.repeat_interleave(n, dim=0) + noise))


# ---- Input x Gradient ---------------------------------------------------------------------------
def test_input_x_gradient_matches_captum_and_reuses_the_shared_pass(case):
    handle, x, targets = case
    ref = _ref(handle.name)
    for target in targets:
        res = explain_detailed(handle, x, ["saliency", "input_x_gradient"], target=target, cache=None)
        assert res["input_x_gradient"].info["passes_run"] == 1  # no pass of its own next to saliency
        np.testing.assert_allclose(res["input_x_gradient"].raw, x[0].numpy() * res["saliency"].raw, rtol=1e-6)
        theirs = captum_attr.InputXGradient(ref).attribute(x.clone(), target=target)[0].detach().numpy()
        r = pearson(res["input_x_gradient"].raw, theirs)
        assert r >= 0.99, f"{handle.name} target {target}: r={r:.4f}"


# ---- DeepLift -----------------------------------------------------------------------------------
def test_deeplift_matches_captum(case, captum_paper_rules):
    handle, x, targets = case
    ref = _ref(handle.name)
    black = handle.normalize(torch.zeros_like(x))
    for target in targets:
        res = explain_detailed(handle, x, "deeplift", target=target, cache=None)["deeplift"]
        theirs = captum_attr.DeepLift(ref).attribute(x.clone(), baselines=black, target=target)[0].detach().numpy()
        r = pearson(res.raw, theirs)
        assert r >= 0.99, f"{handle.name} target {target}: r={r:.4f}"
        # squeeze-excitation products are reported (they keep their gradient); ResNet / VGG have none
        assert ("products of two signals" in res.info.get("warning", "")) == (handle.name == "mobilenet_v3_small")
    assert hook_count(handle.model) == 0


@pytest.mark.parametrize("arch,baseline", [("resnet18", "black"), ("vgg11", "zero"),
                                           ("densenet121", "zero")])
def test_deeplift_sums_to_the_score_difference(arch, baseline):
    """Summation-to-delta (the DeepLIFT paper's property): sum of the map = y(x) - y(x'), also through overlapping max
    pools and DenseNet's functional in-place ReLU. (Not on MobileNetV3: the products of its
    squeeze-excitation blocks back-propagate their gradient, as in Captum, which breaks it by ~3 %.)"""
    rtol = 1e-4
    handle = load_model(arch, weights=None) if arch == "densenet121" else _handle(arch)
    x = _input(4, SIZE)
    target = _targets(handle, x)[0]
    res = explain_detailed(handle, x, "deeplift", target=target, cache=None, baseline=baseline)["deeplift"]
    ref = handle.normalize(torch.zeros_like(x)) if baseline == "black" else torch.zeros_like(x)
    with torch.no_grad():
        delta = float(handle.model(x)[0, target] - handle.model(ref)[0, target])
    assert delta != 0 and abs(float(res.raw.astype(np.float64).sum()) - delta) <= rtol * abs(delta)
    assert res.info["rescaled"]["relu"] > 0 and abs(res.info["summation_delta"]) <= rtol * abs(delta)
    if arch == "densenet121":  # the final F.relu(features, inplace=True) in DenseNet.forward is routed too
        assert res.info["rescaled"]["relu"] == 1 + 2 * 58 + 3 + 1  # stem, dense layers, transitions, final
    assert hook_count(handle.model) == 0


class FunctionalNet(nn.Module):
    """ReLUs as captum cannot hook them: functional, in place, a method call and one module used twice;
    an overlapping functional max pool; a sigmoid right after a ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2, self.conv3 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3), nn.Conv2d(8, 8, 1)
        self.act = nn.ReLU(inplace=True)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x), inplace=True)
        x = F.max_pool2d(x, 3, 2, 1)
        x = self.act(self.conv2(x))
        x = self.conv3(x).relu_()
        x = torch.sigmoid(self.act(x - 0.05))
        return self.fc(x.mean(dim=(2, 3)))


class ModuleNet(nn.Module):
    """The same function with one module per nonlinearity (what captum can hook)."""

    def __init__(self, f: FunctionalNet) -> None:
        super().__init__()
        self.f = f
        self.r1, self.pool, self.r2, self.r3, self.r4, self.sig = (nn.ReLU(), nn.MaxPool2d(3, 2, 1), nn.ReLU(),
                                                                   nn.ReLU(), nn.ReLU(), nn.Sigmoid())
        self.t = Through()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f, t = self.f, self.t
        x = self.pool(t(self.r1(f.conv1(x))))
        x = self.r2(f.conv2(x))
        x = self.r3(f.conv3(x))
        x = self.sig(t(self.r4(x - 0.05)))
        return f.fc(x.mean(dim=(2, 3)))


def _toy_handle(model: nn.Module, layer: str = "conv3", **kw) -> ModelHandle:
    spec = ModelSpec(name="toy", display_name="toy", class_names=tuple("abcde"), default_layer=layer,
                     input_size=16, resize_size=16)
    return ModelHandle(spec, model, torch.device("cpu"), "test", **kw)


def test_deeplift_rule_covers_functional_inplace_and_reused_relus(captum_paper_rules):
    torch.manual_seed(0)
    net = FunctionalNet().eval()
    handle = _toy_handle(net)
    x = _input(6, 16)
    black = handle.normalize(torch.zeros_like(x))
    ref = ModuleNet(copy.deepcopy(net)).eval()
    for p in ref.parameters():
        p.requires_grad_(True)
    for target in (0, 3):
        res = explain_detailed(handle, x, "deeplift", target=target, cache=None)["deeplift"]
        assert res.info["rescaled"] == {"relu": 4, "max_pool2d": 1, "sigmoid": 1}
        theirs = captum_attr.DeepLift(ref).attribute(x.clone(), baselines=black, target=target)[0].detach().numpy()
        np.testing.assert_allclose(res.raw, theirs, rtol=1e-4, atol=1e-6 * np.abs(theirs).max())
    assert hook_count(net) == 0 and torch._C._len_torch_function_stack() == 0


def test_deeplift_rule_is_removed_when_the_forward_raises():
    from cnnviz_core.attribution.deeplift_rules import rescale_rule

    with pytest.raises(RuntimeError, match="boom"):
        with rescale_rule() as state:
            F.relu(torch.ones(2, 3))
            raise RuntimeError("boom")
    assert state.calls["relu"] == 1 and torch._C._len_torch_function_stack() == 0
    y = torch.randn(3, requires_grad=True)
    (g,) = torch.autograd.grad(F.relu(y).sum(), y)  # the plain rule again
    assert torch.equal(g, (y > 0).float())


class Pool1d(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv(x)).flatten(2)
        return self.fc(F.max_pool1d(x, 2).mean(dim=2))


def test_deeplift_refuses_what_it_has_no_rule_for():
    x = _input(1, 16)
    with pytest.raises(MethodUnavailableError, match="1-D max pooling"):
        explain(_toy_handle(Pool1d().eval(), "conv"), x, "deeplift", target=0, cache=None)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
    scripted = _toy_handle(torch.jit.script(net.eval()), "0", hookable=False)
    for key in ("deeplift", "deeplift_shap"):
        with pytest.raises(MethodUnavailableError, match="TorchScript"):
            explain(scripted, x, key, target=0, cache=None, samples=2)


def test_deeplift_explains_a_neuron():
    handle = load_model("resnet18", weights=None)
    x = _input(2, 64)
    unit = NeuronTarget("layer2.0.conv1", 5, 3, 4)
    res = explain_detailed(handle, x, "deeplift", target=unit, cache=None)["deeplift"]
    ref = handle.normalize(torch.zeros_like(x))
    with torch.no_grad():
        acts = forward_until(handle.model, torch.cat([x, ref]), unit.layer)[:, 5, 3, 4]
    delta = float(acts[0] - acts[1])
    assert abs(float(res.raw.astype(np.float64).sum()) - delta) <= 1e-4 * abs(delta) + 1e-6
    top, left, bottom, right = res.receptive_field
    outside = np.ones(x.shape[-2:], bool)
    outside[top:bottom, left:right] = False
    assert outside.any() and np.abs(res.raw[:, outside]).max() == 0  # nothing outside the receptive field


# ---- DeepLiftSHAP and GradientSHAP ----------------------------------------------------------------
@pytest.mark.parametrize("distribution", ["uniform", "black_white"])
def test_deeplift_shap_matches_captum(distribution, captum_paper_rules):
    handle = _handle("resnet18")
    x = _input()
    ref = _ref("resnet18")
    p = dict(samples=3, distribution=distribution, batch_size=2, seed=5)
    refs = reference_set(PassContext(handle, x, handle.default_layer, 0), distribution, 3,
                         torch.Generator().manual_seed(5))
    for target in _targets(handle, x):
        ours = explain(handle, x, "deeplift_shap", target=target, cache=None, options={"deeplift_shap": p})
        theirs = captum_attr.DeepLiftShap(ref).attribute(x.clone(), baselines=refs, target=target)[0].detach().numpy()
        r = pearson(ours["deeplift_shap"], theirs)
        assert r >= 0.99, f"{distribution} target {target}: r={r:.4f}"


@pytest.mark.parametrize("arch,distribution", [
    ("resnet18", "uniform"), ("vgg11", "black_white"),
    ("mobilenet_v3_small", "uniform")])
def test_gradient_shap_matches_captum(arch, distribution, monkeypatch):
    handle = _handle(arch)
    x = _input()
    ref = _ref(arch)
    p = GradientShapParams(samples=4, noise=0.1, distribution=distribution, batch_size=4, seed=1)
    refs, index, alpha, noise = gradient_shap_draws(PassContext(handle, x, handle.default_layer, 0), p)
    fake_np = types.SimpleNamespace(random=types.SimpleNamespace(choice=lambda n, k: index.numpy(),
                                                                 uniform=lambda lo, hi, n: alpha.numpy()))
    monkeypatch.setattr(captum_common, "np", fake_np)  # captum's reference indices
    monkeypatch.setattr(captum_gs, "np", fake_np)      # captum's alphas
    _same_noise(monkeypatch, noise)
    for target in _targets(handle, x):
        ours = explain(handle, x, "gradient_shap", target=target, cache=None, options={"gradient_shap": p})
        theirs = captum_attr.GradientShap(ref).attribute(x.clone(), baselines=refs, n_samples=p.samples,
                                                         stdevs=0.1, target=target)[0].detach().numpy()
        r = pearson(ours["gradient_shap"], theirs)
        assert r >= 0.99, f"{arch} target {target}: r={r:.4f}"


def test_gradient_shap_is_the_expected_gradients_formula():
    """Paper / expected gradients written out: mean_i (x_i - r_i) * grad(r_i + a_i (x_i - r_i))."""
    handle = load_model("resnet18", weights=None)
    x = _input(8)
    p = GradientShapParams(samples=3, noise=0.05, distribution="black_white", seed=2)
    res = explain(handle, x, "gradient_shap", target=7, cache=None, options={"gradient_shap": p})["gradient_shap"]
    refs, index, alpha, noise = gradient_shap_draws(PassContext(handle, x, handle.default_layer, 7), p)
    expected = torch.zeros_like(x[0])
    for i in range(3):
        xi, r = x + noise[i:i + 1], refs[index[i]][None]
        point = (r + alpha[i] * (xi - r)).requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(handle.model(point)[0, 7], point)
        expected += ((xi - r) * g)[0] / 3
    np.testing.assert_allclose(res, expected.numpy(), rtol=1e-4, atol=1e-7)


# ---- noise tunnels ------------------------------------------------------------------------------
def _captum_base(base: str, ref: nn.Module, black: torch.Tensor, steps: int):
    return {"saliency": (captum_attr.Saliency(ref), dict(abs=False)),
            "input_x_gradient": (captum_attr.InputXGradient(ref), {}),
            "guided_backprop": (captum_attr.GuidedBackprop(ref), {}),
            "deconvnet": (captum_attr.Deconvolution(ref), {}),
            "integrated_gradients": (captum_attr.IntegratedGradients(ref),
                                     dict(baselines=black, n_steps=steps, method="riemann_right"))}[base]


@pytest.mark.parametrize("arch,bases", [
    ("resnet18", ("saliency", "input_x_gradient", "deconvnet")), ("vgg11", ("saliency", "guided_backprop")),
    ("mobilenet_v3_small", ("saliency", "input_x_gradient")),
    ("resnet18", ("integrated_gradients",))])
def test_noise_tunnels_match_captum(arch, bases, monkeypatch):
    """Saliency on 2 targets, the other bases on the top-1 class."""
    handle = _handle(arch)
    x = _input()
    ref = _ref(arch)
    black = handle.normalize(torch.zeros_like(x))
    targets = _targets(handle, x)
    for base in bases:
        p = NoiseTunnelParams(base=base, samples=2, noise=0.1, batch_size=2, seed=4, steps=3)
        _same_noise(monkeypatch, torch.cat([xb for _, _, xb in tunnel_noise(x, p)]) - x)
        algo, kwargs = _captum_base(base, ref, black, p.steps)
        for target in targets[: 2 if base == "saliency" else 1]:
            res = explain_detailed(handle, x, ["smoothgrad_sq", "vargrad"], target=target, cache=None,
                                   options={"smoothgrad_sq": p, "vargrad": p})
            assert "shared" in res["vargrad"].info  # one set of noisy maps for both
            for key in ("smoothgrad_sq", "vargrad"):
                theirs = NoiseTunnel(algo).attribute(x.clone(), nt_type=key, nt_samples=p.samples, stdevs=0.1,
                                                     target=target, **kwargs)[0].detach().numpy()
                r = pearson(res[key].raw, theirs)
                assert r >= 0.99, f"{arch} {base} {key} target {target}: r={r:.4f}"


def test_noise_tunnel_of_deeplift_matches_captum(monkeypatch, captum_paper_rules):
    """Captum's NoiseTunnel(DeepLift) needs one baseline per noisy copy (it concatenates them)."""
    handle = _handle("resnet18")
    x = _input()
    ref = _ref("resnet18")
    p = NoiseTunnelParams(base="deeplift", samples=2, noise=0.1, batch_size=2, seed=4, baseline="zero")
    _same_noise(monkeypatch, torch.cat([xb for _, _, xb in tunnel_noise(x, p)]) - x)
    target = _targets(handle, x)[0]
    ours = explain(handle, x, ["smoothgrad_sq", "vargrad"], target=target, cache=None,
                   options={"smoothgrad_sq": p, "vargrad": p})
    for key in ("smoothgrad_sq", "vargrad"):
        theirs = NoiseTunnel(captum_attr.DeepLift(ref)).attribute(
            x.clone(), nt_type=key, nt_samples=p.samples, stdevs=0.1, target=target,
            baselines=0.0)[0].detach().numpy()
        assert pearson(ours[key], theirs) >= 0.99, key


def test_vargrad_is_smoothgrad_sq_minus_the_squared_smoothgrad():
    """Same seed, samples and batch size -> the same noise as SmoothGrad's, so the three agree."""
    handle = load_model("resnet18", weights=None)
    x = _input(5)
    maps = explain(handle, x, ["smoothgrad", "smoothgrad_sq", "vargrad"], target=2, cache=None,
                   samples=3, batch_size=2, seed=9)
    np.testing.assert_allclose(maps["vargrad"], maps["smoothgrad_sq"] - maps["smoothgrad"] ** 2,
                               rtol=1e-3, atol=1e-6 * float(maps["smoothgrad_sq"].max()))
    assert (maps["smoothgrad_sq"] >= 0).all() and (maps["vargrad"] >= -1e-12).all()


def test_noise_tunnel_bases_and_their_refusals():
    bases = noise_tunnel_bases()
    assert {"saliency", "input_x_gradient", "guided_backprop", "deconvnet", "integrated_gradients",
            "deeplift"} <= set(bases)
    assert not {"guided_gradcam", "smoothgrad", "gradient_shap", "deeplift_shap", "smoothgrad_sq", "vargrad",
                "gradcam", "lime"} & set(bases)
    handle = load_model("shapes-cnn", weights=None)
    x = _input(1, 128)
    for bad in ("gradcam", "smoothgrad", "vargrad", "nope"):
        with pytest.raises(ParameterError, match="base must be one of"):
            explain(handle, x, "vargrad", cache=None, base=bad)
    resnet = _handle("resnet18")
    maps = explain(resnet, _input(), "smoothgrad_sq", target=NeuronTarget("layer3", 7), cache=None, samples=2)
    assert maps["smoothgrad_sq"].shape == (3, SIZE, SIZE) and maps["smoothgrad_sq"].max() > 0


# ---- LIME and KernelSHAP ------------------------------------------------------------------------
def _smooth_image(handle: ModelHandle, size: int = REGION_SIZE, seed: int = 1) -> torch.Tensor:
    """Bilinearly upsampled 6x6 colours: SLIC finds superpixels (on white noise it finds one)."""
    low = torch.rand(1, 3, 6, 6, generator=torch.Generator().manual_seed(seed))
    return handle.normalize(F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False))


def _captum_surrogate(key: str, ref: nn.Module, z: torch.Tensor):
    def samples(original_inp, **kwargs):  # noqa: ANN001, ANN003
        for row in z:
            yield row[None].long()

    if key == "lime":
        return captum_attr.Lime(ref, interpretable_model=SkLearnLinearRegression(), perturb_func=samples)
    algo = captum_attr.KernelShap(ref)
    algo.perturb_func = samples
    return algo


@pytest.mark.parametrize("arch", ["resnet18", pytest.param("vgg11", marks=pytest.mark.slow)])
def test_lime_and_kernel_shap_match_captum(arch):
    handle = _handle(arch)
    x = _smooth_image(handle)
    ref = _ref(arch)
    for key, params, sampler in (("lime", LimeParams, lime_samples), ("kernel_shap", KernelShapParams,
                                                                     kernel_shap_samples)):
        p = params(segments=20, samples=24, batch_size=12, seed=3, baseline="black")
        labels = superpixels(PassContext(handle, x, handle.default_layer, 0), p)
        m = int(labels.max()) + 1
        assert m >= 6
        z = sampler(m, p)
        fill = handle.normalize(torch.zeros_like(x))
        for target in _targets(handle, x):
            res = explain_detailed(handle, x, key, target=target, cache=None, options={key: p})[key]
            assert res.raw.shape == (REGION_SIZE, REGION_SIZE) and res.info["segments"] == m
            theirs = _captum_surrogate(key, ref, z).attribute(x.clone(), baselines=fill, target=target,
                                                              feature_mask=labels[None, None], n_samples=p.samples,
                                                              perturbations_per_eval=12)[0, 0].detach().numpy()
            r = pearson(res.raw, theirs)
            assert r >= 0.99, f"{arch} {key} target {target}: r={r:.4f}"


def test_kernel_shap_samples_follow_the_shapley_kernel_and_meet_local_accuracy():
    m = 6
    z = kernel_shap_samples(m, KernelShapParams(samples=4002, seed=0))
    assert z[0].sum() == m and z[1].sum() == 0
    sizes = torch.bincount(z[2:].sum(dim=1).long(), minlength=m + 1).double()
    k = torch.arange(1, m, dtype=torch.float64)
    expected = (m - 1) / (k * (m - k))
    np.testing.assert_allclose((sizes[1:m] / sizes.sum()).numpy(), (expected / expected.sum()).numpy(), atol=0.02)
    # local accuracy (Lundberg & Lee, Property 1): phi_0 = f(baseline) and sum phi = f(x) - f(baseline)
    handle = load_model("resnet18", weights=None)
    x = _smooth_image(handle)
    res = explain_detailed(handle, x, "kernel_shap", target=11, cache=None, segments=20, samples=24)["kernel_shap"]
    with torch.no_grad():
        fx, fb = (float(handle.model(t)[0, 11]) for t in (x, torch.zeros_like(x)))
    labels = superpixels(PassContext(handle, x, handle.default_layer, 11), KernelShapParams(segments=20))
    phi = np.array([res.raw[labels.numpy() == j][0] for j in range(int(labels.max()) + 1)], np.float64)
    assert abs(res.info["intercept"] - fb) < 1e-3 * max(1.0, abs(fb))
    assert abs(phi.sum() - (fx - fb)) < 1e-3 * max(1.0, abs(fx - fb))


def test_weighted_linear_fit_is_weighted_least_squares():
    gen = torch.Generator().manual_seed(0)
    z = torch.bernoulli(torch.full((30, 5), 0.5, dtype=torch.float64), generator=gen)
    w = torch.rand(30, generator=gen, dtype=torch.float64) + 0.1
    y = z @ torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0], dtype=torch.float64) + 0.7
    coef, intercept = weighted_linear_fit(z, y, w)
    np.testing.assert_allclose(coef.numpy(), [1.0, -2.0, 0.5, 0.0, 3.0], atol=1e-9)
    assert abs(intercept - 0.7) < 1e-9
    coef, _ = weighted_linear_fit(z[:3], y[:3], w[:3])  # fewer samples than features: minimum norm
    assert torch.isfinite(coef).all()


def test_region_methods_report_progress_and_stop_on_cancel():
    handle = load_model("resnet18", weights=None)
    x = _smooth_image(handle)
    seen = []
    explain(handle, x, "lime", target=1, cache=None, samples=10, batch_size=4, progress=seen.append)
    assert [s.step for s in seen] == [4, 8, 10] and seen[-1].total == 10
    token = CancelToken()
    token.cancel()
    for key in ("lime", "kernel_shap", "gradient_shap", "deeplift_shap", "vargrad"):
        with pytest.raises(Cancelled):
            explain(handle, x, key, target=1, cache=None, samples=4, cancel=token)


@pytest.mark.parametrize("kwargs,match", [
    (dict(methods="lime", segments=0), "segments"),
    (dict(methods="kernel_shap", compactness=-1), "compactness"),
    (dict(methods="lime", kernel_width=0), "kernel_width"),
    (dict(methods="lime", baseline="white"), "baseline"),
    (dict(methods="deeplift", baseline="white"), "baseline"),
    (dict(methods="gradient_shap", distribution="gauss"), "distribution"),
    (dict(methods="deeplift_shap", samples=0), "samples"),
    (dict(methods="gradient_shap", noise=-0.1), "noise"),
    (dict(methods="smoothgrad_sq", steps=0), "steps"),
])
def test_bad_parameters_raise_parameter_error(kwargs, match):
    handle = load_model("shapes-cnn", weights=None)
    methods = kwargs.pop("methods")
    with pytest.raises(ParameterError, match=match):
        explain(handle, _input(1, 128), methods, cache=None, **kwargs)


def test_registry_entries():
    for key in ("input_x_gradient", "gradient_shap", "deeplift", "deeplift_shap", "smoothgrad_sq", "vargrad"):
        assert METHODS[key].family == "gradient" and METHODS[key].unit_targets
    for key in ("lime", "kernel_shap"):
        assert METHODS[key].family == "region" and METHODS[key].long_running and not METHODS[key].unit_targets
    assert not METHODS["input_x_gradient"].long_running and METHODS["vargrad"].params["base"] == "saliency"
