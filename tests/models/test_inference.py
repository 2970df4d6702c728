"""The batch twin (models/inference.py): BatchNorm folded on a copy, same logits, shared model untouched."""
from __future__ import annotations

import torch
from torch import nn

from cnnviz_core.hooks import hook_count
from cnnviz_core.models import load_model
from cnnviz_core.models.inference import InferenceTwin, frozen_twin, fused_twin


def _bn_net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(8, 4)).eval()
    with torch.no_grad():  # non-trivial running statistics, so folding really changes the weights
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
        net[1].weight.uniform_(0.5, 2)
        net[1].bias.uniform_(-1, 1)
    return net


class _Branchy(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn, self.fc = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x))
        if y.mean() > 0:
            y = y * 2
        return self.fc(y.mean(dim=(2, 3)))


def test_twin_folds_batchnorm_on_a_copy_and_matches():
    net = _bn_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(3, 3, 16, 16)
    twin, how = fused_twin(net, x)
    assert how == "bn-folded" and twin is not net
    assert not any(isinstance(m, nn.BatchNorm2d) for m in twin.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    with torch.inference_mode():
        torch.testing.assert_close(twin(x), net(x), rtol=1e-4, atol=1e-5)


def test_twin_falls_back_to_the_model_when_untraceable_or_without_batchnorm():
    branchy = _Branchy().eval()
    twin, how = fused_twin(branchy, torch.randn(2, 3, 8, 8))
    assert twin is branchy and how.startswith("not traceable")
    plain = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten()).eval()
    assert fused_twin(plain, torch.randn(1, 3, 5, 5)) == (plain, "no BatchNorm to fold")


def test_handle_batch_logits_match_forward_and_leave_no_hooks():
    handle = load_model("shapes-cnn", weights=None)
    x = torch.randn(5, 3, 128, 128, generator=torch.Generator().manual_seed(3))
    got = handle.batch_logits(x)
    assert handle.batch_forward_mode == "bn-folded"
    torch.testing.assert_close(got, handle.forward(x), rtol=1e-4, atol=1e-4)
    assert hook_count(handle.model) == 0
    assert all(not p.requires_grad for p in handle.model.parameters())


def test_inference_twin_is_built_once():
    twin = InferenceTwin(_bn_net(), 16, torch.device("cpu"))
    assert twin.how == "not built yet"
    first = twin.module()
    assert twin.module() is first and twin.how == "bn-folded"


def test_frozen_twin_matches_and_checks_each_new_input_shape():
    net = _bn_net()
    twin = InferenceTwin(net, 16, torch.device("cpu"))
    twin.module()
    frozen, why = frozen_twin(twin.module(), torch.randn(2, 3, 16, 16))
    assert why == "frozen" and isinstance(frozen, torch.jit.ScriptModule)
    for shape in ((5, 3, 16, 16), (3, 3, 24, 20)):  # batch and size other than the probe's
        x = torch.randn(*shape)
        with torch.inference_mode():
            torch.testing.assert_close(twin(x), net(x), rtol=1e-4, atol=1e-5)
    assert twin.engine == "frozen" or twin.engine.startswith("eager")
    if twin.engine == "frozen":
        assert set(twin._frozen_shapes) >= {(3, 16, 16), (3, 24, 20)}


class _FixedSize(nn.Module):
    """Flattens to a size fixed by its probe: a trace bakes it in, another input size must not use it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn, self.fc = nn.Conv2d(3, 2, 3, padding=1), nn.BatchNorm2d(2), nn.Linear(2 * 8 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.bn(self.conv(x))[..., :8, :8].reshape(x.shape[0], 128))


def test_frozen_twin_never_answers_for_a_shape_it_gets_wrong():
    net = _FixedSize().eval()
    twin = InferenceTwin(net, 8, torch.device("cpu"))
    twin._choose_engine = lambda eager, probe: (frozen_twin(eager, probe)[0], "frozen")  # whatever its speed
    x = torch.randn(4, 3, 12, 12)
    with torch.inference_mode():
        torch.testing.assert_close(twin(x), net(x), rtol=1e-4, atol=1e-5)
    assert twin.engine == "frozen" and (3, 12, 12) in twin._frozen_shapes  # checked against the model


def test_no_frozen_trace_for_data_dependent_control_flow():
    """A trace would bake in one branch of ``_Branchy``; torch.fx refuses it, so it stays eager."""
    net = _Branchy().eval()
    twin = InferenceTwin(net, 8, torch.device("cpu"))
    for sign in (1.0, -1.0):  # inputs that take either branch
        x = sign * torch.ones(2, 3, 8, 8) * 5
        with torch.inference_mode():
            torch.testing.assert_close(twin(x), net(x))
    assert twin.engine.startswith("eager")
    from cnnviz_core.models.inference import _fx_traceable

    assert not _fx_traceable(_Branchy()) and _fx_traceable(nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten()))


def test_a_private_twin_runs_without_the_model_lock():
    """A long job's batches on the folded copy or the frozen trace never hold the shared model's lock."""
    import threading

    from lock_helpers import held_by_another_thread

    lock = threading.RLock()
    twin = InferenceTwin(_bn_net(), 16, torch.device("cpu"), lock=lock)
    twin.module()
    with held_by_another_thread(lock):
        assert twin(torch.randn(2, 3, 16, 16)).shape == (2, 4)  # would block until the end if it took the lock
