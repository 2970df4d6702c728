"""Hook context managers: removed on every path, thread-local ReLU rules, truncated forwards."""
from __future__ import annotations

import threading

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnviz_core.hooks import capture, forward_until, hook_count, relu_backward_rule


class FunctionalReluNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(6, 4, 3, padding=1)

    def forward(self, x):
        x = self.act(self.conv1(x))
        x = F.relu(self.conv2(x), inplace=True)
        return x.relu().mean(dim=(2, 3))


def test_hooks_removed_when_the_block_raises():
    net = FunctionalReluNet()
    with pytest.raises(RuntimeError, match="boom"):
        with capture(net, ["conv1", "conv2"]):
            assert hook_count(net) == 2
            raise RuntimeError("boom")
    assert hook_count(net) == 0


def test_differentiable_capture_gives_layer_gradient_and_protects_from_inplace():
    net = FunctionalReluNet()
    x = torch.randn(1, 3, 8, 8)
    with capture(net, ["conv1"], differentiable=True) as store:
        out = net(x)
    act = store["conv1"]
    assert (act < 0).any(), "captured tensor must be the pre-ReLU output, not modified in place"
    (grad,) = torch.autograd.grad(out[0, 1], act)
    reference = torch.func.grad(lambda a: net.conv2(torch.relu(a)).relu().mean(dim=(2, 3))[0, 1])(act.detach())
    assert torch.allclose(grad, reference, atol=1e-6)


def test_forward_until_stops_early():
    net = FunctionalReluNet()
    calls = []
    handle = net.conv2.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        out = forward_until(net, torch.randn(1, 3, 8, 8), "conv1")
    finally:
        handle.remove()
    assert out.shape == (1, 6, 8, 8) and not calls
    assert hook_count(net) == 0


def test_relu_rules_cover_modules_functional_and_tensor_relus():
    net = FunctionalReluNet()
    x = torch.randn(1, 3, 8, 8, requires_grad=True)
    (true_grad,) = torch.autograd.grad(net(x)[0, 0], x)
    with relu_backward_rule() as state:
        out = net(x)
        (plain,) = torch.autograd.grad(out[0, 0], x, retain_graph=True)
        state.rule = "guided"
        (guided,) = torch.autograd.grad(out[0, 0], x, retain_graph=True)
        state.rule = "deconvnet"
        (deconv,) = torch.autograd.grad(out[0, 0], x)
    assert state.calls == 3  # nn.ReLU(inplace) + F.relu(inplace) + Tensor.relu
    assert torch.allclose(plain, true_grad, atol=1e-6)
    assert not torch.allclose(guided, plain) and not torch.allclose(deconv, guided)


def test_relu_rule_is_thread_local():
    net = FunctionalReluNet()
    x = torch.randn(1, 3, 8, 8)
    seen_in_other_thread = []

    def other():
        for _ in range(20):
            net(x)
        seen_in_other_thread.append(True)

    with relu_backward_rule() as state:
        t = threading.Thread(target=other)
        t.start()
        net(x)
        t.join()
    assert seen_in_other_thread and state.calls == 3


def test_gradient_taps_record_the_layer_output_gradient_before_in_place_ops_and_only_once():
    from cnnviz_core.hooks import capture, gradient_taps, hook_count

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(inplace=True),
                              torch.nn.Conv2d(4, 2, 3), torch.nn.Flatten(), torch.nn.LazyLinear(3)).eval()
    x = torch.randn(2, 3, 9, 9)
    net(x)  # materialize the lazy layer
    xi = x.clone().requires_grad_(True)
    with capture(net, ["1"], differentiable=True) as store:  # the copying way: the reference
        y = net(xi)
    (want,) = torch.autograd.grad(y[:, 1].sum(), [store["1"]])
    xi = x.clone().requires_grad_(True)
    with gradient_taps(net, ["1", "3"]) as taps:
        y = net(xi)
    assert hook_count(net) == 0
    torch.autograd.grad(y[:, 1].sum(), xi, retain_graph=True)
    torch.autograd.grad(y[:, 2].sum(), xi)  # a later backward does not overwrite the first
    torch.testing.assert_close(taps.gradient("1"), want)
    assert (taps.gradient("1") == 0).any() and (taps.gradient("1") != 0).any()  # the ReLU's mask is in it
    assert taps.gradient("3").shape == (2, 2, 5, 5) and taps.gradient("0") is None
