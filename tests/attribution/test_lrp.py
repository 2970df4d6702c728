"""LRP (lrp_epsilon, lrp_gamma, lrp_alpha_beta): parity with Zennit 0.5.1, conservation, hygiene.

Zennit runs the same composite with the same canonizers on a deep copy of the model
(``VGGCanonizer`` = ``SequentialMergeBatchNorm``, ``ResNetCanonizer``), its output relevance seeded
with the target logit as ours is. Pearson r >= 0.99 per map on random-weight torchvision VGG-11 and
VGG-16 with and without BatchNorm and ResNet-18 at 64 px, 2 targets. Random init leaves BatchNorm an
identity (mean 0, var 1, weight 1, bias 0) and biases at 0, so the models get random BatchNorm
statistics and biases first: otherwise merging BatchNorm and the bias terms of the rules would go
untested.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from cnnviz_core import load_model
from cnnviz_core.attribution import explain, explain_detailed
from cnnviz_core.attribution.lrp import Composite, Rule, lrp_hooks
from cnnviz_core.errors import MethodUnavailableError, ParameterError
from cnnviz_core.hooks import hook_count
from cnnviz_core.models import ModelHandle, ModelSpec
from cnnviz_core.bench.models_bench import reference_model as reference  # a library user's copy of the model

zennit = pytest.importorskip("zennit")
from zennit.attribution import Gradient  # noqa: E402
from zennit.composites import EpsilonAlpha2Beta1, EpsilonGammaBox, LayerMapComposite, layer_map_base  # noqa: E402
from zennit.rules import AlphaBeta, Epsilon  # noqa: E402
from zennit.torchvision import ResNetCanonizer, VGGCanonizer  # noqa: E402
from zennit.types import Convolution  # noqa: E402

SIZE = 64
LRP = ["lrp_epsilon", "lrp_gamma", "lrp_alpha_beta"]


def pearson(a, b) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(np.corrcoef(a, b)[0, 1])


def random_handle(name: str) -> ModelHandle:
    """A torchvision model with random weights, random BatchNorm statistics and random biases."""
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(0.5 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + 1.5 * torch.rand(n, generator=g))
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.copy_(0.2 * torch.randn(n, generator=g))
            elif isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
                m.bias.copy_(0.05 * torch.randn(m.bias.shape, generator=g))
    spec = ModelSpec(name=name, display_name=name, class_names=tuple(f"c{i}" for i in range(1000)),
                     default_layer="layer4" if name.startswith("resnet") else "features", input_size=SIZE,
                     resize_size=SIZE)
    return ModelHandle(spec, model, torch.device("cpu"), "random")


def zennit_composites(handle: ModelHandle, canonizers) -> dict:
    low, high = handle.normalize(torch.zeros(1, 3, 1, 1)), handle.normalize(torch.ones(1, 3, 1, 1))
    return {
        "lrp_epsilon": lambda: LayerMapComposite(layer_map_base() + [(Convolution, Epsilon()), (nn.Linear, Epsilon())],
                                                 canonizers=canonizers()),
        "lrp_gamma": lambda: EpsilonGammaBox(low=low, high=high, canonizers=canonizers()),
        "lrp_alpha_beta": lambda: EpsilonAlpha2Beta1(canonizers=canonizers()),
    }


def zennit_relevance(handle: ModelHandle, composite, x: torch.Tensor, target: int) -> np.ndarray:
    with Gradient(model=reference(handle.model), composite=composite) as attributor:
        _, rel = attributor(x.clone(), lambda out: torch.eye(out.shape[1])[[target]] * out.detach())
    return rel[0].detach().numpy()


ARCHS = ["resnet18", "vgg11_bn"] + [pytest.param(a, marks=pytest.mark.slow) for a in ("vgg11", "vgg16", "vgg16_bn")]


@pytest.mark.parametrize("name", ARCHS)
def test_lrp_matches_zennit(name):
    handle = random_handle(name)
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    logits = handle.forward(x)[0]
    canonizers = (lambda: [ResNetCanonizer()]) if name.startswith("resnet") else (lambda: [VGGCanonizer()])
    for target in (int(logits.argmax()), int(logits.argsort()[len(logits) // 2])):
        ours = explain_detailed(handle, x, LRP, target=target, cache=None)
        for key, composite in zennit_composites(handle, canonizers).items():
            theirs = zennit_relevance(handle, composite(), x, target)
            assert ours[key].raw.shape == (3, SIZE, SIZE)
            r = pearson(ours[key].raw, theirs)
            assert r >= 0.99, f"{name} {key} target {target}: r={r:.5f}"
    assert ours["lrp_gamma"].info["first_layer_rule"].startswith("ZBox")
    assert ours["lrp_gamma"].info["batchnorms_merged"] == sum(isinstance(m, nn.BatchNorm2d)
                                                              for m in handle.model.modules())
    assert hook_count(handle.model) == 0


def test_alpha_beta_parameters_match_zennit():
    """alpha=1, beta=0 (Zennit's ZPlus for convolutions) on ResNet-18, and its maps differ from 2/1."""
    handle = random_handle("resnet18")
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5))
    target = int(handle.forward(x)[0].argmax())
    one = explain(handle, x, "lrp_alpha_beta", target=target, cache=None, alpha=1, beta=0)["lrp_alpha_beta"]
    two = explain(handle, x, "lrp_alpha_beta", target=target, cache=None)["lrp_alpha_beta"]
    composite = LayerMapComposite(layer_map_base() + [(Convolution, AlphaBeta(alpha=1, beta=0)),
                                                      (nn.Linear, Epsilon())], canonizers=[ResNetCanonizer()])
    assert pearson(one, zennit_relevance(handle, composite, x, target)) >= 0.99
    assert pearson(one, two) < 0.99


def test_relevance_is_conserved_without_biases():
    """Without biases every rule here conserves relevance: the input relevance sums to the logit."""
    handle = load_model("resnet18", weights=None)  # random init: BatchNorm folds to a zero bias
    with torch.no_grad():
        handle.model.fc.bias.zero_()
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(6))
    res = explain_detailed(handle, x, LRP, target=7, cache=None)
    for key, r in res.items():
        assert r.raw.sum() == pytest.approx(r.info["logit"], rel=1e-3), key
        assert r.info["relevance_sum"] == pytest.approx(float(r.raw.sum()), rel=1e-5)
        assert r.info["residual_sums"] == 8 and r.info["batchnorms_merged"] == 20


def test_shared_model_is_untouched_and_hooks_are_removed():
    handle = random_handle("vgg11_bn")
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(7))
    state = {k: v.clone() for k, v in handle.model.state_dict().items()}
    before = handle.forward(x)
    explain(handle, x, LRP, cache=None)
    assert hook_count(handle.model) == 0
    assert all(torch.equal(state[k], v) for k, v in handle.model.state_dict().items())
    assert all(p.grad is None and not p.requires_grad for p in handle.model.parameters())
    torch.testing.assert_close(handle.forward(x), before, rtol=0, atol=0)

    class Boom(Exception):
        pass

    def explode(_m, _i, _o):
        raise Boom

    h = handle.model.features[4].register_forward_hook(explode)
    try:
        composite = Composite("test", Rule("epsilon"), Rule("epsilon"))
        with pytest.raises(Boom):
            with torch.enable_grad(), lrp_hooks(handle.model, composite, x.requires_grad_(True)):
                handle.model(x)
    finally:
        h.remove()
    assert hook_count(handle.model) == 0


@pytest.mark.parametrize("name,match", [
    ("densenet121", "BatchNorm features.denseblock1.denselayer1.norm1 does not follow"),
    ("mobilenet_v3_large", "no LRP rule for Hardswish"),
    ("shapes-cnn", "no LRP rule for the function 'mul' in the forward of GatedFusion"),
])
def test_unsupported_models_are_refused_in_one_line(name, match):
    handle = load_model(name, weights=None)
    size = handle.input_size if name == "shapes-cnn" else SIZE
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(8))
    for key in LRP:
        with pytest.raises(MethodUnavailableError, match=match) as info:
            explain(handle, x, key, target=0, cache=None)
        assert "\n" not in str(info.value) and str(info.value).startswith(key)
    assert hook_count(handle.model) == 0


def test_additions_outside_residual_blocks_are_refused():
    class Skip(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))

        def forward(self, x):
            return self.head(torch.relu(self.conv(x)) + x)

    spec = ModelSpec(name="skip", display_name="skip", class_names=("a", "b"), default_layer="conv",
                     input_size=32, resize_size=32)
    handle = ModelHandle(spec, Skip(), torch.device("cpu"), "test")
    with pytest.raises(MethodUnavailableError, match=r"function '\w*add\w*' in the forward of the model \(Skip\)"):
        explain(handle, torch.randn(1, 3, 32, 32), "lrp_epsilon", cache=None)
    assert hook_count(handle.model) == 0


def test_concurrent_calls_give_the_sequential_maps():
    handle = random_handle("resnet18")
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(9))
    expected = {t: explain(handle, x, "lrp_gamma", target=t, cache=None)["lrp_gamma"] for t in range(4)}
    got: dict = {}
    threads = [threading.Thread(target=lambda t=t: got.__setitem__(
        t, explain(handle, x, "lrp_gamma", target=t, cache=None)["lrp_gamma"])) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for t in range(4):
        np.testing.assert_array_equal(got[t], expected[t])
    assert hook_count(handle.model) == 0


@pytest.mark.parametrize("method,kwargs,match", [
    ("lrp_alpha_beta", dict(alpha=3, beta=1), "alpha - beta = 1"),
    ("lrp_alpha_beta", dict(alpha=1, beta=-0.0001), "beta"),
    ("lrp_gamma", dict(gamma=-1), "gamma"),
    ("lrp_epsilon", dict(epsilon="x"), "epsilon"),
    ("lrp_epsilon", dict(epsilon=float("inf")), "epsilon"),
])
def test_bad_parameters(method, kwargs, match):
    handle = load_model("resnet18", weights=None)
    with pytest.raises(ParameterError, match=match):
        explain(handle, torch.zeros(1, 3, SIZE, SIZE), method, cache=None, **kwargs)
