"""Layer-wise relevance propagation (Bach et al. 2015; Montavon et al. 2019) with Zennit's rules,
composites and canonizers, as a per-call modified backward.

LRP explains the target logit ``f_c(x)`` by propagating *relevance* from the output back to the
pixels, layer by layer, each layer redistributing the relevance of its outputs onto its inputs in
proportion to their contributions. Here this is the *modified-gradient trick*: during one forward
inside :func:`lrp_hooks`, the output of every linear layer (convolution or dense, with the BatchNorm
after it merged in) is routed through an autograd function whose backward returns the layer's
input relevance ``R_in`` given its output relevance ``R_out`` (what ``torch.autograd.grad`` carries
is relevance, not gradient). Seeding the backward with ``f_c(x)`` at the target logit gives the
relevance of every input pixel, ``(3, H, W)``, whose sum is about ``f_c(x)`` (exactly, up to the
stabilizers, when no layer has a bias).

Rules (Zennit's names; ``z = W x + b``, ``s = R_out / stab(z)``, ``stab(z) = z + eps * sign(z)``
with ``sign(0) = 1``, transposes ``W^T s`` by the layer's own backward):

* **Epsilon** (Bach et al. 2015): ``R_in = x * W^T s``, ``eps = epsilon`` (0: LRP-0).
* **Gamma** (Montavon et al. 2019), generalised to signed inputs as Zennit 0.5 does: positive
  outputs are explained by the contributions ``W x`` plus ``gamma`` times their positive part
  ``W+ x+ + W- x- + b+``, negative outputs by ``W x`` plus ``gamma`` times their negative part.
* **AlphaBeta** (Bach et al. 2015): ``alpha`` times the relevance of the positive contributions
  ``W+ x+ + W- x- + b+`` minus ``beta`` times that of the negative ones ``W- x+ + W+ x- + b-``
  (``alpha - beta = 1`` conserves relevance).
* **ZBox** (the z^B rule of Montavon et al.'s 2017 deep Taylor decomposition) for the first layer,
  the pixels bounded by ``low <= x <= high``: ``R_in = x * W^T s - low * W+^T s - high * W-^T s``
  with ``s = R_out / stab(W x - W+ low - W- high)``; ``low`` / ``high``: the normalized black and
  white images.
* **Norm** (average pooling, the residual sum): ``R_in = x * P^T (R_out / stab(P x))``.
* ReLU, max pooling, flatten, dropout (eval), concatenation and slicing keep their plain gradient:
  for them it equals Zennit's Pass rule / winner-take-all (a ReLU's zero outputs carry no relevance,
  since every rule above multiplies by the input).
Non-Epsilon rules use Zennit's fixed stabilizer ``1e-6``.

Composites (Zennit's defaults):

* ``lrp_epsilon``: **Epsilon on every convolution and dense layer**, the first one included (plain
  LRP-epsilon; Zennit has no named composite for it, it is a ``LayerMapComposite`` of its
  ``Epsilon`` rule over its base layer map).
* ``lrp_gamma``: Zennit's **EpsilonGammaBox** - ZBox on the first convolution (black..white
  bounds), Gamma on every other convolution, Epsilon on dense layers.
* ``lrp_alpha_beta``: Zennit's **EpsilonAlpha2Beta1** - AlphaBeta on every convolution (the first
  one included; Zennit's ``...Flat`` variant would use the Flat rule there), Epsilon on dense layers.

Canonizers (Zennit's ``SequentialMergeBatchNorm`` and ``ResNetCanonizer``), without touching the
shared model: a BatchNorm that directly follows a convolution / dense layer is merged into it -
the rule runs on the folded weights ``W * g / sqrt(v + e)`` and bias ``(b - m) * g / sqrt(v + e) +
beta``, computed inside the hooks for this call; the residual addition of torchvision's
``BasicBlock`` / ``Bottleneck`` is treated as a layer of its own (the Norm rule splits the block's
relevance between the residual branch and the shortcut in proportion to their values).

Supported: ReLU CNNs of ``Conv2d`` (zero padding), ``Linear``, BatchNorm merged as above, ReLU,
max / average pooling, ``Flatten``, ``Dropout``, ``Identity``, with forward code that only
flattens, reshapes, slices, concatenates or applies ReLU / max pooling, plus torchvision ResNet
blocks: AlexNet, VGG (with and without BN), ResNet, SqueezeNet, GoogLeNet without
``transform_input``, our shapes CNN without gated fusion (``shapes-cnn-biased``). Anything else
raises :class:`~cnnviz_core.errors.MethodUnavailableError` naming it, rather than giving a silently
wrong map: a BatchNorm not right after a linear layer (DenseNet), other activations (MobileNet,
EfficientNet, ConvNeXt), LayerNorm, LRN (ZFNet), products of two signals (squeeze-and-excitation,
our gated fusion), GoogLeNet's input transform, additions outside ResNet blocks.
The hooks live only for the forward of one call, under ``handle.lock``, and are removed on every
path (:func:`lrp_hooks`); the rule state lives in that call's :class:`LRPState`.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Literal, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import MethodUnavailableError, ParameterError, one_line
from .passes import PassContext
from .registry import Computed, Paper, Params, Product, register

P = Product
#: Stabilizer of every rule except Epsilon (Zennit's default).
STABILIZER = 1e-6
RuleKind = Literal["epsilon", "gamma", "alphabeta", "zbox"]


# ---- rules --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    """One LRP rule and its parameters (``epsilon`` is only used by the Epsilon rule)."""

    kind: RuleKind
    epsilon: float = 1e-6
    gamma: float = 0.25
    alpha: float = 2.0
    beta: float = 1.0

    def describe(self) -> str:
        if self.kind == "epsilon":
            return f"Epsilon(epsilon={self.epsilon:g})"
        if self.kind == "gamma":
            return f"Gamma(gamma={self.gamma:g})"
        if self.kind == "alphabeta":
            return f"AlphaBeta(alpha={self.alpha:g}, beta={self.beta:g})"
        return "ZBox(low=black, high=white)"


@dataclass(frozen=True)
class Composite:
    """Which rule each layer gets: ``conv`` for convolutions, ``linear`` for dense layers, ``first``
    for the first convolution of the forward (None: ``conv`` there too). ``name``: Zennit's name."""

    name: str
    conv: Rule
    linear: Rule
    first: Optional[Rule] = None

    def describe(self) -> dict[str, str]:
        return {"composite": self.name, "first_layer_rule": (self.first or self.conv).describe(),
                "conv_rule": self.conv.describe(), "dense_rule": self.linear.describe()}


def stabilize(z: torch.Tensor, eps: float) -> torch.Tensor:
    """``z + eps * sign(z)`` with ``sign(0) = +1`` (Zennit's stabilizer)."""
    return z + eps * ((z == 0).to(z) + z.sign())


@dataclass
class _Affine:
    """A convolution or dense layer with its (possibly BatchNorm-folded) weight and bias."""

    module: nn.Module
    weight: torch.Tensor
    bias: torch.Tensor

    @property
    def is_conv(self) -> bool:
        return isinstance(self.module, nn.Conv2d)

    def forward(self, x: torch.Tensor, w: torch.Tensor, b: Optional[torch.Tensor]) -> torch.Tensor:
        m = self.module
        if isinstance(m, nn.Conv2d):
            return F.conv2d(x, w, b, m.stride, m.padding, m.dilation, m.groups)
        return F.linear(x, w, b)

    def transpose(self, s: torch.Tensor, w: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        """``W^T s``: the layer's backward of ``s`` for weight ``w``, input shape ``shape``."""
        m = self.module
        if isinstance(m, nn.Conv2d):
            return torch.nn.grad.conv2d_input(shape, w, s, m.stride, m.padding, m.dilation, m.groups)
        return s @ w


def _relevance(rule: Rule, layer: _Affine, x: torch.Tensor, r: torch.Tensor,
               bounds: Optional[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Input relevance of ``layer`` under ``rule`` for input ``x`` and output relevance ``r``."""
    w, b = layer.weight, layer.bias
    fwd, tr = layer.forward, layer.transpose
    if rule.kind == "epsilon":
        s = r / stabilize(fwd(x, w, b), rule.epsilon)
        return x * tr(s, w, x.shape)
    wp, wn, bp, bn = w.clamp(min=0), w.clamp(max=0), b.clamp(min=0), b.clamp(max=0)
    if rule.kind == "zbox":
        assert bounds is not None
        low, high = (v.expand_as(x).to(x) for v in bounds)
        s = r / stabilize(fwd(x, w, b) - fwd(low, wp, bp) - fwd(high, wn, bn), STABILIZER)
        return x * tr(s, w, x.shape) - low * tr(s, wp, x.shape) - high * tr(s, wn, x.shape)
    xp, xn = x.clamp(min=0), x.clamp(max=0)
    if rule.kind == "gamma":
        g = rule.gamma
        w_up, w_down = w + g * wp, w + g * wn
        z = fwd(x, w, b)
        s_up = (z > 0).to(r) * r / stabilize(fwd(xp, w_up, b + g * bp) + fwd(xn, w_down, None), STABILIZER)
        s_down = (z < 0).to(r) * r / stabilize(fwd(xp, w_down, b + g * bn) + fwd(xn, w_up, None), STABILIZER)
        return (xp * (tr(s_up, w_up, x.shape) + tr(s_down, w_down, x.shape))
                + xn * (tr(s_up, w_down, x.shape) + tr(s_down, w_up, x.shape)))
    # alpha-beta
    s_pos = r / stabilize(fwd(xp, wp, bp) + fwd(xn, wn, None), STABILIZER)
    s_neg = r / stabilize(fwd(xp, wn, bn) + fwd(xn, wp, None), STABILIZER)
    positive = xp * tr(s_pos, wp, x.shape) + xn * tr(s_pos, wn, x.shape)
    negative = xp * tr(s_neg, wn, x.shape) + xn * tr(s_neg, wp, x.shape)
    return rule.alpha * positive - rule.beta * negative


def _norm_relevance(pool: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Norm rule of a parameter-free linear map ``pool`` (average pooling)."""
    with torch.enable_grad():
        xx = x.detach().requires_grad_(True)
        z = pool(xx)
        (t,) = torch.autograd.grad(z, xx, r / stabilize(z.detach(), STABILIZER))
    return x * t


class _RelevanceFunction(torch.autograd.Function):
    """Forward: the layer's own output ``value``; backward: ``relevance_fn(x, R_out)`` to ``x``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, value: torch.Tensor,  # type: ignore[override]
                relevance_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.relevance_fn = relevance_fn
        return value.clone()

    @staticmethod
    def backward(ctx: Any, r: torch.Tensor) -> tuple[Optional[torch.Tensor], None, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return ctx.relevance_fn(x.detach(), r), None, None


class _ResidualSum(torch.autograd.Function):
    """Forward: the block's output ``value`` (= ReLU(branch + shortcut)); backward: the Norm rule
    of the addition, ``R_branch = branch * R / stab(sum)``, ``R_shortcut = shortcut * R / stab(sum)``
    (the final ReLU passes relevance unchanged)."""

    @staticmethod
    def forward(ctx: Any, branch: torch.Tensor, shortcut: torch.Tensor,  # type: ignore[override]
                value: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(branch, shortcut)
        return value.clone()

    @staticmethod
    def backward(ctx: Any, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:  # type: ignore[override]
        branch, shortcut = ctx.saved_tensors
        s = r / stabilize(branch + shortcut, STABILIZER)
        return branch * s, shortcut * s, None


# ---- the model's structure ----------------------------------------------------------------------
_AFFINE = (nn.Conv2d, nn.Linear)
_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d)
_AVGPOOL = (nn.AvgPool2d, nn.AdaptiveAvgPool2d)
_PLAIN = (nn.ReLU, nn.MaxPool2d, nn.AdaptiveMaxPool2d, nn.Flatten, nn.Dropout, nn.Identity)
#: Functions that forward code outside the leaf modules may call: relevance passes them unchanged.
_PLAIN_FUNCTIONS = frozenset({
    "flatten", "reshape", "view", "view_as", "squeeze", "unsqueeze", "contiguous", "cat", "concat",
    "concatenate", "relu", "relu_", "max_pool2d", "max_pool2d_with_indices", "adaptive_max_pool2d",
    "adaptive_max_pool2d_with_indices", "dropout", "__getitem__", "size", "dim", "numel", "__get__",
    "__len__", "__format__", "__bool__", "is_floating_point", "to", "float", "clone", "expand", "expand_as",
})
_RESIDUAL_FUNCTIONS = frozenset({"__iadd__", "__add__", "add", "add_", "__radd__"})


def _residual_blocks() -> tuple[type, ...]:
    from torchvision.models.resnet import BasicBlock, Bottleneck

    return (BasicBlock, Bottleneck)


@dataclass
class _Plan:
    """What the hooks do, from the module tree: BatchNorm -> the linear layer it merges into, the
    residual blocks by their last BatchNorm and their shortcut, module names for messages."""

    merges: dict[nn.Module, nn.Module]
    merged_into: set[nn.Module]
    blocks: dict[nn.Module, nn.Module]   # last BatchNorm of the residual branch -> its block
    downsamples: dict[nn.Module, nn.Module]  # shortcut module -> its block
    names: dict[nn.Module, str]
    leaves: frozenset[nn.Module]


def _unavailable(key: str, what: str) -> MethodUnavailableError:
    return MethodUnavailableError(one_line(
        f"{key}: {what}; LRP here covers ReLU CNNs of Conv2d / Linear / BatchNorm (right after a conv or "
        "dense layer) / pooling layers and torchvision ResNet blocks"))


def plan_model(model: nn.Module) -> _Plan:
    """Pair each BatchNorm with the convolution / dense layer right before it in module order
    (Zennit's ``SequentialMergeBatchNorm``) and find the residual blocks. Which modules no rule
    covers is decided during the forward, from the modules actually called."""
    names = {m: n for n, m in model.named_modules()}
    leaves = [m for m in names if _is_leaf(m)]
    merges: dict[nn.Module, nn.Module] = {}
    for previous, m in zip([None, *leaves], leaves):
        if isinstance(m, _BATCHNORM) and isinstance(previous, _AFFINE):
            merges[m] = previous
    blocks: dict[nn.Module, nn.Module] = {}
    downsamples: dict[nn.Module, nn.Module] = {}
    basic, bottleneck = _residual_blocks()
    for m in names:
        if isinstance(m, (basic, bottleneck)):
            blocks[m.bn3 if isinstance(m, bottleneck) else m.bn2] = m
            if m.downsample is not None:
                downsamples[m.downsample] = m
    return _Plan(merges, set(merges.values()), blocks, downsamples, names, frozenset(leaves))


def _check_leaf(st: "LRPState", m: nn.Module) -> None:
    """Refuse a leaf module, called by the forward, that no rule covers."""
    name = st.plan.names.get(m) or type(m).__name__
    if isinstance(m, nn.Conv2d) and m.padding_mode != "zeros":
        raise _unavailable(st.key, f"{name} pads with {m.padding_mode!r}, not zeros")
    if isinstance(m, _BATCHNORM):
        if m.running_mean is None or m.running_var is None:
            raise _unavailable(st.key, f"BatchNorm {name} keeps no running statistics")
        if m not in st.plan.merges:
            raise _unavailable(st.key, f"BatchNorm {name} does not follow a convolution or dense layer, so it "
                                       "cannot be merged into one")
    elif not isinstance(m, _AFFINE + _AVGPOOL + _PLAIN):
        raise _unavailable(st.key, f"no LRP rule for {type(m).__name__} ({name})")


def _folded(linear: nn.Module, bn: Optional[nn.Module]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W, b)`` of ``linear`` with ``bn`` (eval mode) folded in, detached; bias 0 if absent."""
    w = linear.weight.detach()
    b = linear.bias.detach() if linear.bias is not None else torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)
    if bn is None:
        return w, b
    scale = (bn.running_var + bn.eps).rsqrt()
    if bn.weight is not None:
        scale = scale * bn.weight.detach()
    shift = bn.bias.detach() if bn.bias is not None else torch.zeros_like(scale)
    return w * scale.view(-1, *([1] * (w.ndim - 1))), (b - bn.running_mean) * scale + shift


# ---- the per-call hooks -------------------------------------------------------------------------
@dataclass
class LRPState:
    """Per-call state of :func:`lrp_hooks` (never on the model): the open modules of the forward,
    the linear outputs waiting for their BatchNorm, residual branches and shortcuts, counts."""

    composite: Composite
    x_in: torch.Tensor
    bounds: Optional[tuple[torch.Tensor, torch.Tensor]]
    key: str
    plan: _Plan
    stack: list[nn.Module] = field(default_factory=list)
    internal: int = 0
    seen_affine: bool = False
    pending: dict[nn.Module, tuple[torch.Tensor, torch.Tensor, bool]] = field(default_factory=dict)
    branch: dict[nn.Module, torch.Tensor] = field(default_factory=dict)
    shortcut: dict[nn.Module, torch.Tensor] = field(default_factory=dict)
    block_input: dict[nn.Module, torch.Tensor] = field(default_factory=dict)
    layers: int = 0
    merged: int = 0
    residual: int = 0

    def rule_for(self, layer: _Affine, first: bool) -> Rule:
        if first and layer.is_conv and self.composite.first is not None:
            return self.composite.first
        return self.composite.conv if layer.is_conv else self.composite.linear


class _Watch(TorchFunctionMode):
    """Refuses functions that forward code outside the leaf modules calls and that no rule covers
    (an addition outside a residual block, a product, a normalisation...)."""

    def __init__(self, state: LRPState) -> None:
        super().__init__()
        self.state = state

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        st = self.state
        if st.internal == 0 and st.stack:
            owner = st.stack[-1]
            if owner not in st.plan.leaves:
                name = getattr(func, "__name__", str(func))
                residual = owner in st.plan.blocks.values() and name in _RESIDUAL_FUNCTIONS
                if name not in _PLAIN_FUNCTIONS and not residual:
                    path = st.plan.names.get(owner)
                    where = f"{type(owner).__name__} ({path})" if path else f"the model ({type(owner).__name__})"
                    raise _unavailable(st.key, f"no LRP rule for the function {name!r} in the forward of {where}")
        return func(*args, **(kwargs or {}))


def _is_leaf(m: nn.Module) -> bool:
    return not any(True for _ in m.children())


def _layer_output(st: LRPState, linear: nn.Module, bn: Optional[nn.Module], x: torch.Tensor,
                  out: torch.Tensor, first: bool) -> torch.Tensor:
    layer = _Affine(linear, *_folded(linear, bn))
    rule = st.rule_for(layer, first)
    if rule.kind == "zbox" and x is not st.x_in:
        raise _unavailable(st.key, f"the first layer ({st.plan.names.get(linear)}) does not read the model's input "
                                   "directly, so the pixel bounds of the ZBox rule do not apply to it")
    bounds = st.bounds

    def relevance(xx: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return _relevance(rule, layer, xx, r, bounds)

    st.layers += 1
    return _RelevanceFunction.apply(x, out.detach(), relevance)


def _make_hooks(st: LRPState) -> tuple[Callable, Callable]:
    """The forward pre-hook and hook every module of the model gets for one call."""
    plan = st.plan
    basic_bottleneck = _residual_blocks()

    def pre(module: nn.Module, inputs: tuple) -> None:
        st.stack.append(module)
        if module in plan.leaves:
            _check_leaf(st, module)
        if isinstance(module, basic_bottleneck):
            st.block_input[module] = inputs[0]
        if module in plan.merges:
            linear = plan.merges[module]
            pending = st.pending.get(linear)
            if pending is None or inputs[0] is not pending[1]:
                raise _unavailable(st.key, f"BatchNorm {plan.names[module]} does not take the output of "
                                           f"{plan.names[linear]} directly, so it cannot be merged into it")

    def post(module: nn.Module, inputs: tuple, out: Any) -> Any:
        st.internal += 1
        try:
            return _post(module, inputs, out)
        finally:
            st.internal -= 1
            st.stack.pop()

    def _post(module: nn.Module, inputs: tuple, out: Any) -> Any:
        if not isinstance(out, torch.Tensor):
            if module in plan.leaves or isinstance(module, basic_bottleneck):
                raise _unavailable(st.key, f"{plan.names.get(module)} returns {type(out).__name__}, not a tensor")
            return None
        x = inputs[0] if inputs else None
        if isinstance(module, _AFFINE):
            first = not st.seen_affine
            st.seen_affine = True
            if module in plan.merged_into:
                st.pending[module] = (x, out, first)
                return None
            return _layer_output(st, module, None, x, out, first)
        if module in plan.merges:
            x_lin, _, first = st.pending.pop(plan.merges[module])
            st.merged += 1
            result = _layer_output(st, plan.merges[module], module, x_lin, out, first)
            block = plan.blocks.get(module)
            if block is not None:  # the block adds its shortcut to this tensor in place: hand it a copy
                st.branch[block] = result
                return result.clone()
            return result
        if isinstance(module, _AVGPOOL):
            pool = _pool_function(module)
            return _RelevanceFunction.apply(x, out.detach(), lambda xx, r: _norm_relevance(pool, xx, r))
        if isinstance(module, basic_bottleneck):
            branch = st.branch.pop(module, None)
            if branch is None:
                raise _unavailable(st.key, f"the residual branch of {plan.names[module]} did not end in its last "
                                           "BatchNorm")
            shortcut = st.shortcut.pop(module, st.block_input.pop(module))
            st.residual += 1
            return _ResidualSum.apply(branch, shortcut, out.detach())
        if module in plan.downsamples:
            st.shortcut[plan.downsamples[module]] = out
        return None

    return pre, post


def _pool_function(m: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return lambda t: F.adaptive_avg_pool2d(t, m.output_size)
    return lambda t: F.avg_pool2d(t, m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad,
                                  m.divisor_override)


@contextmanager
def lrp_hooks(model: nn.Module, composite: Composite, x_in: torch.Tensor,
              bounds: Optional[tuple[torch.Tensor, torch.Tensor]] = None, key: str = "lrp") -> Iterator[LRPState]:
    """Forwards of ``model`` on ``x_in`` inside the block return the model's own values, but their
    backward (``torch.autograd.grad(logits, x_in, seed)``, taken after the block) carries LRP
    relevance under ``composite``. ``bounds``: ``(low, high)`` of the input for the ZBox rule. The
    hooks are registered on entry and removed on every exit; the caller holds the model's lock.
    Raises :class:`MethodUnavailableError` for models or forward code that no rule covers."""
    plan = plan_model(model)
    state = LRPState(composite, x_in, bounds, key, plan)
    handles = []
    try:
        pre, post = _make_hooks(state)
        for m in plan.names:
            handles.append(m.register_forward_pre_hook(pre))
            handles.append(m.register_forward_hook(post))
        with _Watch(state):
            yield state
        if state.pending:  # a layer waited for a BatchNorm that never took its output: no rule ran on it
            linear = next(iter(state.pending))
            raise _unavailable(key, f"the output of {plan.names.get(linear)} does not go through the BatchNorm "
                                    "after it in module order, so the layer got no rule")
    finally:
        for h in handles:
            h.remove()


def lrp_relevance(model: nn.Module, x: torch.Tensor, targets: torch.Tensor, composite: Composite,
                  bounds: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
                  key: str = "lrp") -> tuple[torch.Tensor, torch.Tensor, LRPState]:
    """``(relevance (N, 3, H, W), logits (N, K), state)``: LRP of each image's ``targets[n]`` logit,
    the output relevance seeded with that logit's value. The caller holds the model's lock."""
    x_in = x.detach().requires_grad_(True)
    with torch.enable_grad():
        with lrp_hooks(model, composite, x_in, bounds, key) as state:
            logits = model(x_in)
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
            raise _unavailable(key, "the model's output is not an (N, classes) tensor")
        seed = torch.zeros_like(logits)
        rows = torch.arange(logits.shape[0], device=logits.device)
        seed[rows, targets] = logits.detach()[rows, targets]
        if not logits.requires_grad:
            raise _unavailable(key, "the output does not depend on the input through hookable layers")
        (relevance,) = torch.autograd.grad(logits, x_in, seed)
    return relevance.detach(), logits.detach(), state


# ---- parameters and methods ---------------------------------------------------------------------
def _number(name: str, value: Any, *, minimum: float = 0.0) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be a number, got {value!r}") from None
    if not np.isfinite(v) or v < minimum:
        raise ParameterError(f"{name} must be a finite number >= {minimum:g}, got {value!r}")
    return v


@dataclass(frozen=True)
class LRPEpsilonParams(Params):
    """``epsilon``: the Epsilon rule's stabilizer, added to each denominator with its sign (Zennit's
    default 1e-6, about LRP-0; larger values, 0.01-1, absorb weak and contradictory relevance)."""

    epsilon: float = 1e-6

    def __post_init__(self) -> None:
        self._set("epsilon", _number("epsilon", self.epsilon))


@dataclass(frozen=True)
class LRPGammaParams(LRPEpsilonParams):
    """``epsilon`` of the dense layers' Epsilon rule, ``gamma``: how much the convolutions' Gamma
    rule favours positive contributions (Zennit's default 0.25; 0 is LRP-0)."""

    gamma: float = 0.25

    def __post_init__(self) -> None:
        super().__post_init__()
        self._set("gamma", _number("gamma", self.gamma))


@dataclass(frozen=True)
class LRPAlphaBetaParams(LRPEpsilonParams):
    """``epsilon`` of the dense layers' Epsilon rule, ``alpha`` / ``beta``: weights of the positive
    and negative contributions in the convolutions (``alpha - beta = 1``; default 2 and 1)."""

    alpha: float = 2.0
    beta: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        alpha, beta = _number("alpha", self.alpha), _number("beta", self.beta)
        if abs(alpha - beta - 1.0) > 1e-9:
            raise ParameterError(f"lrp_alpha_beta needs alpha - beta = 1 (relevance conservation), "
                                 f"got alpha={self.alpha!r}, beta={self.beta!r}")
        self._set("alpha", alpha)
        self._set("beta", beta)


def composite_for(key: str, p: Params) -> Composite:
    """The composite of method ``key`` with parameters ``p`` (see the module docstring)."""
    eps = Rule("epsilon", epsilon=p.epsilon)  # type: ignore[attr-defined]
    if key == "lrp_epsilon":
        return Composite("Epsilon (LayerMapComposite)", conv=eps, linear=eps)
    if key == "lrp_gamma":
        return Composite("EpsilonGammaBox", conv=Rule("gamma", gamma=p.gamma), linear=eps,  # type: ignore[attr-defined]
                         first=Rule("zbox"))
    if key == "lrp_alpha_beta":
        return Composite("EpsilonAlpha2Beta1", linear=eps,
                         conv=Rule("alphabeta", alpha=p.alpha, beta=p.beta))  # type: ignore[attr-defined]
    raise KeyError(key)


def _lrp(ctx: PassContext, p: Params, key: str) -> Computed:
    if not ctx.handle.hookable:
        raise MethodUnavailableError(f"{key} cannot run on a TorchScript program: its layers take no hooks; "
                                     "load a state_dict")
    target = ctx.resolved_target()
    composite = composite_for(key, p)
    bounds = None
    if composite.first is not None and composite.first.kind == "zbox":
        corner = torch.zeros(1, 3, 1, 1, dtype=ctx.x.dtype, device=ctx.x.device)
        bounds = (ctx.handle.normalize(corner), ctx.handle.normalize(corner + 1))
    with ctx.handle.lock:
        relevance, logits, state = lrp_relevance(ctx.model, ctx.x, torch.tensor([target], device=ctx.x.device),
                                                 composite, bounds, key)
    info: dict[str, Any] = {**composite.describe(), "relevance_sum": float(relevance.sum()),
                            "logit": float(logits[0, target]), "layers": state.layers,
                            "batchnorms_merged": state.merged, "residual_sums": state.residual}
    return Computed(raw=relevance[0], info=info)


_BACH = Paper("Bach et al.", 2015, "On Pixel-Wise Explanations for Non-Linear Classifier Decisions by Layer-Wise "
              "Relevance Propagation", "https://doi.org/10.1371/journal.pone.0130140")
_MONTAVON = Paper("Montavon et al.", 2019, "Layer-Wise Relevance Propagation: An Overview",
                  "https://doi.org/10.1007/978-3-030-28954-6_10")
_COST = "1 forward + 1 relevance backward (several convolutions per layer)"


@register("lrp_epsilon", display_name="LRP-epsilon", paper=_BACH, family="gradient", passes=(P.LOGITS,),
          needs=("gradients", "relu"), cost=_COST, class_discriminative=True, params=LRPEpsilonParams)
def lrp_epsilon(ctx: PassContext, p: LRPEpsilonParams) -> Computed:
    """LRP with Zennit's Epsilon rule on every convolution and dense layer (Bach et al. 2015), BatchNorm
    merged, ResNet additions as layers. Output ``(3, H, W)`` float32: signed relevance per input
    value, not rescaled, summing to about the target logit (``info["relevance_sum"]``)."""
    return _lrp(ctx, p, "lrp_epsilon")


@register("lrp_gamma", display_name="LRP-gamma (EpsilonGammaBox)", paper=_MONTAVON, family="gradient",
          passes=(P.LOGITS,), needs=("gradients", "relu"), cost=_COST, class_discriminative=True,
          params=LRPGammaParams)
def lrp_gamma(ctx: PassContext, p: LRPGammaParams) -> Computed:
    """LRP with Zennit's EpsilonGammaBox composite (Montavon et al. 2019): ZBox on the first
    convolution (bounds: the normalized black and white images), Gamma on the other convolutions,
    Epsilon on dense layers. Output ``(3, H, W)`` float32 signed relevance, not rescaled."""
    return _lrp(ctx, p, "lrp_gamma")


@register("lrp_alpha_beta", display_name="LRP-alpha-beta (EpsilonAlpha2Beta1)", paper=_BACH, family="gradient",
          passes=(P.LOGITS,), needs=("gradients", "relu"), cost=_COST, class_discriminative=True,
          params=LRPAlphaBetaParams)
def lrp_alpha_beta(ctx: PassContext, p: LRPAlphaBetaParams) -> Computed:
    """LRP with Zennit's EpsilonAlpha2Beta1 composite (Bach et al. 2015): AlphaBeta
    (``alpha``, ``beta``) on every convolution, Epsilon on dense layers. Output ``(3, H, W)``
    float32 signed relevance, not rescaled."""
    return _lrp(ctx, p, "lrp_alpha_beta")
