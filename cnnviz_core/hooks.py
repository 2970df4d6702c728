"""Hooks, always inside context managers, always removed - also when the block raises.

* :func:`capture` records the outputs of named layers during forwards run inside the block
  (optionally made differentiable, optionally stopping the forward right after a layer).
* :func:`gradient_taps` records the gradient at named layers' outputs during the first backward
  through them, without copying the outputs (tensor hooks registered by forward hooks).
* :func:`relu_backward_rule` changes how ReLU back-propagates (plain / guided / deconvnet) for
  forwards run inside the block, *without touching the model*: it is a thread-local
  ``TorchFunctionMode`` that routes every ReLU call - ``nn.ReLU`` modules, ``F.relu`` and
  ``torch.relu`` in ``forward`` code, in-place or not - through one autograd function. Other threads
  sharing the model are unaffected, and nothing global is monkey-patched.

Hooks mutate the shared module's hook dicts, so callers hold ``ModelHandle.lock`` around them.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Literal, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from .errors import MethodUnavailableError, ParameterError

ReluRule = Literal["plain", "guided", "deconvnet"]


class StopForward(Exception):
    """Raised by a :func:`capture` hook to end a forward right after the ``stop_at`` layer."""


def get_module(model: nn.Module, path: str) -> nn.Module:
    try:
        return model.get_submodule(path)
    except AttributeError:
        raise ParameterError(f"the model has no layer {path!r}") from None


def _first_tensor(output: Any) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise ParameterError(f"layer output of type {type(output).__name__} is not a tensor")


@contextmanager
def capture(
    model: nn.Module,
    layers: Sequence[str],
    *,
    differentiable: bool = False,
    stop_at: Optional[str] = None,
) -> Iterator[dict[str, torch.Tensor]]:
    """Yield a dict ``path -> output`` filled by forwards run inside the block.

    ``differentiable=True``: each captured output can be passed to ``torch.autograd.grad`` even when
    nothing upstream requires grad (it is then detached into a leaf, which also means no backward
    goes further down than needed). The network downstream receives a clone, so in-place ops that
    follow (``ReLU(inplace=True)``) never modify the captured tensor.
    ``stop_at``: after that layer's output is captured, the forward raises :class:`StopForward`
    (use :func:`forward_until`), so nothing past it is computed.
    """
    store: dict[str, torch.Tensor] = {}
    handles = []

    def make_hook(path: str):
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> Any:
            out = _first_tensor(output)
            replaced = None
            if differentiable:
                act = out if out.requires_grad else out.detach().requires_grad_(True)
                store[path] = act
                replaced = act.clone()
            else:
                store[path] = out
            if stop_at == path:
                raise StopForward(path)
            if replaced is None:
                return None
            if isinstance(output, torch.Tensor):
                return replaced
            return type(output)([replaced, *output[1:]])

        return hook

    try:
        for path in dict.fromkeys([*layers, *([stop_at] if stop_at else [])]):
            try:
                handles.append(get_module(model, path).register_forward_hook(make_hook(path)))
            except RuntimeError as exc:  # TorchScript: "register_forward_hook is not supported on ScriptModules"
                raise MethodUnavailableError(
                    f"layer {path!r} cannot be hooked ({str(exc).splitlines()[0][:80]}): layer methods need a "
                    "state_dict or a .pt2 (torch.export) file; saliency, Integrated Gradients, SmoothGrad and "
                    "occlusion work on TorchScript") from None
        yield store
    finally:
        for h in handles:
            h.remove()


@dataclass
class GradientTaps:
    """What :func:`gradient_taps` records: ``grads[path]`` the gradient at the layer's output (first
    backward through it), ``shapes[path]`` the output's shape, dtype and device (layers the forward ran)."""

    grads: dict[str, torch.Tensor] = field(default_factory=dict)
    shapes: dict[str, tuple[torch.Size, torch.dtype, torch.device]] = field(default_factory=dict)

    def gradient(self, path: str) -> Optional[torch.Tensor]:
        """The recorded gradient; zeros when the forward ran the layer but no backward reached it;
        None when the forward never ran it."""
        if path in self.grads:
            return self.grads[path]
        if path in self.shapes:
            shape, dtype, device = self.shapes[path]
            return torch.zeros(shape, dtype=dtype, device=device)
        return None


@contextmanager
def gradient_taps(model: nn.Module, layers: Sequence[str]) -> Iterator[GradientTaps]:
    """Record d(score)/d(output) of each layer in ``layers`` during the FIRST backward that reaches it
    after a forward run inside the block (later backwards, e.g. other ReLU rules, are ignored).

    Unlike :func:`capture` with ``differentiable=True`` nothing is copied and the network is not
    changed: a forward hook registers a tensor hook on the output. A tensor hook registered before an
    in-place op (``ReLU(inplace=True)`` after a BatchNorm) receives the gradient w.r.t. the value
    before that op, i.e. the layer's own output. The backward must pass through the layers (a
    gradient to the input does); only the last call of a layer per forward counts. Forward hooks are
    removed when the block exits; tensor hooks die with the forward's tensors."""
    taps = GradientTaps()
    latest: dict[str, object] = {}
    handles = []

    def make_hook(path: str):
        def forward_hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            out = _first_tensor(output)
            token = object()
            latest[path] = token
            taps.shapes[path] = (out.shape, out.dtype, out.device)
            taps.grads.pop(path, None)
            if out.requires_grad:
                def tensor_hook(grad: torch.Tensor) -> None:
                    if latest.get(path) is token and path not in taps.grads:
                        taps.grads[path] = grad.detach()
                out.register_hook(tensor_hook)

        return forward_hook

    try:
        for path in dict.fromkeys(layers):
            try:
                handles.append(get_module(model, path).register_forward_hook(make_hook(path)))
            except RuntimeError as exc:
                raise MethodUnavailableError(f"layer {path!r} cannot be hooked ({str(exc).splitlines()[0][:80]})") from None
        yield taps
    finally:
        for h in handles:
            h.remove()


def forward_until(model: nn.Module, x: torch.Tensor, layer: str, *, differentiable: bool = False) -> torch.Tensor:
    """Run ``model`` on ``x`` only up to ``layer`` and return that layer's output.

    Modules after ``layer`` in execution order are not run (the forward stops by exception).
    """
    with capture(model, [layer], stop_at=layer, differentiable=differentiable) as store:
        try:
            model(x)
        except StopForward:
            pass
    if layer not in store:
        raise ParameterError(f"layer {layer!r} was not reached by the forward pass")
    return store[layer]


# ---- ReLU backward rules ------------------------------------------------------------------------
@dataclass
class ReluState:
    """Per-call state of :func:`relu_backward_rule`: the rule used by the next backward, and a
    count of the ReLU calls routed through it during the forward."""

    rule: ReluRule = "plain"
    calls: int = 0
    sites: list[str] = field(default_factory=list)


class _SwitchableReLU(torch.autograd.Function):
    """max(x, 0) whose backward follows ``state.rule`` at backward time.

    * plain:     dx = dy * [x > 0]                  (the true gradient; Simonyan et al. 2014)
    * guided:    dx = max(dy, 0) * [x > 0]          (Springenberg et al. 2015)
    * deconvnet: dx = max(dy, 0)                    (Zeiler & Fergus 2014: ReLU on the signal)

    Like the native ReLU it saves only its output (``[x > 0] == [y > 0]``), which the next layer
    keeps anyway, and it stays in place when the caller asked for an in-place ReLU: the memory of a
    forward under the mode is that of a plain forward.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, state: ReluState, inplace: bool) -> torch.Tensor:
        if inplace:
            y = x.clamp_(min=0)
            ctx.mark_dirty(x)
        else:
            y = x.clamp(min=0)
        ctx.save_for_backward(y)
        ctx.state = state
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Optional[torch.Tensor], None, None]:
        (y,) = ctx.saved_tensors
        rule = ctx.state.rule
        if rule == "plain":
            return torch.ops.aten.threshold_backward(grad, y, 0), None, None
        if rule == "guided":
            return torch.ops.aten.threshold_backward(grad, y, 0).clamp_(min=0), None, None
        return grad.clamp(min=0), None, None


# The aten overloads are what the graphs of unflattened torch.export programs call.
_RELU_FUNCS = {F.relu, F.relu_, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_,
               torch.ops.aten.relu.default, torch.ops.aten.relu_.default}
_INPLACE_RELU_FUNCS = {F.relu_, torch.relu_, torch.Tensor.relu_, torch.ops.aten.relu_.default}


class _ReluMode(TorchFunctionMode):
    def __init__(self, state: ReluState) -> None:
        super().__init__()
        self.state = state

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        if func in _RELU_FUNCS:
            x = args[0] if args else kwargs["input"]
            self.state.calls += 1
            inplace = func in _INPLACE_RELU_FUNCS or bool(kwargs.get("inplace", args[1] if len(args) > 1 else False))
            return _SwitchableReLU.apply(x, self.state, inplace)
        return func(*args, **kwargs)


@contextmanager
def relu_backward_rule(state: Optional[ReluState] = None) -> Iterator[ReluState]:
    """Forwards inside the block route every ReLU through :class:`_SwitchableReLU`; set
    ``state.rule`` before each ``backward``/``autograd.grad`` to choose plain, guided or deconvnet
    gradients. Thread-local: concurrent forwards in other threads are not affected."""
    state = state or ReluState()
    with _ReluMode(state):
        yield state


#: Activation modules that guided backprop / deconvnet rules do not cover (reported to the user).
NON_RELU_ACTIVATIONS = (nn.GELU, nn.SiLU, nn.Hardswish, nn.ReLU6, nn.ELU, nn.LeakyReLU, nn.PReLU, nn.Mish,
                        nn.Sigmoid, nn.Tanh, nn.Hardsigmoid)


def non_relu_activations(model: nn.Module) -> list[str]:
    """Type names of activation modules in ``model`` that are not plain ReLU (deduplicated)."""
    return sorted({type(m).__name__ for m in model.modules() if isinstance(m, NON_RELU_ACTIVATIONS)})


def hook_count(model: nn.Module) -> int:
    """Total forward/backward hooks registered on ``model`` and its submodules (leak checks)."""
    total = 0
    for m in model.modules():
        total += len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        total += len(getattr(m, "_backward_pre_hooks", {}))
    return total
