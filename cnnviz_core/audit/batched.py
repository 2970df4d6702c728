"""Batched attribution: ONE forward (+ one backward per ReLU rule) for a whole batch of images, then
each requested method per image through the registered method functions.

Why this is exact: the model is in eval mode, so the images of a batch do not interact (BatchNorm
uses running statistics, no dropout) and ``d(sum_n y_n[t_n]) / dA_n = dy_n[t_n] / dA_n``: the
gradient of the SUM of each image's target logit, taken once for the batch, equals every image's
own gradient. The pass is :func:`~cnnviz_core.attribution.passes.shared_pass`, the same function
the single-image engine runs with N = 1. Captured activations and gradients are then sliced per image
and handed to a :class:`~cnnviz_core.attribution.passes.PassContext` as products already computed
(``given``), and the CAM formulas of :mod:`cnnviz_core.attribution.cam` (and the gradient
methods) run on it unchanged. Products a method needs beyond the batched ones (Score-CAM's masked
forwards, SmoothGrad's noisy passes...) are computed by that method on its own image as usual.

Maps follow :func:`cnnviz_core.attribution.explain`: CAM family / occlusion ``(H, W)`` float32 in
[0, 1] (ReLU then min-max), gradient family ``(3, H, W)`` raw w.r.t. the normalized input.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np
import torch

from ..attribution import minmax, resolve_methods
from ..attribution.passes import SHARED_PRODUCTS, PassContext, SharedProducts, shared_pass
from ..attribution.registry import method_params, validate_params
from ..errors import MethodUnavailableError, ParameterError
from ..models import ModelHandle

def image_context(handle: ModelHandle, batch: SharedProducts, x: torch.Tensor, i: int, layer: str) -> PassContext:
    """The :class:`PassContext` of image ``i`` of a batch: the batched products are its ``(1, ...)``
    slices; any other product falls back to the ordinary single-image pass."""
    return PassContext(handle, x[i:i + 1].detach(), layer, int(batch.targets[i]), relu_calls=batch.relu_calls,
                       given={name: t[i:i + 1] for name, t in batch.products.items()})


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
    wanted = set().union(*(m.passes for m in chosen)) & SHARED_PRODUCTS
    batch = shared_pass(handle, x, layer, wanted, targets)
    share = batch.seconds / x.shape[0]
    result = BatchExplanation(batch.products["logits"], batch.targets)
    for m in chosen:
        result.maps[m.key], result.errors[m.key], result.seconds[m.key] = [], [], []
    for i in range(x.shape[0]):
        ctx = image_context(handle, batch, x, i, layer)
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
