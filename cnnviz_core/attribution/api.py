"""Public entry points: :func:`explain` (maps only) and :func:`explain_detailed` (result objects).

One request = one :class:`~.passes.PassContext`: the methods share its forward/backward passes.
Finished results are cached in a thread-safe LRU keyed by ``(model.key, input digest, layer (for
layer-dependent methods), target, method, method parameters)``, so re-running a request (the UI does
on every widget change) costs nothing and different inputs never share an entry.

A target is a class (index, name or ``None`` for the top-1 prediction) or a unit of a layer
(:class:`~.targets.ChannelTarget`, :class:`~.targets.NeuronTarget`). Unit results carry the unit
(layer, channel, position, activation) and its exact receptive field (:mod:`.receptive_field`).
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Literal, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image

from ..cache import LRUCache
from ..errors import MethodUnavailableError, ParameterError
from ..inputs import as_model_input
from ..models import ModelHandle
from ..progress import CancelToken, ProgressFn
from .passes import PassContext, input_digest, unit_scores
from .receptive_field import Box, receptive_fields
from .registry import METHODS, Method, Params, Product, method_params, resolve_methods, validate_params
from .targets import ChannelTarget, ClassTarget, NeuronTarget, Target, UnitTarget, as_target, is_unit

Scale = Literal["minmax", "none"]
#: Results shared by every caller of the process (the app's sessions); pass ``cache=`` to use another.
RESULTS = LRUCache(128)
TargetLike = Union[None, int, str, Target]


@dataclasses.dataclass(frozen=True)
class UnitInfo:
    """The unit a result explains: ``layer``, ``channel``, its position ``y``, ``x`` (feature-map
    cells; ``None`` for a channel's sum), its ``activation`` on the image (the channel's sum or
    maximum for a channel target) and the channel ``reduce`` (``None`` for a neuron)."""

    layer: str
    channel: int
    y: Optional[int]
    x: Optional[int]
    activation: float
    reduce: Optional[str] = None

    def as_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "channel": self.channel, "y": self.y, "x": self.x,
                "activation": self.activation}


@dataclasses.dataclass(frozen=True)
class MethodResult:
    """One method's result. ``raw``: CAM family ``(H, W)`` ReLU'd and upsampled, not rescaled;
    occlusion ``(H, W)`` signed probability drop; gradient family ``(3, H, W)`` raw attribution
    w.r.t. the normalized input. ``scaled``: CAM family / occlusion min-max scaled to [0, 1] after a
    ReLU (all-zero stays zero), gradient family = ``raw``. ``layer_map``: the CAM at layer resolution
    (after its ReLU) or None. ``seconds``: compute time of this method in this process, including
    any shared pass it triggered (0 when ``cached``). ``error``: message when computed with
    ``on_error="collect"`` and the method was unavailable (maps are then empty).
    ``unit`` / ``receptive_field``: for unit targets, the unit explained (``target`` is then -1) and
    its receptive field ``(top, left, bottom, right)`` in input pixels (bottom, right exclusive)."""

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
    unit: Optional[UnitInfo] = None
    receptive_field: Optional[Box] = None

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
    return as_model_input(handle, x)


def _key(handle: ModelHandle, digest: str, layer: str, target: Any, m: Method, p: Params) -> tuple:
    return (handle.key, digest, layer if m.uses_layer or is_unit(target) else None, target, m.key, repr(p))


def unit_seed(activation: torch.Tensor, unit: UnitTarget) -> torch.Tensor:
    """``(C, h, w)`` the support of d(unit) / d(layer output) for the first image: a one-hot for a
    neuron, the channel's map for a channel sum, its maxima for a channel maximum."""
    a = activation[:1].detach().clone().requires_grad_(True)
    pos = torch.tensor([[unit.y, unit.x]], device=a.device) if isinstance(unit, NeuronTarget) else None
    with torch.enable_grad():
        (g,) = torch.autograd.grad(unit_scores(a, unit, pos).sum(), a)
    return (g[0] != 0).to(torch.float32)


def unit_info(ctx: PassContext) -> tuple[UnitInfo, Optional[Box]]:
    """The resolved unit of a unit request, its activation and its receptive field."""
    unit = ctx.resolved_unit()
    act = ctx.product(Product.ACTIVATION)
    pos = torch.tensor([[unit.y, unit.x]], device=act.device) if isinstance(unit, NeuronTarget) else None
    value = float(unit_scores(act, unit, pos)[0])
    try:
        box = receptive_fields(ctx.handle, unit.layer, ctx.input_size, unit_seed(act, unit)[None])[0]
    except MethodUnavailableError:  # a model whose geometry cannot be traced: the projection still stands
        box = None
    if isinstance(unit, NeuronTarget):
        info = UnitInfo(unit.layer, unit.channel, unit.y, unit.x, value)
    else:
        y = x = None
        if unit.reduce == "max":
            flat = int(act[0, unit.channel].reshape(-1).argmax())
            y, x = flat // act.shape[-1], flat % act.shape[-1]
        info = UnitInfo(unit.layer, unit.channel, y, x, value, unit.reduce)
    return info, box


def _unit_refusal(m: Method, unit: UnitTarget) -> str:
    able = ", ".join(k for k, v in METHODS.items() if v.unit_targets)
    return f"{m.key} explains classes, not the unit {unit.describe()}; unit targets work with {able}"


def explain_detailed(
    model: ModelHandle,
    x: Union[torch.Tensor, Image.Image],
    methods: Union[str, Sequence[str]],
    target: TargetLike = None,
    layer: Optional[str] = None,
    *,
    progress: Optional[ProgressFn] = None,
    cancel: Optional[CancelToken] = None,
    cache: Optional[LRUCache] = RESULTS,
    on_error: Literal["raise", "collect"] = "raise",
    options: Optional[Mapping[str, Union[Params, Mapping[str, Any]]]] = None,
    **params: Any,
) -> dict[str, MethodResult]:
    """Compute ``methods`` (keys of ``METHODS``) for one image; see :class:`MethodResult`.

    ``target``: class index or name (default: the top-1 prediction), or a unit target
    (:class:`~.targets.ChannelTarget`, :class:`~.targets.NeuronTarget`; the unit's layer is then
    used, ``layer`` is ignored). ``layer``: module path (default ``model.default_layer``).
    ``params``: flat method parameters (e.g. ``batch_size``, ``channels``, ``patch``, ``stride``,
    ``samples``, ``noise``, ``steps``, ``baseline``), each a parameter of some registered method,
    applied to every requested method that has it (those of methods not requested are ignored).
    ``options``: typed parameters per method, e.g. ``{"scorecam": ScoreCAMParams(batch_size=8)}``
    (they override the flat ones for that method only). ``on_error="collect"`` records a
    :class:`MethodUnavailableError` in the result's ``error`` instead of raising, so a comparison
    survives one inapplicable method.
    """
    chosen = resolve_methods(methods)
    validate_params(params, options)
    spec = as_target(target, model.class_index)
    unit = spec if is_unit(spec) else None
    layer = unit.layer if unit is not None else (layer or model.default_layer)
    model.module(layer)  # validates the path
    typed = {m.key: method_params(m, params, options) for m in chosen}  # validates values before any pass
    x = as_model_input(model, x)
    digest = input_digest(x)
    cls = spec.index if isinstance(spec, ClassTarget) else None
    if unit is None and cls is None and cache is not None:
        cls = cache.get((model.key, digest, "top1"))
    ctx = PassContext(model, x, layer, unit if unit is not None else cls, progress=progress, cancel=cancel)
    ctx.plan(set().union(*(m.passes for m in chosen if unit is None or m.unit_targets)))
    ctx.plan_methods(chosen, typed)  # extra layers (multi-layer fusion, FullGrad) join the same pass
    results: dict[str, MethodResult] = {}
    described: Optional[tuple[UnitInfo, Optional[Box]]] = None

    def key_target() -> Any:
        return unit if unit is not None else ctx.target

    for m in chosen:
        p = typed[m.key]
        if key_target() is not None and cache is not None:
            hit = cache.get(_key(model, digest, layer, key_target(), m, p))
            if hit is not None:
                results[m.key] = dataclasses.replace(hit, cached=True, seconds=0.0)
                continue
        start = time.perf_counter()
        try:
            if unit is not None and not m.unit_targets:
                raise MethodUnavailableError(_unit_refusal(m, unit))
            computed = m.compute(ctx, p)
        except MethodUnavailableError as exc:
            if on_error == "raise":
                raise
            empty = np.zeros((0,), np.float32)
            results[m.key] = MethodResult(m.key, m.family, empty, empty, None,
                                          -1 if unit is not None else ctx.resolved_target(),
                                          layer if m.uses_layer or unit is not None else None, 0.0, error=str(exc))
            continue
        raw = computed.raw
        scaled = raw if m.family == "gradient" else minmax(raw)
        if unit is not None:
            if described is None:
                described = unit_info(ctx)
            info = {"target_name": ctx.resolved_unit().describe(), "passes_run": ctx.passes_run, **computed.info}
            result = MethodResult(m.key, m.family, _numpy(raw), _numpy(scaled), _numpy(computed.layer_map), -1,
                                  layer, time.perf_counter() - start, info, unit=described[0],
                                  receptive_field=described[1])
        else:
            info = {"target_name": model.class_name(ctx.resolved_target()), "passes_run": ctx.passes_run,
                    **computed.info}
            result = MethodResult(m.key, m.family, _numpy(raw), _numpy(scaled), _numpy(computed.layer_map),
                                  ctx.resolved_target(), layer if m.uses_layer else None,
                                  time.perf_counter() - start, info)
        results[m.key] = result
        if cache is not None:
            cache.put(_key(model, digest, layer, key_target(), m, p), result)
    if cache is not None and unit is None and ctx.target is not None and cls is None:
        cache.put((model.key, digest, "top1"), ctx.target)
    return results


def explain(
    model: ModelHandle,
    x: Union[torch.Tensor, Image.Image],
    methods: Union[str, Sequence[str]],
    target: TargetLike = None,
    layer: Optional[str] = None,
    *,
    scale: Scale = "minmax",
    progress: Optional[ProgressFn] = None,
    cancel: Optional[CancelToken] = None,
    cache: Optional[LRUCache] = RESULTS,
    options: Optional[Mapping[str, Union[Params, Mapping[str, Any]]]] = None,
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
                               cache=cache, options=options, **params)
    return {k: r.map(scale) for k, r in results.items()}


__all__ = ["RESULTS", "ChannelTarget", "ClassTarget", "MethodResult", "NeuronTarget", "UnitInfo", "explain",
           "explain_detailed", "minmax", "prepare_input"]
