"""Unit targets against the references and against the network's geometry.

* Parity with captum's NeuronGradient, NeuronDeconvolution and NeuronGuidedBackprop on random-weight
  torchvision architectures (``get_model(name, weights=None)``, seeded), several layers, a neuron
  given by position and one left to the channel's strongest activation: Pearson r >= 0.99.
  MobileNetV2 has only ReLU6 (not ReLU), so deconvnet / guided backprop are refused there (as for
  classes) and only the gradient is compared.
* The receptive field equals the support of the true gradient (union over random images: max
  pooling routes one image's gradient through one window position), the unit does not change when
  any pixel outside it changes, and each edge of the box holds a pixel that changes it.
"""
from __future__ import annotations

import pytest
import torch

from cnnviz_core import load_model
from cnnviz_core.attribution import NeuronTarget, explain_detailed
from cnnviz_core.attribution.passes import unit_pass
from cnnviz_core.attribution.receptive_field import neuron_receptive_field
from cnnviz_core.hooks import forward_until

from unit_helpers import pearson, reference_copy, support_box, tv_handle

captum_attr = pytest.importorskip("captum.attr")

PARITY = [("resnet18", ["layer1.0.conv1", "layer2", "layer3.1"]),
          ("vgg11", ["features.3", "features.8", "features.15"]),
          ("alexnet", ["features.4", "features.10"]),
          ("densenet121", ["features.denseblock1", "features.transition2.conv"]),
          ("mobilenet_v2", ["features.3", "features.7.conv.1"])]
NO_RELU = {"mobilenet_v2"}
REFS = {"saliency": "NeuronGradient", "deconvnet": "NeuronDeconvolution", "guided_backprop": "NeuronGuidedBackprop"}


@pytest.mark.slow
@pytest.mark.parametrize("arch,layers", PARITY, ids=[a for a, _ in PARITY])
def test_unit_projections_match_captum(arch, layers):
    handle = tv_handle(arch)
    ref = reference_copy(handle.model)
    x = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(11))
    for layer in layers:
        for channel, position in ((5, None), (17, (2, 3))):
            target = NeuronTarget(layer, channel, *(position or (None, None)))
            res = explain_detailed(handle, x, list(REFS), target=target, cache=None, on_error="collect")
            unit = res["saliency"].unit
            if position is not None:
                assert (unit.y, unit.x) == position
            for key, cls in REFS.items():
                if arch in NO_RELU and key != "saliency":
                    assert res[key].error and "ReLU" in res[key].error
                    continue
                theirs = getattr(captum_attr, cls)(ref, ref.get_submodule(layer)).attribute(
                    x.clone(), neuron_selector=(unit.channel, unit.y, unit.x))[0].detach().numpy()
                r = pearson(res[key].raw, theirs)
                assert r >= 0.99, f"{arch} {layer} {key} {unit}: r={r:.4f}"


def test_unit_projection_matches_captum_on_shapes_cnn():
    handle = load_model("shapes-cnn", weights=None)
    ref = reference_copy(handle.model)
    x = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(2))
    res = explain_detailed(handle, x, list(REFS), target=NeuronTarget("stage3", 7), cache=None)
    u = res["deconvnet"].unit
    for key, cls in REFS.items():
        theirs = getattr(captum_attr, cls)(ref, ref.get_submodule("stage3")).attribute(
            x.clone(), neuron_selector=(u.channel, u.y, u.x))[0].detach().numpy()
        assert pearson(res[key].raw, theirs) >= 0.99, key


# ---- receptive field -----------------------------------------------------------------------------
def _handle(arch: str):
    return load_model("shapes-cnn", weights=None) if arch == "shapes-cnn" else tv_handle(arch)


def _positions(h: int, w: int) -> list[tuple[int, int]]:
    return sorted({(0, 0), (h - 1, w - 1), (h // 2, w // 2), (0, w // 3), (h - 1, min(1, w - 1))})


def _active_channel(act: torch.Tensor, y: int, x: int) -> int:
    """The channel most active at (y, x) over the images (a dead unit has no gradient at all)."""
    return int(act[:, :, y, x].clamp(min=0).sum(0).argmax())


RF_CASES = [("shapes-cnn", ["stage1", "stage2", "stage3.conv2", "stage4", "fusion"], 128),
            ("resnet18", ["maxpool", "layer1", "layer2.0", "layer3"], 96),
            ("vgg11", ["features.2", "features.8", "features.12"], 96),
            ("mobilenet_v2", ["features.2", "features.6"], 96),
            ("densenet121", ["features.transition1"], 64),
            ("squeezenet1_1", ["features.6"], 96)]


@pytest.mark.slow
@pytest.mark.parametrize("arch,layers,size", RF_CASES, ids=[a for a, _, _ in RF_CASES])
def test_receptive_field_is_the_support_of_the_true_gradient(arch, layers, size):
    handle = _handle(arch)
    xs = torch.randn(16, 3, size, size, generator=torch.Generator().manual_seed(5))
    for layer in layers:
        with torch.no_grad():
            act = forward_until(handle.model, xs, layer)
        c, h, w = act.shape[1:]
        for y, x in _positions(h, w):
            ch = _active_channel(act, y, x)
            grads = unit_pass(handle, xs, NeuronTarget(layer, ch, y, x), {"input_grad"}).products["input_grad"]
            box = neuron_receptive_field(handle, layer, (size, size), (c, h, w), ch, y, x)
            assert support_box(grads.numpy()) == box, (arch, layer, ch, y, x)


def test_receptive_field_of_shapes_cnn_stage2_is_the_papers_arithmetic():
    """conv3 -> pool2 -> conv3 -> pool2: 10 px at a stride of 4, from 4y - 3 (the README's stage2 field)."""
    handle = load_model("shapes-cnn", weights=None)
    for y, x in ((10, 12), (0, 0), (31, 31)):
        box = neuron_receptive_field(handle, "stage2", (128, 128), (48, 32, 32), 0, y, x)
        top, left = 4 * y - 3, 4 * x - 3
        assert box == (max(0, top), max(0, left), min(128, top + 10), min(128, left + 10))


@pytest.mark.parametrize("arch,layer,size", [("shapes-cnn", "stage4", 128), ("resnet18", "layer2", 96),
                                             ("alexnet", "features.5", 96)])
def test_receptive_field_is_what_can_change_the_unit(arch, layer, size):
    """Outside the box no change of any pixel changes the unit (bit for bit); on each edge of the
    box some change of that edge's pixels does."""
    handle = _handle(arch)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        act = forward_until(handle.model, x, layer)
    c, h, w = act.shape[1:]
    gen = torch.Generator().manual_seed(9)
    for y, xx in ((h // 2, w // 2), (0, 1), (h - 1, w - 1)):
        ch = _active_channel(act, y, xx)
        t, l, b, r = neuron_receptive_field(handle, layer, (size, size), (c, h, w), ch, y, xx)

        def unit(inp: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return forward_until(handle.model, inp, layer)[:, ch, y, xx]

        base = unit(x.repeat(4, 1, 1, 1))  # same batch size: same kernels, so bit-for-bit comparable
        outside = torch.ones(size, size, dtype=torch.bool)
        outside[t:b, l:r] = False
        noisy = x + 50 * torch.randn((4, 3, size, size), generator=gen) * outside
        assert torch.equal(unit(noisy), base)
        edges = {"top": (slice(t, t + 1), slice(l, r)), "bottom": (slice(b - 1, b), slice(l, r)),
                 "left": (slice(t, b), slice(l, l + 1)), "right": (slice(t, b), slice(r - 1, r))}
        for name, (rows, cols) in edges.items():
            probes = x.repeat(8, 1, 1, 1)
            for i, scale in enumerate((-100, -10, -1, 1, 10, 100, 1000, -1000)):
                probes[i, :, rows, cols] += scale * torch.randn((3, rows.stop - rows.start, cols.stop - cols.start),
                                                                generator=gen).abs()
            assert not torch.allclose(unit(probes), base[0].expand(8), rtol=1e-4, atol=1e-5), (arch, layer, (y, xx), name)
