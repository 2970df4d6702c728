"""The shared passes: one forward (+ the backwards it needs) feeds every method of a request.

A :class:`PassContext` lives for ONE ``explain`` call (never on the model or the handle). Before
computing, the caller declares the union of the products the requested methods use
(:meth:`PassContext.plan`); the first product asked for then runs a single main pass:

* no gradient needed -> one forward under ``torch.inference_mode`` with the layer output captured;
* gradients needed -> one forward (under :func:`~cnnviz_core.hooks.relu_backward_rule` only when a
  guided/deconvnet gradient is wanted), then ``torch.autograd.grad`` of the target score once per
  ReLU rule, ``retain_graph`` between them: rule "plain" to the layer output (CAM family) and the
  input (saliency) together, "guided" to the input, "deconvnet" to the input. A gradient to the
  layer only back-propagates through the part of the network after the layer. When nothing asks
  for an input gradient, the input does not require grad and the captured layer output is a leaf,
  so the backward stops at the layer (the "CAM floor").

The layer output is always captured with ``differentiable=True``: the rest of the network gets a
clone, so in-place ops after the layer never change the captured activation.

The pass itself is :func:`shared_pass`, written for a batch of N images (the audit runs it on whole
batches, see :mod:`cnnviz_core.audit.batched`); a :class:`PassContext` runs it with N = 1, or is
handed products already computed (``given``: one image's slice of a batched pass).

**Unit targets** (:class:`~.targets.ChannelTarget`, :class:`~.targets.NeuronTarget`) run
:func:`unit_pass` instead: one forward *truncated* right after the unit's layer (nothing past it is
computed, :func:`~cnnviz_core.hooks.capture` with ``stop_at``), then one backward of the unit's
scalar per ReLU rule, exactly as for a class. A neuron given without a position is resolved on
that forward (the channel's strongest activation, per image).

Parameters of the shared model stay frozen: gradients go through ``autograd.grad`` to activations
and inputs only, so no parameter ever gets a ``.grad``. Everything runs under ``handle.lock``.
"""
from __future__ import annotations

import hashlib
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Iterable, Mapping, Optional, Union

import torch

from ..errors import MethodUnavailableError, ParameterError
from ..hooks import ReluState, StopForward, capture, forward_until, non_relu_activations, relu_backward_rule
from ..models import ModelHandle
from ..progress import CancelToken, ProgressFn
from .registry import Product
from .targets import ChannelTarget, ClassTarget, NeuronTarget, Target, UnitTarget, as_target, is_unit

P = Product
INPUT_PRODUCTS = frozenset({P.INPUT_GRAD, P.GUIDED, P.DECONVNET})
GRADIENT_PRODUCTS = frozenset({P.LAYER_GRAD}) | INPUT_PRODUCTS
LAYER_PRODUCTS = frozenset({P.ACTIVATION, P.LAYER_GRAD})
#: Everything :func:`shared_pass` computes (the products a method can declare in ``passes``).
SHARED_PRODUCTS = frozenset({P.LOGITS}) | GRADIENT_PRODUCTS | LAYER_PRODUCTS
#: What :func:`unit_pass` computes for a unit target (``activation`` = the unit layer's output).
UNIT_PRODUCTS = frozenset({P.ACTIVATION}) | INPUT_PRODUCTS


def input_digest(x: torch.Tensor) -> str:
    """A content hash of an input tensor (values, shape, dtype) used in cache keys."""
    t = x.detach().to("cpu").contiguous()
    h = hashlib.blake2b(t.numpy().tobytes(), digest_size=16)
    h.update(f"{tuple(t.shape)}|{t.dtype}".encode())
    return h.hexdigest()


class PassContext:
    """Per-call state of one explanation request: input, layer, target and the shared products.

    ``x``: ``(1, 3, H, W)`` normalized input on the model's device. ``target``: a class index
    (``None``: the top-1 prediction, resolved by the first forward) or a typed target of
    :mod:`.targets`. ``target`` (attribute) stays the class index (``None`` for unit targets);
    ``unit`` is the unit target, its neuron position resolved by the first pass.
    """

    def __init__(self, handle: ModelHandle, x: torch.Tensor, layer: str, target: Union[None, int, Target], *,
                 progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None,
                 given: Optional[Mapping[str, torch.Tensor]] = None, relu_calls: Optional[int] = None) -> None:
        self.handle = handle
        self.model = handle.model
        self.x = x
        self.layer = layer
        spec = as_target(target)
        self.unit: Optional[UnitTarget] = spec if is_unit(spec) else None
        self.target: Optional[int] = spec.index if isinstance(spec, ClassTarget) else None
        self.progress = progress
        self.cancel = cancel
        self.relu_calls = relu_calls
        self.passes_run = 0
        self._planned: set[Product] = set()
        self._products: dict[Product, torch.Tensor] = {P(k): v for k, v in (given or {}).items()}

    # ---- facts ---------------------------------------------------------------------------------
    @property
    def input_size(self) -> tuple[int, int]:
        return int(self.x.shape[-2]), int(self.x.shape[-1])

    @property
    def is_unit(self) -> bool:
        return self.unit is not None

    def non_relu_activations(self) -> list[str]:
        return non_relu_activations(self.model)

    # ---- products ------------------------------------------------------------------------------
    def plan(self, products: Iterable[Union[Product, str]]) -> None:
        """Declare products that the methods of this request will use (computed in one pass)."""
        self._planned |= {P(p) for p in products}

    def product(self, name: Union[Product, str]) -> torch.Tensor:
        """A product of the main pass: ``LOGITS`` (1, K), ``ACTIVATION`` / ``LAYER_GRAD``
        (1, C, h, w), ``INPUT_GRAD`` / ``GUIDED`` / ``DECONVNET`` (1, 3, H, W). Runs the main pass
        on first use (with every planned product), again only for a product that was not planned.
        For a unit target: ``ACTIVATION`` is the unit layer's output and there are no logits."""
        name = P(name)
        if name not in self._products:
            if self.unit is not None:
                if name not in UNIT_PRODUCTS:
                    raise MethodUnavailableError(f"{name.value} is not computed for a unit target "
                                                 f"({self.unit.describe()}): it explains classes")
                wanted = ({name} | (self._planned & UNIT_PRODUCTS)) - set(self._products)
            else:
                wanted = ({name} | self._planned | {P.LOGITS}) - set(self._products)
            self._products.update(self._main_pass(wanted))
        return self._products[name]

    def resolved_target(self) -> int:
        """The class index explained (runs the first forward for the top-1 class)."""
        if self.unit is not None:
            raise MethodUnavailableError(f"this method explains a class, not the unit {self.unit.describe()}")
        if self.target is None:
            self.product(P.LOGITS)
        assert self.target is not None
        return self.target

    def resolved_unit(self) -> UnitTarget:
        """The unit target with its neuron position resolved (runs the truncated forward if needed)."""
        assert self.unit is not None
        if isinstance(self.unit, NeuronTarget) and not self.unit.resolved:
            self.product(P.ACTIVATION)
        return self.unit

    def unit_scores(self, xb: torch.Tensor) -> torch.Tensor:
        """``(N,)`` the unit's scalar for each input of ``xb``: a forward truncated after the unit's
        layer (differentiable when grad is enabled and ``xb`` requires grad). Call under the lock."""
        unit = self.resolved_unit()
        return unit.score(forward_until(self.model, xb, unit.layer))

    # ---- the pass ------------------------------------------------------------------------------
    def _main_pass(self, wanted: set[Product]) -> dict[Product, torch.Tensor]:
        self.passes_run += 1
        if self.unit is not None:
            shared = unit_pass(self.handle, self.x, self.unit, wanted)
            if isinstance(self.unit, NeuronTarget):
                y, x = (int(v) for v in shared.positions[0])
                self.unit = NeuronTarget(self.unit.layer, self.unit.channel, y, x)
        else:
            targets = None if self.target is None else torch.tensor([self.target])
            shared = shared_pass(self.handle, self.x, self.layer, wanted & SHARED_PRODUCTS, targets)
            self.target = int(shared.targets[0])
        if shared.relu_calls is not None:
            self.relu_calls = shared.relu_calls
        return {P(k): v for k, v in shared.products.items()}


@dataclass
class SharedProducts:
    """Result of :func:`shared_pass`. ``products[name]``: ``(N, ...)`` tensors (``logits`` (N, K),
    ``activation`` / ``layer_grad`` (N, C, h, w), ``input_grad`` / ``guided`` / ``deconvnet``
    (N, 3, H, W)); ``targets`` (N,) the class explained per image; ``relu_calls``: ReLUs routed
    through the switchable rule (None when no guided/deconvnet gradient was asked for)."""

    products: dict[Product, torch.Tensor]
    targets: torch.Tensor
    relu_calls: Optional[int] = None
    seconds: float = 0.0


def _products(wanted: Iterable[Union[Product, str]], allowed: frozenset[Product], what: str) -> set[Product]:
    names = {str(w.value if isinstance(w, Product) else w) for w in wanted}
    unknown = names - {p.value for p in allowed}
    if unknown:
        raise ParameterError(f"cannot compute products {sorted(unknown)} in {what}; "
                             f"it computes {sorted(p.value for p in allowed)}")
    return {P(n) for n in names}


def shared_pass(handle: ModelHandle, x: torch.Tensor, layer: str, wanted: Iterable[Union[Product, str]],
                targets: Optional[torch.Tensor] = None) -> SharedProducts:
    """THE main pass: compute the ``wanted`` products (subset of :data:`SHARED_PRODUCTS`; ``logits``
    always) for ``x`` (N, 3, H, W) in one forward and one backward per ReLU rule, under
    ``handle.lock``. ``targets`` (N,): class per image, ``-1`` = that image's top-1 prediction
    (default: all top-1).

    Exact for a batch: the model is in eval mode, so images do not interact (BatchNorm uses running
    statistics, no dropout) and the gradient of ``sum_n y_n[t_n]``, taken once, equals every image's
    own gradient. No gradient wanted -> one forward under ``no_grad``. The layer output is captured
    with ``differentiable=True`` (the network downstream gets a clone, so in-place ops after the
    layer never change it); without input gradients it is a leaf and backwards stop there."""
    start = time.perf_counter()
    wanted = _products(wanted, SHARED_PRODUCTS, "the shared pass")
    grads = wanted & GRADIENT_PRODUCTS
    layers = [layer] if wanted & LAYER_PRODUCTS else []
    modified = grads & {P.GUIDED, P.DECONVNET}
    x_in = x.detach().requires_grad_(bool(grads - {P.LAYER_GRAD}))
    with handle.lock:
        with (torch.enable_grad() if grads else torch.no_grad()), \
                (relu_backward_rule() if modified else nullcontext()) as state, \
                capture(handle.model, layers, differentiable=True) as store:
            logits = handle.model(x_in)
        activation = store.get(layer) if layers else None
        if layers and activation is None:
            raise ParameterError(f"layer {layer!r} is not used by the forward pass of {handle.name!r}")
        if activation is not None and activation.ndim != 4:
            raise ParameterError(f"layer {layer!r} outputs shape {tuple(activation.shape)}, "
                                 "not a (N, C, h, w) feature map")
        chosen = resolve_targets(logits.detach(), targets)
        out: dict[Product, torch.Tensor] = {P.LOGITS: logits.detach()}
        if activation is not None:
            out[P.ACTIVATION] = activation.detach()
        if grads:
            score = logits.gather(1, chosen[:, None]).sum()  # images are independent in eval mode
            out.update(gradient_products(score, grads, activation, x_in, state))
    relu_calls = state.calls if state is not None else None
    return SharedProducts(out, chosen, relu_calls, time.perf_counter() - start)


@dataclass
class UnitProducts:
    """Result of :func:`unit_pass`: ``products`` (``activation`` (N, C, h, w) of the unit's layer,
    input gradients (N, 3, H, W)), ``positions`` (N, 2) the neuron per image (``None`` for a channel
    target), ``values`` (N,) the unit's scalar per image, ``relu_calls`` as in :class:`SharedProducts`."""

    products: dict[Product, torch.Tensor]
    positions: Optional[torch.Tensor]
    values: torch.Tensor
    relu_calls: Optional[int] = None
    seconds: float = 0.0


def neuron_positions(activation: torch.Tensor, unit: NeuronTarget) -> torch.Tensor:
    """``(N, 2)`` (y, x) per image: the given position, or each image's channel argmax (first in
    raster order on ties)."""
    n, w = activation.shape[0], activation.shape[-1]
    unit.resolve(activation[:1])  # checks the layer's shape, the channel and a given position
    if unit.resolved:
        return torch.tensor([[unit.y, unit.x]], device=activation.device).expand(n, 2)
    flat = activation[:, unit.channel].reshape(n, -1).argmax(dim=1)
    return torch.stack([flat // w, flat % w], dim=1)


def unit_scores(activation: torch.Tensor, unit: UnitTarget, positions: Optional[torch.Tensor]) -> torch.Tensor:
    """``(N,)`` the unit's scalar per image (neurons at ``positions`` (N, 2))."""
    if isinstance(unit, ChannelTarget):
        return unit.score(activation)
    assert positions is not None
    n = torch.arange(activation.shape[0], device=activation.device)
    return activation[n, unit.channel, positions[:, 0], positions[:, 1]]


def unit_pass(handle: ModelHandle, x: torch.Tensor, unit: UnitTarget, wanted: Iterable[Union[Product, str]],
              positions: Optional[torch.Tensor] = None) -> UnitProducts:
    """The shared pass of a unit target: ONE forward stopped right after ``unit.layer`` (the rest of
    the network is never run), then one backward of the unit's scalar per ReLU rule.

    ``wanted`` is a subset of :data:`UNIT_PRODUCTS`. ``positions`` (N, 2) overrides the neuron's
    position per image (batched projections of many top activations). Under ``handle.lock``."""
    start = time.perf_counter()
    wanted = _products(wanted, UNIT_PRODUCTS, "a unit pass")
    grads = wanted & INPUT_PRODUCTS
    modified = grads & {P.GUIDED, P.DECONVNET}
    x_in = x.detach().requires_grad_(bool(grads))
    with handle.lock:
        handle.module(unit.layer)  # validates the path
        with (torch.enable_grad() if grads else torch.no_grad()), \
                (relu_backward_rule() if modified else nullcontext()) as state, \
                capture(handle.model, [], stop_at=unit.layer) as store:
            try:
                handle.model(x_in)
            except StopForward:
                pass
        activation = store.get(unit.layer)
        if activation is None:
            raise ParameterError(f"layer {unit.layer!r} is not used by the forward pass of {handle.name!r}")
        if isinstance(unit, NeuronTarget):
            positions = (neuron_positions(activation, unit) if positions is None
                         else positions.to(activation.device).long())
        else:
            unit.score(activation[:1])  # checks layer shape and channel
            positions = None
        values = unit_scores(activation, unit, positions)
        out: dict[Product, torch.Tensor] = {P.ACTIVATION: activation.detach()}
        if grads:
            with torch.enable_grad():
                out.update(gradient_products(values.sum(), grads, None, x_in, state))
    relu_calls = state.calls if state is not None else None
    return UnitProducts(out, positions, values.detach(), relu_calls, time.perf_counter() - start)


def resolve_targets(logits: torch.Tensor, targets: Optional[torch.Tensor]) -> torch.Tensor:
    """``(N,)`` class per image: ``targets`` with ``-1`` replaced by the top-1 class of ``logits``."""
    top1 = logits.argmax(dim=1)
    if targets is None:
        return top1
    targets = torch.as_tensor(targets, dtype=torch.long, device=logits.device).reshape(-1)
    if targets.shape[0] != logits.shape[0]:
        raise ParameterError(f"got {targets.shape[0]} targets for {logits.shape[0]} images")
    bad = targets[(targets >= logits.shape[1]) | (targets < -1)]
    if bad.numel():
        raise ParameterError(f"target {int(bad[0])} is out of range 0..{logits.shape[1] - 1}")
    return torch.where(targets < 0, top1, targets)


def gradient_products(score: torch.Tensor, grads: set[Product], activation: Optional[torch.Tensor],
                      x_in: torch.Tensor, state: Optional[ReluState]) -> dict[Product, torch.Tensor]:
    """Back-propagate ``score`` once per ReLU rule from one retained forward graph.

    ``grads`` names what is wanted: ``LAYER_GRAD`` (w.r.t. ``activation``) and ``INPUT_GRAD`` share
    one plain backward; ``GUIDED`` and ``DECONVNET`` each take one more backward to ``x_in`` with
    ``state.rule`` switched (see :func:`~cnnviz_core.hooks.relu_backward_rule`). Unreached tensors
    get zero gradients.
    """
    out: dict[Product, torch.Tensor] = {}
    steps: list[tuple[str, list[tuple[Product, torch.Tensor]]]] = []
    plain = [(n, t) for n, t in ((P.LAYER_GRAD, activation), (P.INPUT_GRAD, x_in))
             if n in grads and t is not None]
    if plain:
        steps.append(("plain", plain))
    steps += [(rule.value, [(rule, x_in)]) for rule in (P.GUIDED, P.DECONVNET) if rule in grads]
    for i, (rule, targets) in enumerate(steps):
        if state is not None:
            state.rule = rule  # type: ignore[assignment]
        values = torch.autograd.grad(score, [t for _, t in targets], retain_graph=i < len(steps) - 1,
                                     allow_unused=True)
        for (name, t), g in zip(targets, values):
            out[name] = torch.zeros_like(t) if g is None else g.detach()
    return out
