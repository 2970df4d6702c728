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

Parameters of the shared model stay frozen: gradients go through ``autograd.grad`` to activations
and inputs only, so no parameter ever gets a ``.grad``. Everything runs under ``handle.lock``.
"""
from __future__ import annotations

import hashlib
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Iterable, Mapping, Optional

import torch

from ..errors import ParameterError
from ..hooks import ReluState, capture, non_relu_activations, relu_backward_rule
from ..models import ModelHandle
from ..progress import CancelToken, ProgressFn

GRADIENT_PRODUCTS = frozenset({"layer_grad", "input_grad", "guided", "deconvnet"})
LAYER_PRODUCTS = frozenset({"activation", "layer_grad"})
#: Everything :func:`shared_pass` computes (the products a method can declare in ``passes``).
SHARED_PRODUCTS = frozenset({"logits"}) | GRADIENT_PRODUCTS | LAYER_PRODUCTS


def input_digest(x: torch.Tensor) -> str:
    """A content hash of an input tensor (values, shape, dtype) used in cache keys."""
    t = x.detach().to("cpu").contiguous()
    h = hashlib.blake2b(t.numpy().tobytes(), digest_size=16)
    h.update(f"{tuple(t.shape)}|{t.dtype}".encode())
    return h.hexdigest()


class PassContext:
    """Per-call state of one explanation request: input, layer, target and the shared products.

    ``x``: ``(1, 3, H, W)`` normalized input on the model's device. ``target``: a validated class
    index, or ``None`` for the top-1 prediction (resolved by the first forward).
    """

    def __init__(self, handle: ModelHandle, x: torch.Tensor, layer: str, target: Optional[int], *,
                 progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None,
                 given: Optional[Mapping[str, torch.Tensor]] = None, relu_calls: Optional[int] = None) -> None:
        self.handle = handle
        self.model = handle.model
        self.x = x
        self.layer = layer
        self.target = target
        self.progress = progress
        self.cancel = cancel
        self.relu_calls = relu_calls
        self.passes_run = 0
        self._planned: set[str] = set()
        self._products: dict[str, torch.Tensor] = dict(given or {})

    # ---- facts ---------------------------------------------------------------------------------
    @property
    def input_size(self) -> tuple[int, int]:
        return int(self.x.shape[-2]), int(self.x.shape[-1])

    def non_relu_activations(self) -> list[str]:
        return non_relu_activations(self.model)

    # ---- products ------------------------------------------------------------------------------
    def plan(self, products: Iterable[str]) -> None:
        """Declare products that the methods of this request will use (computed in one pass)."""
        self._planned |= set(products)

    def product(self, name: str) -> torch.Tensor:
        """A product of the main pass: ``logits`` (1, K), ``activation`` / ``layer_grad``
        (1, C, h, w), ``input_grad`` / ``guided`` / ``deconvnet`` (1, 3, H, W). Runs the main pass
        on first use (with every planned product), again only for a product that was not planned."""
        if name not in self._products:
            wanted = ({name} | self._planned | {"logits"}) - set(self._products)
            self._products.update(self._main_pass(wanted))
        return self._products[name]

    def resolved_target(self) -> int:
        if self.target is None:
            self.product("logits")
        assert self.target is not None
        return self.target

    # ---- the pass ------------------------------------------------------------------------------
    def _main_pass(self, wanted: set[str]) -> dict[str, torch.Tensor]:
        self.passes_run += 1
        targets = None if self.target is None else torch.tensor([self.target])
        shared = shared_pass(self.handle, self.x, self.layer, wanted & SHARED_PRODUCTS, targets)
        self.target = int(shared.targets[0])
        if shared.relu_calls is not None:
            self.relu_calls = shared.relu_calls
        return shared.products


@dataclass
class SharedProducts:
    """Result of :func:`shared_pass`. ``products[name]``: ``(N, ...)`` tensors (``logits`` (N, K),
    ``activation`` / ``layer_grad`` (N, C, h, w), ``input_grad`` / ``guided`` / ``deconvnet``
    (N, 3, H, W)); ``targets`` (N,) the class explained per image; ``relu_calls``: ReLUs routed
    through the switchable rule (None when no guided/deconvnet gradient was asked for)."""

    products: dict[str, torch.Tensor]
    targets: torch.Tensor
    relu_calls: Optional[int] = None
    seconds: float = 0.0


def shared_pass(handle: ModelHandle, x: torch.Tensor, layer: str, wanted: Iterable[str],
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
    wanted = set(wanted)
    unknown = wanted - SHARED_PRODUCTS
    if unknown:
        raise ParameterError(f"cannot compute products {sorted(unknown)} in the shared pass; "
                             f"it computes {sorted(SHARED_PRODUCTS)}")
    grads = wanted & GRADIENT_PRODUCTS
    layers = [layer] if wanted & LAYER_PRODUCTS else []
    modified = grads & {"guided", "deconvnet"}
    x_in = x.detach().requires_grad_(bool(grads - {"layer_grad"}))
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
        out: dict[str, torch.Tensor] = {"logits": logits.detach()}
        if activation is not None:
            out["activation"] = activation.detach()
        if grads:
            score = logits.gather(1, chosen[:, None]).sum()  # images are independent in eval mode
            out.update(gradient_products(score, grads, activation, x_in, state))
    relu_calls = state.calls if state is not None else None
    return SharedProducts(out, chosen, relu_calls, time.perf_counter() - start)


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


def gradient_products(score: torch.Tensor, grads: set[str], activation: Optional[torch.Tensor],
                      x_in: torch.Tensor, state: Optional[ReluState]) -> dict[str, torch.Tensor]:
    """Back-propagate ``score`` once per ReLU rule from one retained forward graph.

    ``grads`` names what is wanted: ``layer_grad`` (w.r.t. ``activation``) and ``input_grad`` share
    one plain backward; ``guided`` and ``deconvnet`` each take one more backward to ``x_in`` with
    ``state.rule`` switched (see :func:`~cnnviz_core.hooks.relu_backward_rule`). Unreached tensors
    get zero gradients.
    """
    out: dict[str, torch.Tensor] = {}
    steps: list[tuple[str, list[tuple[str, torch.Tensor]]]] = []
    plain = [(n, t) for n, t in (("layer_grad", activation), ("input_grad", x_in))
             if n in grads and t is not None]
    if plain:
        steps.append(("plain", plain))
    steps += [(rule, [(rule, x_in)]) for rule in ("guided", "deconvnet") if rule in grads]
    for i, (rule, targets) in enumerate(steps):
        if state is not None:
            state.rule = rule  # type: ignore[assignment]
        values = torch.autograd.grad(score, [t for _, t in targets], retain_graph=i < len(steps) - 1,
                                     allow_unused=True)
        for (name, t), g in zip(targets, values):
            out[name] = torch.zeros_like(t) if g is None else g.detach()
    return out
