"""Public entry points: :func:`explain` (maps only) and :func:`explain_detailed` (result objects).

One request = one :class:`~.passes.PassContext`: the methods share its forward/backward passes.
Finished results are cached in a thread-safe LRU keyed by ``(model.key, input digest, layer (for
layer-dependent methods), target, method, method parameters)``, so re-running a request (the UI does
on every widget change) costs nothing and different inputs never share an entry.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Literal, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image

from ..cache import LRUCache
from ..errors import MethodUnavailableError, ParameterError
from ..models import ModelHandle
from ..progress import CancelToken, ProgressFn
from .passes import PassContext, input_digest
from .registry import Method, method_params, resolve_methods, validate_params

Scale = Literal["minmax", "none"]
#: Results shared by every caller of the process (the app's sessions); pass ``cache=`` to use another.
RESULTS = LRUCache(128)


@dataclasses.dataclass(frozen=True)
class MethodResult:
    """One method's result. ``raw``: CAM family ``(H, W)`` ReLU'd and upsampled, not rescaled;
    occlusion ``(H, W)`` signed probability drop; gradient family ``(3, H, W)`` raw attribution
    w.r.t. the normalized input. ``scaled``: CAM family / occlusion min-max scaled to [0, 1] after a
    ReLU (all-zero stays zero), gradient family = ``raw``. ``layer_map``: the CAM at layer resolution
    (after its ReLU) or None. ``seconds``: compute time of this method in this process, including
    any shared pass it triggered (0 when ``cached``). ``error``: message when computed with
    ``on_error="collect"`` and the method was unavailable (maps are then empty)."""

    method: str
    family: str
    raw: np.ndarray
    scaled: np.ndarray
    layer_map: Optional[np.ndarray]
    target: int
    layer: Optional[str]
    seconds: float
    info: dict[str, Any] = dataclasses.field(default_factory=dict)
    cached: bool = False
    error: Optional[str] = None

    def map(self, scale: Scale = "minmax") -> np.ndarray:
        return self.raw if scale == "none" else self.scaled


def minmax(m: torch.Tensor) -> torch.Tensor:
    """ReLU, then min-max scale to [0, 1]; a constant (e.g. all-zero) map becomes all zeros."""
    m = m.clamp(min=0)
    lo, hi = m.min(), m.max()
    return (m - lo) / (hi - lo) if hi > lo else torch.zeros_like(m)


def _numpy(t: Optional[torch.Tensor]) -> Optional[np.ndarray]:
    if t is None:
        return None
    a = t.detach().to("cpu", torch.float32).numpy().copy()
    a.flags.writeable = False  # cached and shared: callers copy before editing
    return a


def prepare_input(handle: ModelHandle, x: Union[torch.Tensor, Image.Image]) -> torch.Tensor:
    """PIL image or ``(1, 3, H, W)`` tensor -> float32 tensor on the model's device (validated)."""
    if isinstance(x, Image.Image):
        x = handle.preprocess(x)
    if not isinstance(x, torch.Tensor):
        raise ParameterError(f"expected a PIL image or a (1, 3, H, W) tensor, got {type(x).__name__}")
    if x.ndim != 4 or x.shape[0] != 1 or x.shape[1] != 3:
        raise ParameterError(f"explain takes one image: a (1, 3, H, W) tensor, got shape {tuple(x.shape)}")
    x = x.detach().to(handle.device, torch.float32)
    if x.is_inference():
        x = x.clone()
    if not bool(torch.isfinite(x).all()):
        raise ParameterError("the input tensor contains NaN or infinite values")
    return x


def _key(handle: ModelHandle, digest: str, layer: str, target: int, m: Method, p: dict) -> tuple:
    return (handle.key, digest, layer if m.uses_layer else None, target, m.key,
            tuple(sorted((k, repr(v)) for k, v in p.items())))


def explain_detailed(
    model: ModelHandle,
    x: Union[torch.Tensor, Image.Image],
    methods: Union[str, Sequence[str]],
    target: Optional[Union[int, str]] = None,
    layer: Optional[str] = None,
    *,
    progress: Optional[ProgressFn] = None,
    cancel: Optional[CancelToken] = None,
    cache: Optional[LRUCache] = RESULTS,
    on_error: Literal["raise", "collect"] = "raise",
    **params: Any,
) -> dict[str, MethodResult]:
    """Compute ``methods`` (keys of ``METHODS``) for one image; see :class:`MethodResult`.

    ``target``: class index or name (default: the top-1 prediction). ``layer``: module path (default
    ``model.default_layer``). ``params``: method parameters (e.g. ``batch_size``, ``channels``,
    ``patch``, ``stride``, ``samples``, ``noise``, ``steps``, ``baseline``), each a parameter of some
    registered method (those of methods not requested are ignored). ``on_error="collect"`` records a
    :class:`MethodUnavailableError` in the result's ``error`` instead of raising, so a comparison
    survives one inapplicable method.
    """
    chosen = resolve_methods(methods)
    validate_params(params)
    layer = layer or model.default_layer
    model.module(layer)  # validates the path
    x = prepare_input(model, x)
    digest = input_digest(x)
    cls = None if target is None else model.class_index(target)
    if cls is None and cache is not None:
        cls = cache.get((model.key, digest, "top1"))
    ctx = PassContext(model, x, layer, cls, progress=progress, cancel=cancel)
    ctx.plan(set().union(*(m.passes for m in chosen)))
    results: dict[str, MethodResult] = {}
    for m in chosen:
        p = method_params(m, params)
        if ctx.target is not None and cache is not None:
            hit = cache.get(_key(model, digest, layer, ctx.target, m, p))
            if hit is not None:
                results[m.key] = dataclasses.replace(hit, cached=True, seconds=0.0)
                continue
        start = time.perf_counter()
        try:
            computed = m.compute(ctx, p)
        except MethodUnavailableError as exc:
            if on_error == "raise":
                raise
            empty = np.zeros((0,), np.float32)
            results[m.key] = MethodResult(m.key, m.family, empty, empty, None, ctx.resolved_target(),
                                          layer if m.uses_layer else None, 0.0, error=str(exc))
            continue
        raw = computed.raw
        scaled = raw if m.family == "gradient" else minmax(raw)
        info = {"target_name": model.class_name(ctx.resolved_target()), "passes_run": ctx.passes_run,
                **computed.info}
        result = MethodResult(m.key, m.family, _numpy(raw), _numpy(scaled), _numpy(computed.layer_map),
                              ctx.resolved_target(), layer if m.uses_layer else None,
                              time.perf_counter() - start, info)
        results[m.key] = result
        if cache is not None:
            cache.put(_key(model, digest, layer, result.target, m, p), result)
    if cache is not None and ctx.target is not None and target is None:
        cache.put((model.key, digest, "top1"), ctx.target)
    return results


def explain(
    model: ModelHandle,
    x: Union[torch.Tensor, Image.Image],
    methods: Union[str, Sequence[str]],
    target: Optional[Union[int, str]] = None,
    layer: Optional[str] = None,
    *,
    scale: Scale = "minmax",
    progress: Optional[ProgressFn] = None,
    cancel: Optional[CancelToken] = None,
    cache: Optional[LRUCache] = RESULTS,
    **params: Any,
) -> dict[str, np.ndarray]:
    """``{method: map}`` for one image (thin wrapper of :func:`explain_detailed`).

    CAM family: ``(H, W)`` float32 at input resolution, ReLU'd then min-max scaled to [0, 1]
    (``scale="none"``: the raw ReLU'd upsampled values, for a colour scale shared across methods).
    Occlusion: ``(H, W)`` likewise (raw = signed drop of the target probability). Gradient family:
    ``(3, H, W)`` float32 raw attribution w.r.t. the normalized input tensor (never rescaled).
    """
    if scale not in ("minmax", "none"):
        raise ParameterError(f"unknown scale {scale!r}; choose minmax or none")
    results = explain_detailed(model, x, methods, target, layer, progress=progress, cancel=cancel,
                               cache=cache, **params)
    return {k: r.map(scale) for k, r in results.items()}
