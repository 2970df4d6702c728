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

Parameters of the shared model stay frozen: gradients go through ``autograd.grad`` to activations
and inputs only, so no parameter ever gets a ``.grad``. Everything runs under ``handle.lock``.
"""
from __future__ import annotations

import hashlib
from contextlib import nullcontext
from typing import Iterable, Optional

import torch

from ..errors import ParameterError
from ..hooks import ReluState, capture, non_relu_activations, relu_backward_rule
from ..models import ModelHandle
from ..progress import CancelToken, ProgressFn

GRADIENT_PRODUCTS = frozenset({"layer_grad", "input_grad", "guided", "deconvnet"})
LAYER_PRODUCTS = frozenset({"activation", "layer_grad"})


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
                 progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None) -> None:
        self.handle = handle
        self.model = handle.model
        self.x = x
        self.layer = layer
        self.target = target
        self.progress = progress
        self.cancel = cancel
        self.relu_calls: Optional[int] = None
        self.passes_run = 0
        self._planned: set[str] = set()
        self._products: dict[str, torch.Tensor] = {}

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
    def _resolve_target(self, logits: torch.Tensor) -> int:
        if self.target is None:
            self.target = int(logits[0].argmax())
        elif not 0 <= self.target < logits.shape[1]:
            raise ParameterError(f"target {self.target} is out of range 0..{logits.shape[1] - 1}")
        return self.target

    def _captured(self, store: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.layer not in store:
            raise ParameterError(f"layer {self.layer!r} is not used by the forward pass of {self.handle.name!r}")
        return store[self.layer]

    def _main_pass(self, wanted: set[str]) -> dict[str, torch.Tensor]:
        grads = wanted & GRADIENT_PRODUCTS
        layers = [self.layer] if wanted & LAYER_PRODUCTS else []
        self.passes_run += 1
        with self.handle.lock:
            if not grads:
                # differentiable capture = the network downstream gets a clone, so an in-place op
                # after the layer (ReLU(inplace=True) after a conv) cannot alter the captured output
                with torch.no_grad(), capture(self.model, layers, differentiable=True) as store:
                    logits = self.model(self.x)
                self._resolve_target(logits)
                out = {"logits": logits}
                if layers:
                    out["activation"] = self._captured(store).detach()
                return out
            return self._gradient_pass(grads, layers)

    def _gradient_pass(self, grads: set[str], layers: list[str]) -> dict[str, torch.Tensor]:
        x_in = self.x.detach().requires_grad_(bool(grads - {"layer_grad"}))
        modified = grads & {"guided", "deconvnet"}
        with torch.enable_grad(), (relu_backward_rule() if modified else nullcontext()) as state, \
                capture(self.model, layers, differentiable=True) as store:
            logits = self.model(x_in)
        if state is not None:
            self.relu_calls = state.calls
        out: dict[str, torch.Tensor] = {"logits": logits.detach()}
        activation = self._captured(store) if layers else None
        if activation is not None:
            out["activation"] = activation.detach()
        if activation is not None and activation.ndim != 4:
            raise ParameterError(f"layer {self.layer!r} outputs shape {tuple(activation.shape)}, "
                                 "not a (1, C, h, w) feature map")
        score = logits[0, self._resolve_target(logits)]
        out.update(gradient_products(score, grads, activation, x_in, state))
        return out


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
