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

**Several layers in one pass.** A request can also capture the activations and gradients of other
layers than ``ctx.layer`` (multi-layer fusion and RefineCAM fuse several layers, FullGrad needs the
gradient at every conv/BatchNorm output): :meth:`PassContext.plan_layers` declares them, methods
read them with :meth:`PassContext.layer_product` (or through :meth:`PassContext.layer_view`, a
context whose ``layer`` is that layer, so any CAM method runs on it unchanged). Planned layers are
captured by the same single forward, and their gradients come from the same plain backward as
``ctx.layer``'s and the input's (one ``autograd.grad`` call over all of them). Methods declare what
they will need from their parameters through a planner (:func:`layer_planner`), which
:meth:`PassContext.plan_methods` asks before the first pass; a layer asked for later, unplanned,
costs one more pass (counted in ``passes_run``).

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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Optional, Sequence, Union

import torch

from ..errors import MethodUnavailableError, ParameterError
from ..hooks import (ReluState, StopForward, capture, forward_until, gradient_taps, non_relu_activations,
                     relu_backward_rule)
from ..models import ModelHandle
from ..progress import CancelToken, ProgressFn
from .registry import Product
from .targets import ChannelTarget, ClassTarget, NeuronTarget, Target, UnitTarget, as_target, is_unit

if TYPE_CHECKING:  # pragma: no cover
    from .registry import Method, Params

P = Product
INPUT_PRODUCTS = frozenset({P.INPUT_GRAD, P.GUIDED, P.DECONVNET})
GRADIENT_PRODUCTS = frozenset({P.LAYER_GRAD}) | INPUT_PRODUCTS
LAYER_PRODUCTS = frozenset({P.ACTIVATION, P.LAYER_GRAD})
#: Everything :func:`shared_pass` computes (the products a method can declare in ``passes``).
SHARED_PRODUCTS = frozenset({P.LOGITS}) | GRADIENT_PRODUCTS | LAYER_PRODUCTS
#: What :func:`unit_pass` computes for a unit target (``activation`` = the unit layer's output).
UNIT_PRODUCTS = frozenset({P.ACTIVATION}) | INPUT_PRODUCTS

#: ``layer -> products`` (a subset of :data:`LAYER_PRODUCTS`) of layers other than the request's.
LayerPlan = Mapping[str, Iterable[Union[Product, str]]]
#: Method key -> ``planner(ctx, params) -> LayerPlan`` (see :func:`layer_planner`).
LAYER_PLANNERS: dict[str, Callable[["PassContext", Any], LayerPlan]] = {}


def layer_planner(key: str) -> Callable[[Callable[["PassContext", Any], LayerPlan]], Callable[["PassContext", Any], LayerPlan]]:
    """Register the function that tells, before any pass, which extra layers (and which of their
    products) the method ``key`` will read with ``params`` on ``ctx``, so that one pass captures
    them all (:meth:`PassContext.plan_methods`)."""

    def decorate(fn: Callable[["PassContext", Any], LayerPlan]) -> Callable[["PassContext", Any], LayerPlan]:
        LAYER_PLANNERS[key] = fn
        return fn

    return decorate


def _layer_plan(plan: LayerPlan) -> dict[str, set[Product]]:
    out: dict[str, set[Product]] = {}
    for layer, products in plan.items():
        wanted = {P(p) for p in products}
        if not wanted <= LAYER_PRODUCTS:
            raise ParameterError(f"layer products are {sorted(p.value for p in LAYER_PRODUCTS)}, "
                                 f"got {sorted(p.value for p in wanted)}")
        out.setdefault(str(layer), set()).update(wanted)
    return out


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
        # layers other than self.layer: planned products, computed products, and layers a pass
        # tried to capture that the forward never ran
        self._planned_layers: dict[str, set[Product]] = {}
        self._layer_products: dict[str, dict[Product, torch.Tensor]] = {}
        self._unreached: set[str] = set()

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

    def plan_layers(self, plan: Union[LayerPlan, Iterable[str]],
                    products: Iterable[Union[Product, str]] = LAYER_PRODUCTS) -> None:
        """Declare layers other than ``self.layer`` whose products (``activation`` and/or
        ``layer_grad``) methods of this request will read: the next pass captures them too.
        ``plan``: ``{layer: products}``, or layer paths that all get ``products``. Class targets only."""
        if not isinstance(plan, Mapping):
            plan = {layer: tuple(products) for layer in plan}
        for layer, wanted in _layer_plan(plan).items():
            if layer == self.layer:
                self.plan(wanted)
            else:
                self.handle.module(layer)  # validates the path before any pass
                self._planned_layers.setdefault(layer, set()).update(wanted)

    @property
    def planned_layers(self) -> dict[str, set[Product]]:
        """The extra layers planned so far and their products (a copy)."""
        return {layer: set(products) for layer, products in self._planned_layers.items()}

    def plan_methods(self, methods: Sequence["Method"], params: Mapping[str, "Params"]) -> None:
        """Ask the planner (:func:`layer_planner`) of each method for the layers it will read with
        its parameters ``params[method.key]``, and plan them. A planner that finds its method
        unavailable plans nothing (the method reports it when it runs); bad parameters raise."""
        if self.unit is not None:
            return
        for m in methods:
            planner = LAYER_PLANNERS.get(m.key)
            if planner is None:
                continue
            try:
                plan = planner(self, params[m.key])
            except MethodUnavailableError:
                continue
            self.plan_layers(plan)

    def layer_product(self, layer: str, name: Union[Product, str], *, missing_ok: bool = False) -> Optional[torch.Tensor]:
        """``activation`` or ``layer_grad`` ``(1, C, h, w)`` of any layer (``self.layer`` included),
        from the main pass when the layer was planned, else from one more pass (which also computes
        whatever else is planned and missing). A layer the forward never runs raises
        :class:`ParameterError`, or gives None with ``missing_ok``."""
        name = P(name)
        if name not in LAYER_PRODUCTS:
            raise ParameterError(f"{name.value} is not a layer product")
        if layer == self.layer:
            return self.product(name)
        if self.unit is not None:
            raise MethodUnavailableError(f"layer products of other layers are computed for classes, not for "
                                         f"the unit {self.unit.describe()}")
        have = self._layer_products.get(layer, {})
        if name not in have and layer not in self._unreached:
            self.handle.module(layer)
            # an unplanned layer: take both products (the activation is captured anyway)
            self._planned_layers.setdefault(layer, set(LAYER_PRODUCTS)).add(name)
            wanted = (self._planned | {P.LOGITS}) - set(self._products)
            self._run(wanted, self._missing_layers())
            have = self._layer_products.get(layer, {})
        if name not in have:
            if missing_ok:
                return None
            raise ParameterError(f"layer {layer!r} is not used by the forward pass of {self.handle.name!r}")
        return have[name]

    def layer_view(self, layer: str) -> "PassContext":
        """A context for ``layer`` that shares this request's passes: its ``layer`` is ``layer``,
        its layer products are :meth:`layer_product` of ``layer``, everything else (logits, input
        gradients, the class explained, ``passes_run``) is this context's. Any method written for a
        :class:`PassContext` runs on it unchanged. ``self`` for ``self.layer``."""
        return self if layer == self.layer else LayerView(self, layer)

    def _missing_layers(self) -> dict[str, set[Product]]:
        out = {}
        for layer, wanted in self._planned_layers.items():
            missing = wanted - set(self._layer_products.get(layer, {}))
            if missing and layer not in self._unreached:
                out[layer] = missing
        return out

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
            self._run(wanted, self._missing_layers() if self.unit is None else {})
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
    def _run(self, wanted: set[Product], layers: Mapping[str, set[Product]]) -> None:
        """One pass computing ``wanted`` (main layer, logits, input gradients) and ``layers``."""
        self._products.update(self._main_pass(wanted, layers))

    def _main_pass(self, wanted: set[Product], layers: Optional[Mapping[str, set[Product]]] = None
                   ) -> dict[Product, torch.Tensor]:
        self.passes_run += 1
        if self.unit is not None:
            shared = unit_pass(self.handle, self.x, self.unit, wanted)
            if isinstance(self.unit, NeuronTarget):
                y, x = (int(v) for v in shared.positions[0])
                self.unit = NeuronTarget(self.unit.layer, self.unit.channel, y, x)
        else:
            targets = None if self.target is None else torch.tensor([self.target])
            shared = shared_pass(self.handle, self.x, self.layer, wanted & SHARED_PRODUCTS, targets,
                                 layers=layers or {})
            self.target = int(shared.targets[0])
            for layer, products in shared.layers.items():
                self._layer_products.setdefault(layer, {}).update(products)
            self._unreached |= set(layers or {}) - set(shared.layers)
        if shared.relu_calls is not None:
            self.relu_calls = shared.relu_calls
        return {P(k): v for k, v in shared.products.items()}


class LayerView(PassContext):
    """The view of a :class:`PassContext` for another layer (:meth:`PassContext.layer_view`)."""

    def __init__(self, parent: PassContext, layer: str) -> None:  # noqa: D107 - no super().__init__: shares state
        self.parent = parent
        self.handle = parent.handle
        self.model = parent.model
        self.x = parent.x
        self.layer = layer
        self.unit = None
        self.progress = parent.progress
        self.cancel = parent.cancel
        self._planned = {p for p in parent._planned_layers.get(layer, set())} | (parent._planned - LAYER_PRODUCTS)

    @property  # type: ignore[override]
    def target(self) -> Optional[int]:
        return self.parent.target

    @property  # type: ignore[override]
    def passes_run(self) -> int:
        return self.parent.passes_run

    @property  # type: ignore[override]
    def relu_calls(self) -> Optional[int]:
        return self.parent.relu_calls

    @property
    def planned_layers(self) -> dict[str, set[Product]]:
        return self.parent.planned_layers

    def plan(self, products: Iterable[Union[Product, str]]) -> None:
        wanted = {P(p) for p in products}
        self.parent.plan(wanted - LAYER_PRODUCTS)
        self.parent.plan_layers({self.layer: wanted & LAYER_PRODUCTS})

    def plan_layers(self, plan: Union[LayerPlan, Iterable[str]],
                    products: Iterable[Union[Product, str]] = LAYER_PRODUCTS) -> None:
        self.parent.plan_layers(plan, products)

    def product(self, name: Union[Product, str]) -> torch.Tensor:
        name = P(name)
        if name in LAYER_PRODUCTS:
            out = self.parent.layer_product(self.layer, name)
            assert out is not None
            return out
        return self.parent.product(name)

    def layer_product(self, layer: str, name: Union[Product, str], *, missing_ok: bool = False) -> Optional[torch.Tensor]:
        return self.parent.layer_product(layer, name, missing_ok=missing_ok)

    def layer_view(self, layer: str) -> PassContext:
        return self.parent.layer_view(layer)

    def resolved_target(self) -> int:
        return self.parent.resolved_target()


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
    #: ``layer -> {activation / layer_grad: (N, C, h, w)}`` for the extra ``layers`` asked for
    #: (a layer the forward never ran is absent).
    layers: dict[str, dict[Product, torch.Tensor]] = field(default_factory=dict)


def _products(wanted: Iterable[Union[Product, str]], allowed: frozenset[Product], what: str) -> set[Product]:
    names = {str(w.value if isinstance(w, Product) else w) for w in wanted}
    unknown = names - {p.value for p in allowed}
    if unknown:
        raise ParameterError(f"cannot compute products {sorted(unknown)} in {what}; "
                             f"it computes {sorted(p.value for p in allowed)}")
    return {P(n) for n in names}


def shared_pass(handle: ModelHandle, x: torch.Tensor, layer: str, wanted: Iterable[Union[Product, str]],
                targets: Optional[torch.Tensor] = None, *, layers: Optional[LayerPlan] = None) -> SharedProducts:
    """THE main pass: compute the ``wanted`` products (subset of :data:`SHARED_PRODUCTS`; ``logits``
    always) for ``x`` (N, 3, H, W) in one forward and one backward per ReLU rule, under
    ``handle.lock``. ``targets`` (N,): class per image, ``-1`` = that image's top-1 prediction
    (default: all top-1). ``layers``: ``{other layer: products}`` (``activation`` / ``layer_grad``)
    captured by the same forward, their gradients taken in the same plain backward
    (:attr:`SharedProducts.layers`).

    Exact for a batch: the model is in eval mode, so images do not interact (BatchNorm uses running
    statistics, no dropout) and the gradient of ``sum_n y_n[t_n]``, taken once, equals every image's
    own gradient. No gradient wanted -> one forward under ``no_grad``. The layer output is captured
    with ``differentiable=True`` (the network downstream gets a clone, so in-place ops after the
    layer never change it); without input gradients it is a leaf and backwards stop there."""
    start = time.perf_counter()
    wanted = _products(wanted, SHARED_PRODUCTS, "the shared pass")
    plan = _layer_plan(layers or {})
    extra = {name: prods for name, prods in plan.items() if name != layer and prods}
    for name, prods in plan.items():
        if name == layer:  # the request's own layer, asked for as an extra one
            wanted |= prods
    grads = wanted & GRADIENT_PRODUCTS
    extra_grads = any(P.LAYER_GRAD in prods for prods in extra.values())
    # layers that only want their gradient, when the plain backward goes to the input anyway (so it
    # passes through them): tapped, not copied (FullGrad's every conv/BN output)
    tapped = [n for n, prods in extra.items() if prods == {P.LAYER_GRAD}] if P.INPUT_GRAD in grads else []
    hooked = ([layer] if wanted & LAYER_PRODUCTS else []) + [n for n in extra if n not in tapped]
    modified = grads & {P.GUIDED, P.DECONVNET}
    x_in = x.detach().requires_grad_(bool(grads - {P.LAYER_GRAD}))
    with handle.lock:
        with (torch.enable_grad() if grads or extra_grads else torch.no_grad()), \
                (relu_backward_rule() if modified else nullcontext()) as state, \
                capture(handle.model, hooked, differentiable=True) as store, \
                gradient_taps(handle.model, tapped) as taps:
            logits = handle.model(x_in)
        activation = store.get(layer) if wanted & LAYER_PRODUCTS else None
        if wanted & LAYER_PRODUCTS and activation is None:
            raise ParameterError(f"layer {layer!r} is not used by the forward pass of {handle.name!r}")
        for name in [layer] * (activation is not None) + [n for n in extra if n in store]:
            if store[name].ndim != 4:
                raise ParameterError(f"layer {name!r} outputs shape {tuple(store[name].shape)}, "
                                     "not a (N, C, h, w) feature map")
        reached = {name: store[name] for name in extra if name in store}
        for name in tapped:
            if name in taps.shapes and len(taps.shapes[name][0]) != 4:
                raise ParameterError(f"layer {name!r} outputs shape {tuple(taps.shapes[name][0])}, "
                                     "not a (N, C, h, w) feature map")
        chosen = resolve_targets(logits.detach(), targets)
        out: dict[Product, torch.Tensor] = {P.LOGITS: logits.detach()}
        if activation is not None:
            out[P.ACTIVATION] = activation.detach()
        by_layer: dict[str, dict[Product, torch.Tensor]] = {
            name: ({P.ACTIVATION: t.detach()} if P.ACTIVATION in extra[name] else {}) for name, t in reached.items()}
        if grads or extra_grads:
            score = logits.gather(1, chosen[:, None]).sum()  # images are independent in eval mode
            with_grad = {name: t for name, t in reached.items() if P.LAYER_GRAD in extra[name]}
            got = gradient_products(score, grads, activation, x_in, state, extra=with_grad)
            for name in with_grad:
                by_layer[name][P.LAYER_GRAD] = got.pop(("layer", name))
            for name in tapped:  # filled by the plain backward above
                g = taps.gradient(name)
                if g is not None:
                    by_layer[name] = {P.LAYER_GRAD: g}
            out.update(got)
    relu_calls = state.calls if state is not None else None
    return SharedProducts(out, chosen, relu_calls, time.perf_counter() - start, by_layer)


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
                      x_in: torch.Tensor, state: Optional[ReluState],
                      extra: Optional[Mapping[str, torch.Tensor]] = None) -> dict[Any, torch.Tensor]:
    """Back-propagate ``score`` once per ReLU rule from one retained forward graph.

    ``grads`` names what is wanted: ``LAYER_GRAD`` (w.r.t. ``activation``) and ``INPUT_GRAD`` share
    one plain backward; ``GUIDED`` and ``DECONVNET`` each take one more backward to ``x_in`` with
    ``state.rule`` switched (see :func:`~cnnviz_core.hooks.relu_backward_rule`). ``extra``: other
    captured layer outputs ``{layer: tensor}`` whose gradients join the plain backward (returned
    under the key ``("layer", name)``). Unreached tensors get zero gradients.
    """
    out: dict[Any, torch.Tensor] = {}
    steps: list[tuple[str, list[tuple[Any, torch.Tensor]]]] = []
    plain: list[tuple[Any, torch.Tensor]] = [(n, t) for n, t in ((P.LAYER_GRAD, activation), (P.INPUT_GRAD, x_in))
                                             if n in grads and t is not None]
    plain += [(("layer", name), t) for name, t in (extra or {}).items()]
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
