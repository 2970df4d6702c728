"""Batched attribution: ONE forward (+ one backward per ReLU rule) for a whole batch of images, then
each requested method per image through the registered method functions.

Why this is exact: the model is in eval mode, so the images of a batch do not interact (BatchNorm
uses running statistics, no dropout) and ``d(sum_n y_n[t_n]) / dA_n = dy_n[t_n] / dA_n``: the
gradient of the SUM of each image's target logit, taken once for the batch, equals every image's
own gradient. Captured activations and gradients are then sliced per image into a
:class:`SliceContext` - a :class:`~cnnviz_core.attribution.passes.PassContext` whose shared products
are already known - and the CAM formulas of :mod:`cnnviz_core.attribution.cam` (and the gradient
methods) run on it unchanged. Products a method needs beyond the batched ones (Score-CAM's masked
forwards, SmoothGrad's noisy passes...) are computed by that method on its own image as usual.

Maps follow :func:`cnnviz_core.attribution.explain`: CAM family / occlusion ``(H, W)`` float32 in
[0, 1] (ReLU then min-max), gradient family ``(3, H, W)`` raw w.r.t. the normalized input.
"""
from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np
import torch

from ..attribution import minmax, resolve_methods
from ..attribution.passes import GRADIENT_PRODUCTS, LAYER_PRODUCTS, PassContext, gradient_products
from ..attribution.registry import method_params, validate_params
from ..errors import MethodUnavailableError, ParameterError
from ..hooks import capture, relu_backward_rule
from ..models import ModelHandle

#: Products of the shared main pass that :func:`batch_pass` computes for a whole batch.
BATCHED_PRODUCTS = frozenset({"logits"}) | GRADIENT_PRODUCTS | LAYER_PRODUCTS


@dataclass
class BatchProducts:
    """``products[name]``: ``(N, ...)`` tensors (``logits`` (N, K), ``activation``/``layer_grad``
    (N, C, h, w), input gradients (N, 3, H, W)); ``targets`` (N,) the class explained per image."""

    products: dict[str, torch.Tensor]
    targets: torch.Tensor
    relu_calls: Optional[int] = None
    seconds: float = 0.0


def batch_pass(handle: ModelHandle, x: torch.Tensor, layer: str, wanted: set[str],
               targets: Optional[torch.Tensor] = None) -> BatchProducts:
    """Compute the ``wanted`` shared products (subset of :data:`BATCHED_PRODUCTS`) for the batch
    ``x`` (N, 3, H, W) in one forward and one backward per ReLU rule, under ``handle.lock``.
    ``targets`` (N,) class per image, ``-1`` = the image's top-1 prediction (default: all -1)."""
    start = time.perf_counter()
    unknown = set(wanted) - BATCHED_PRODUCTS
    if unknown:
        raise ParameterError(f"cannot batch products {sorted(unknown)}; batchable: {sorted(BATCHED_PRODUCTS)}")
    grads = set(wanted) & GRADIENT_PRODUCTS
    layers = [layer] if set(wanted) & LAYER_PRODUCTS else []
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
            raise ParameterError(f"layer {layer!r} outputs shape {tuple(activation.shape)}, not a (N, C, h, w) map")
        chosen = _resolve_targets(logits.detach(), targets)
        out: dict[str, torch.Tensor] = {"logits": logits.detach()}
        if activation is not None:
            out["activation"] = activation.detach()
        if grads:
            score = logits.gather(1, chosen[:, None]).sum()  # images are independent in eval mode
            out.update(gradient_products(score, grads, activation, x_in, state))
    relu_calls = state.calls if state is not None else None
    return BatchProducts(out, chosen, relu_calls, time.perf_counter() - start)


def _resolve_targets(logits: torch.Tensor, targets: Optional[torch.Tensor]) -> torch.Tensor:
    top1 = logits.argmax(dim=1)
    if targets is None:
        return top1
    targets = torch.as_tensor(targets, dtype=torch.long, device=logits.device).reshape(-1)
    if targets.shape[0] != logits.shape[0]:
        raise ParameterError(f"got {targets.shape[0]} targets for {logits.shape[0]} images")
    if bool((targets >= logits.shape[1]).any()) or bool((targets < -1).any()):
        raise ParameterError(f"targets must be -1 (top-1) or 0..{logits.shape[1] - 1}")
    return torch.where(targets < 0, top1, targets)


class SliceContext(PassContext):
    """The :class:`PassContext` of image ``i`` of a batch: the shared products computed by
    :func:`batch_pass` are returned as ``(1, ...)`` slices; any other product falls back to the
    ordinary single-image pass of :class:`PassContext`."""

    def __init__(self, handle: ModelHandle, batch: BatchProducts, x: torch.Tensor, i: int, layer: str) -> None:
        super().__init__(handle, x[i:i + 1].detach(), layer, int(batch.targets[i]))
        self.relu_calls = batch.relu_calls
        self._given = {name: t[i:i + 1] for name, t in batch.products.items()}

    def product(self, name: str) -> torch.Tensor:
        if name in self._given:
            return self._given[name]
        return super().product(name)


@dataclass
class BatchExplanation:
    """Result of :func:`explain_batch`. ``maps[method][i]``: image ``i``'s map (numpy, as
    :func:`~cnnviz_core.attribution.explain` returns it) or None when ``errors[method][i]`` is set;
    ``seconds[method][i]``: that map's compute time plus its share of the batched pass."""

    logits: torch.Tensor
    targets: torch.Tensor
    maps: dict[str, list[Optional[np.ndarray]]] = field(default_factory=dict)
    errors: dict[str, list[Optional[str]]] = field(default_factory=dict)
    seconds: dict[str, list[float]] = field(default_factory=dict)


def explain_batch(handle: ModelHandle, x: torch.Tensor, methods: Sequence[str] | str, *,
                  layer: Optional[str] = None, targets: Optional[torch.Tensor] = None,
                  **params: Any) -> BatchExplanation:
    """Explain every image of ``x`` (N, 3, H, W) (normalized, on the model's device) with every
    method: one batched shared pass, then each method's registered function per image.
    An unavailable method (e.g. CAM without a GAP head) gives errors, not an exception."""
    chosen = resolve_methods(methods)
    validate_params(params)
    layer = layer or handle.default_layer
    handle.module(layer)
    if x.ndim != 4 or x.shape[1] != 3 or x.shape[0] < 1:
        raise ParameterError(f"explain_batch takes (N, 3, H, W) tensors, got shape {tuple(x.shape)}")
    x = x.detach().to(handle.device, torch.float32)
    wanted = set().union(*(m.passes for m in chosen)) & BATCHED_PRODUCTS
    batch = batch_pass(handle, x, layer, wanted, targets)
    share = batch.seconds / x.shape[0]
    result = BatchExplanation(batch.products["logits"], batch.targets)
    for m in chosen:
        result.maps[m.key], result.errors[m.key], result.seconds[m.key] = [], [], []
    for i in range(x.shape[0]):
        ctx = SliceContext(handle, batch, x, i, layer)
        for m in chosen:
            start = time.perf_counter()
            try:
                raw = m.compute(ctx, method_params(m, params)).raw
                shown = raw if m.family == "gradient" else minmax(raw)
                result.maps[m.key].append(shown.detach().to("cpu", torch.float32).numpy())
                result.errors[m.key].append(None)
            except MethodUnavailableError as exc:
                result.maps[m.key].append(None)
                result.errors[m.key].append(str(exc))
            result.seconds[m.key].append(share + time.perf_counter() - start)
    return result
