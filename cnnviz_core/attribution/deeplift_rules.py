"""DeepLIFT's rescale rule as a per-call backward rule (Shrikumar, Greenside & Kundaje 2017).

DeepLIFT explains ``f(x) - f(x')`` by *multipliers* ``m = dt / dx`` that replace each local gradient
of a nonlinearity ``y = g(x)`` by the secant ``(g(x) - g(x')) / (x - x')`` between the input and the
reference (the paper's rescale rule); linear layers (convolutions, BatchNorm in eval
mode, average pooling, additions) keep their gradients, and the paper's chain rule for multipliers
is ordinary back-propagation. Attributions are ``(x - x') * m`` and sum to ``f(x) - f(x')``
("summation-to-delta").

:func:`rescale_rule` makes this a backward rule *without touching the model*: like
:func:`~cnnviz_core.hooks.relu_backward_rule` it is a thread-local ``TorchFunctionMode``, so every
call of a supported nonlinearity - ``nn.ReLU`` / ``nn.Sigmoid`` / ... modules, ``F.relu`` /
``torch.sigmoid`` / ``Tensor.relu_`` in ``forward`` code, in place or not, a module used twice
(torchvision's ResNet blocks) - is routed through an autograd function whose backward applies the
rule. The forward must run on ``torch.cat([inputs, references])`` (batch ``2B``): each rule pairs
row ``i`` with row ``B + i``, and the network must keep the batch in dimension 0 (every CNN does).

Rules:

* **elementwise nonlinearities** (ReLU, ReLU6 / hardtanh, leaky ReLU, ELU, SELU, CELU, GELU, SiLU,
  Mish, softplus, sigmoid, tanh, hard-swish, hard-sigmoid): the rescale rule. Where
  ``|x - x'| < 1e-10`` the secant is undefined and the local gradient is used (as Captum does).
  Captum's DeepLift hooks only ``nn.ReLU / ELU / LeakyReLU / Sigmoid / Tanh / Softplus`` *modules*:
  functional calls (DenseNet's final ``F.relu``), hard-swish, hard-sigmoid, SiLU and GELU
  back-propagate plainly there; the paper's rule covers every elementwise nonlinearity, so they get
  the rule here.
* **2-D max pooling** (``nn.MaxPool2d``, ``F.max_pool2d``): the rule Captum uses. With
  ``o = max(x)`` and ``o' = max(x')`` over a window, ``o - o'`` is split into
  ``max(o, o') - o'`` (given to the argmax of ``x``) and ``o - max(o, o')`` (given to the argmax of
  ``x'``), and each input's multiplier is its share divided by ``x - x'``. Shares of overlapping
  windows are *summed* (so summation-to-delta holds); Captum scatters them with ``max_unpool2d``,
  which keeps only one window per input position where windows overlap (ResNet's and DenseNet's
  3x3 stride-2 stem pool) and breaks summation-to-delta there.

Captum 0.9.0's module hooks also go wrong where two hooked modules follow each other (ReLU ->
MaxPool, as in every VGG stage: stale output gradients, captum issue #1104) and raise for a module
called twice (torchvision's ResNet blocks); an autograd function per call has neither problem.

Unsupported, raising :class:`~cnnviz_core.errors.MethodUnavailableError`: TorchScript programs
(their ops run outside Python and take no rule), 1-D / 3-D / adaptive / fractional max pooling (no
rule implemented; the plain gradient would break summation-to-delta), and networks that do not keep
the batch in dimension 0. Non-elementwise nonlinearities that DeepLIFT's rescale rule does not
cover - products of two signals (squeeze-and-excitation, gated fusion), LayerNorm, GroupNorm, local
response normalisation, softmax - back-propagate their plain gradient, as in Captum; they are listed
by :func:`plain_nonlinearities`, and products of two signals are counted in the state, so that the
result can say so.
"""
from __future__ import annotations

from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import MethodUnavailableError

#: Where ``|x - x'|`` is below this the secant is replaced by the local gradient (Captum's ``eps``).
EPS = 1e-10


@dataclass
class RescaleState:
    """Per-call state of :func:`rescale_rule`: how many calls of each nonlinearity were routed."""

    calls: Counter = field(default_factory=Counter)
    #: products / quotients / matrix products of two signals (both depending on the input) seen in
    #: the forward: they back-propagate their gradient (no DeepLIFT rule), summation-to-delta is approximate
    products: int = 0

    @property
    def total(self) -> int:
        return sum(self.calls.values())


def _halves(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if t.ndim == 0 or t.shape[0] % 2:
        raise MethodUnavailableError("DeepLift pairs each input with its reference along the batch dimension, "
                                     f"but this network changes the batch (a tensor of shape {tuple(t.shape)})")
    return t.chunk(2)


def _local_gradient(pure: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``g'(x)`` of an elementwise function (one backward of its sum)."""
    with torch.enable_grad():
        xx = x.detach().requires_grad_(True)
        (d,) = torch.autograd.grad(pure(xx).sum(), xx)
    return d


class _Rescale(torch.autograd.Function):
    """``y = g(x)`` whose backward multiplies by the rescale multiplier of the pair (row i, row B+i)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, pure: Callable[[torch.Tensor], torch.Tensor],
                inplace: bool) -> torch.Tensor:
        xi, xr = _halves(x)
        dx = xi - xr
        y = pure(x)
        yi, yr = y.chunk(2)
        small = dx.abs() < EPS
        m = (yi - yr) / torch.where(small, torch.ones_like(dx), dx)
        if bool(small.any()):
            m = torch.where(small, _local_gradient(pure, xi), m)
        ctx.save_for_backward(m)
        if inplace:
            x.copy_(y)
            ctx.mark_dirty(x)
            return x
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Optional[torch.Tensor], None, None]:
        (m,) = ctx.saved_tensors
        g = grad.chunk(2)[0] * m
        return torch.cat([g, g]), None, None


class _MaxPoolRescale(torch.autograd.Function):
    """2-D max pooling with the max rule of the module docstring (shares summed over windows)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, kernel_size: Any, stride: Any, padding: Any, dilation: Any,
                ceil_mode: bool) -> tuple[torch.Tensor, torch.Tensor]:
        _halves(x)
        out, idx = torch.ops.aten.max_pool2d_with_indices(x, kernel_size, stride, padding, dilation, ceil_mode)
        ctx.save_for_backward(x, out, idx)
        ctx.mark_non_differentiable(idx)
        return out, idx

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor, _grad_idx: Any) -> tuple[Optional[torch.Tensor], ...]:
        x, out, idx = ctx.saved_tensors
        xi, xr = x.chunk(2)
        oi, orr = out.chunk(2)
        gi = grad.chunk(2)[0]
        top = torch.maximum(oi, orr)
        # shares of (o - o') at the argmax of x (first half) and of x' (second half), summed per position
        shares = torch.cat([gi * (top - orr), gi * (oi - top)])
        plain = torch.cat([gi, torch.zeros_like(gi)])
        n, c, h, w = x.shape
        flat = idx.flatten(2)
        spread = torch.zeros(n, c, h * w, dtype=x.dtype, device=x.device).scatter_add_(2, flat, shares.flatten(2))
        grad_x = torch.zeros(n, c, h * w, dtype=x.dtype, device=x.device).scatter_add_(2, flat, plain.flatten(2))
        si, sr = spread.view(n, c, h, w).chunk(2)
        dx = xi - xr
        small = dx.abs() < EPS
        m = torch.where(small, grad_x.view(n, c, h, w).chunk(2)[0],
                        (si + sr) / torch.where(small, torch.ones_like(dx), dx))
        return torch.cat([m, m]), None, None, None, None, None


# ---- which calls take which rule ---------------------------------------------------------------
@dataclass(frozen=True)
class _Elementwise:
    name: str
    pure: Callable[..., torch.Tensor]   # out-of-place version, called as pure(x, *rest, **kwargs)
    inplace_arg: Optional[int] = None   # position of an ``inplace`` argument, if any
    always_inplace: bool = False        # ``relu_`` and friends


def _table() -> dict[Any, _Elementwise]:
    aten = torch.ops.aten
    t: dict[Any, _Elementwise] = {}

    def add(funcs: tuple, spec: _Elementwise) -> None:
        for f in funcs:
            t[f] = spec

    add((F.relu,), _Elementwise("relu", F.relu, 1))
    add((torch.relu, torch.Tensor.relu, aten.relu.default), _Elementwise("relu", torch.relu))
    add((F.relu_, torch.relu_, torch.Tensor.relu_, aten.relu_.default),
        _Elementwise("relu", torch.relu, always_inplace=True))
    add((F.relu6,), _Elementwise("relu6", F.relu6, 1))
    add((F.hardtanh,), _Elementwise("hardtanh", F.hardtanh, 3))
    add((F.hardtanh_,), _Elementwise("hardtanh", F.hardtanh, always_inplace=True))
    add((aten.hardtanh.default,), _Elementwise("hardtanh", aten.hardtanh.default))
    add((aten.hardtanh_.default,), _Elementwise("hardtanh", aten.hardtanh.default, always_inplace=True))
    add((F.leaky_relu,), _Elementwise("leaky_relu", F.leaky_relu, 2))
    add((F.leaky_relu_,), _Elementwise("leaky_relu", F.leaky_relu, always_inplace=True))
    add((F.elu,), _Elementwise("elu", F.elu, 2))
    add((F.elu_,), _Elementwise("elu", F.elu, always_inplace=True))
    add((F.selu,), _Elementwise("selu", F.selu, 1))
    add((F.celu,), _Elementwise("celu", F.celu, 2))
    add((F.gelu, aten.gelu.default), _Elementwise("gelu", F.gelu))
    add((F.silu,), _Elementwise("silu", F.silu, 1))
    add((aten.silu.default,), _Elementwise("silu", F.silu))
    add((aten.silu_.default,), _Elementwise("silu", F.silu, always_inplace=True))
    add((F.mish,), _Elementwise("mish", F.mish, 1))
    add((F.softplus,), _Elementwise("softplus", F.softplus))
    add((F.hardswish,), _Elementwise("hardswish", F.hardswish, 1))
    add((aten.hardswish.default,), _Elementwise("hardswish", F.hardswish))
    add((aten.hardswish_.default,), _Elementwise("hardswish", F.hardswish, always_inplace=True))
    add((F.hardsigmoid,), _Elementwise("hardsigmoid", F.hardsigmoid, 1))
    add((aten.hardsigmoid.default,), _Elementwise("hardsigmoid", F.hardsigmoid))
    add((aten.hardsigmoid_.default,), _Elementwise("hardsigmoid", F.hardsigmoid, always_inplace=True))
    add((torch.sigmoid, torch.Tensor.sigmoid, F.sigmoid, aten.sigmoid.default), _Elementwise("sigmoid", torch.sigmoid))
    add((torch.sigmoid_, torch.Tensor.sigmoid_, aten.sigmoid_.default),
        _Elementwise("sigmoid", torch.sigmoid, always_inplace=True))
    add((torch.tanh, torch.Tensor.tanh, F.tanh, aten.tanh.default), _Elementwise("tanh", torch.tanh))
    add((torch.tanh_, torch.Tensor.tanh_, aten.tanh_.default), _Elementwise("tanh", torch.tanh, always_inplace=True))
    return t


_ELEMENTWISE = _table()
_MAXPOOL2D = {F.max_pool2d, F.max_pool2d_with_indices, torch.max_pool2d, torch.ops.aten.max_pool2d.default,
              torch.ops.aten.max_pool2d_with_indices.default}
_UNSUPPORTED = {F.max_pool1d: "1-D max pooling", F.max_pool1d_with_indices: "1-D max pooling",
                F.max_pool3d: "3-D max pooling", F.max_pool3d_with_indices: "3-D max pooling",
                torch.max_pool1d: "1-D max pooling", torch.max_pool3d: "3-D max pooling",
                F.adaptive_max_pool1d: "adaptive max pooling", F.adaptive_max_pool2d: "adaptive max pooling",
                F.adaptive_max_pool3d: "adaptive max pooling",
                F.fractional_max_pool2d: "fractional max pooling", F.fractional_max_pool3d: "fractional max pooling"}
_PRODUCTS = {torch.mul, torch.Tensor.mul, torch.Tensor.mul_, torch.Tensor.__mul__, torch.Tensor.__rmul__,
             torch.Tensor.__imul__, torch.div, torch.Tensor.div, torch.Tensor.div_, torch.Tensor.__truediv__,
             torch.Tensor.__itruediv__, torch.matmul, torch.Tensor.__matmul__, torch.bmm, torch.einsum,
             torch.ops.aten.mul.Tensor, torch.ops.aten.div.Tensor}
#: Modules whose nonlinearity DeepLIFT's rescale rule does not cover (plain gradient, reported).
PLAIN_NONLINEAR = (nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm, nn.Softmax, nn.MultiheadAttention)


_WITH_INDICES = {F.max_pool2d_with_indices, torch.ops.aten.max_pool2d_with_indices.default}


def _max_pool2d(func: Any, args: tuple, kwargs: dict) -> Any:
    names = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
    bound = dict(zip(names, args))
    bound.update(kwargs)
    x, k = bound["input"], bound["kernel_size"]
    stride = bound.get("stride") or k
    out, idx = _MaxPoolRescale.apply(x, k, stride, bound.get("padding", 0), bound.get("dilation", 1),
                                     bool(bound.get("ceil_mode", False)))
    return (out, idx) if func in _WITH_INDICES or bound.get("return_indices", False) else out


class _RescaleMode(TorchFunctionMode):
    def __init__(self, state: RescaleState) -> None:
        super().__init__()
        self.state = state

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = dict(kwargs or {})
        spec = _ELEMENTWISE.get(func)
        if spec is not None:
            rest = list(args[1:])
            x = args[0] if args else kwargs.pop("input")
            inplace = spec.always_inplace
            if spec.inplace_arg is not None:
                pos = spec.inplace_arg - 1
                if len(rest) > pos:
                    inplace, rest = bool(rest[pos]), rest[:pos] + rest[pos + 1:]
                else:
                    inplace = bool(kwargs.pop("inplace", False))
            if not isinstance(x, torch.Tensor) or not x.is_floating_point():
                return func(*args, **(kwargs or {}))
            self.state.calls[spec.name] += 1

            def pure(t: torch.Tensor, _f=spec.pure, _rest=tuple(rest), _kw=kwargs) -> torch.Tensor:
                return _f(t, *_rest, **_kw)

            return _Rescale.apply(x, pure, inplace)
        if func in _MAXPOOL2D:
            self.state.calls["max_pool2d"] += 1
            return _max_pool2d(func, args, kwargs)
        if func in _PRODUCTS and sum(isinstance(a, torch.Tensor) and a.requires_grad for a in args) >= 2:
            self.state.products += 1
        if func in _UNSUPPORTED:
            raise MethodUnavailableError(f"DeepLift has no rule for {_UNSUPPORTED[func]} (only 2-D max pooling); "
                                         "the plain gradient would break summation-to-delta")
        return func(*args, **kwargs)


@contextmanager
def rescale_rule(state: Optional[RescaleState] = None) -> Iterator[RescaleState]:
    """Forwards inside the block (on ``cat([inputs, references])``) back-propagate DeepLIFT
    multipliers: the rescale rule on elementwise nonlinearities, the max rule on 2-D max pooling,
    plain gradients elsewhere. Thread-local; nothing is registered on the model, so nothing is left
    behind when the block exits (normally or by an exception)."""
    state = state or RescaleState()
    with _RescaleMode(state):
        yield state


def plain_nonlinearities(model: nn.Module) -> list[str]:
    """Type names of modules in ``model`` whose nonlinearity back-propagates plainly under the rule."""
    return sorted({type(m).__name__ for m in model.modules() if isinstance(m, PLAIN_NONLINEAR)})
