"""One shared model, 8 threads: predictions and hook-based passes equal the serial results, and no
hook or parameter gradient is left behind (the situation of many Streamlit sessions)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch

from cnnviz_core import Engine
from cnnviz_core.hooks import capture, hook_count


def layer_gradient_map(handle, x: torch.Tensor, target: int) -> torch.Tensor:
    """A hook-based call: gradient-weighted activations of the default layer (Grad-CAM-like)."""
    with handle.lock, capture(handle.model, [handle.default_layer], differentiable=True) as store:
        score = handle.model(x)[0, target]
        act = store[handle.default_layer]
        (grad,) = torch.autograd.grad(score, act)
    return (grad.mean(dim=(2, 3), keepdim=True) * act).sum(1).detach()


def test_eight_threads_match_serial_and_leave_no_hooks():
    engine = Engine()
    handle = engine.model("resnet18", weights=None)
    assert engine.model("resnet18", weights=None) is handle  # one shared object
    torch.manual_seed(0)
    inputs = [torch.randn(1, 3, 112, 112) for _ in range(8)]

    def job(i: int):
        x = inputs[i]
        return handle.predict(x, topk=3), layer_gradient_map(handle, x, target=i * 7), handle.forward(x)

    serial = [job(i) for i in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(3):
            parallel = list(pool.map(job, range(8)))
            for (p_s, m_s, l_s), (p_p, m_p, l_p) in zip(serial, parallel):
                assert [c for c, _, _ in p_s] == [c for c, _, _ in p_p]
                assert torch.allclose(m_s, m_p, atol=1e-5)
                assert torch.allclose(l_s, l_p, atol=1e-5)
    assert hook_count(handle.model) == 0
    assert all(p.grad is None and not p.requires_grad for p in handle.model.parameters())


def test_concurrent_first_loads_build_one_model():
    engine = Engine()
    with ThreadPoolExecutor(max_workers=4) as pool:
        handles = list(pool.map(lambda _: engine.model("squeezenet1_1", weights=None), range(4)))
    assert all(h is handles[0] for h in handles)
