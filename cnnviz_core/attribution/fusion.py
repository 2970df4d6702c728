"""Multi-layer CAM fusion (``multilayer_cam``) and RefineCAM (``refinecam``): CAMs of several layers,
from ONE forward and ONE backward, fused into one map.

Both compute a CAM method (``base_method``: any gradient/activation CAM of the registry, e.g.
``gradcam``, ``gradcam++``, ``layercam``, ``xgradcam``, ``hirescam``, ``eigencam``) at each of the
``layers`` and fuse the per-layer maps. The layers are planned on the request's shared pass
(:meth:`~.passes.PassContext.plan_layers`), so every layer's activation and gradient come from the
same forward and the same ``autograd.grad`` call as the rest of the request (pytorch-grad-cam
runs one pass for its list of layers too; its RefineCAM runs one pass per layer). Each layer's map
is computed exactly as the base method computes it alone (the base runs on a
:meth:`~.passes.PassContext.layer_view`), ReLU'd, then min-max scaled to [0, 1] at its layer's
resolution (``M_l``). Fusions:

* ``multilayer_cam`` with ``fusion="mean"`` (pytorch-grad-cam's multi-layer ``target_layers``):
  ``mean_l up(M_l)``, each ``M_l`` upsampled to the input first.
* ``multilayer_cam`` with ``fusion="max"`` (TorchCAM's ``fuse_cams``, the element-wise maximum of
  the LayerCAM paper, Jiang et al. 2021): every ``M_l`` upsampled to the largest layer resolution,
  the element-wise maximum taken there, then upsampled to the input. (TorchCAM's LayerCAM extractor
  also applies ``tanh(2 M_l)`` before its maximum; we do not: the fusion is the same for every base.)
* ``refinecam`` (RefineCAM, Domeniconi 2026, "How to Evaluate and Refine your CAM"): the
  element-wise PRODUCT ``prod_l up(M_l)`` at input resolution, so only regions salient at every
  depth survive; the coarse deep map denoises the fine shallow ones. Default base Grad-CAM++ as in
  the paper's code (pytorch-grad-cam's ``RefineCAM``, written by the paper's author, which
  multiplies the per-layer maps at input resolution like this; TorchCAM's multiplies at the largest
  layer resolution instead: r >= 0.99 between the two with Grad-CAM on our tests).

Bilinear upsampling everywhere (``align_corners=False``, pgc's cv2 and TorchCAM's interpolate).
Default ``layers`` (None): the request's layer and the outputs that end the two stages before it:
among the children of the layer's ancestors (and of the layer itself), the last module in execution
order whose output has each of the two next larger resolutions - e.g. ``layer2, layer3, layer4``
for a ResNet, the ReLUs before the last two max-pools for a VGG, ``denseblock2, denseblock3,
norm5`` for a DenseNet.
The output shapes are found once per (model, input size) by one forward of a zero image with
shape-recording hooks (cached, not counted in ``passes_run``).

Output: ``(H, W)`` raw fused map in [0, 1], min-max scaled by :mod:`.api`; ``layer_map``: for ``max`` the fused map at the largest layer resolution, else None.
``info``: the layers, the base method and the fusion. ``aug_smooth`` is pgc's test-time augmentation
of the whole fused map (six inputs, each fused map min-max scaled, averaged); ``eigen_smooth`` is
handed to the base method at each layer (pgc applies it per layer too).
"""
from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Any, Literal, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import MethodUnavailableError, ParameterError
from ..progress import check_cancel
from .cam import WeightedCAM, augmented_contexts, upsample
from .passes import LAYER_PRODUCTS, LayerPlan, PassContext, layer_planner
from .registry import METHODS, CAMParams, Computed, Method, Paper, Product, register

P = Product
Fusion = Literal["mean", "max"]
FUSIONS = ("mean", "max")
#: Methods that cannot be a base: CAM needs the GAP head right after its layer; the fusions themselves.
_NOT_BASES = {"cam", "multilayer_cam", "refinecam"}


def base_methods() -> list[str]:
    """Registry keys usable as ``base_method``: CAM-family :class:`~.cam.WeightedCAM` methods that
    read only the layer's activation and gradient from the shared pass (no extra forwards)."""
    return [k for k, m in METHODS.items() if _is_base(m)]


def _is_base(m: Method) -> bool:
    return (m.key not in _NOT_BASES and m.family == "cam" and not m.long_running
            and set(m.passes) <= LAYER_PRODUCTS | {P.LOGITS}
            and isinstance(getattr(m.compute, "__self__", None), WeightedCAM))


def parse_layers(value: Union[None, str, Sequence[str]]) -> Optional[tuple[str, ...]]:
    """``"layer2, layer3,layer4"`` (commas, or TorchCAM demo's ``+``) or a sequence -> tuple of
    paths, duplicates dropped, order kept; None or empty -> None (the default layers)."""
    if value is None:
        return None
    if isinstance(value, str):
        items = value.replace("+", ",").split(",")
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise ParameterError(f"layers must be a comma-separated list of layer paths, got {value!r}")
    if not all(isinstance(v, str) for v in items):
        raise ParameterError(f"layers must be layer paths (strings), got {value!r}")
    out = tuple(dict.fromkeys(v.strip() for v in items if v.strip()))
    return out or None


def _check_base(key: Any) -> str:
    key = str(key).strip()
    choices = base_methods()
    if key not in choices:
        raise ParameterError(f"unknown base_method {key!r}; choose from {', '.join(choices)}")
    return key


@dataclass(frozen=True)
class FusionParams(CAMParams):
    """``layers``: comma-separated layer paths (None: the request's layer and the two stages before
    it); ``base_method``: the CAM computed at each layer; ``fusion``: ``mean`` (pytorch-grad-cam)
    or ``max`` (TorchCAM)."""

    layers: Optional[str] = None
    base_method: str = "gradcam"
    fusion: Fusion = "mean"

    def __post_init__(self) -> None:
        super().__post_init__()
        self._set("layers", parse_layers(self.layers))
        self._set("base_method", _check_base(self.base_method))
        if self.fusion not in FUSIONS:
            raise ParameterError(f"unknown fusion {self.fusion!r}; choose mean or max")


@dataclass(frozen=True)
class RefineCAMParams(CAMParams):
    """``layers``: at least two comma-separated layer paths (None: the request's layer and the two
    stages before it); ``base_method``: the CAM computed at each layer (default Grad-CAM++)."""

    layers: Optional[str] = None
    base_method: str = "gradcam++"

    def __post_init__(self) -> None:
        super().__post_init__()
        self._set("layers", parse_layers(self.layers))
        if self.layers is not None and len(self.layers) < 2:
            raise ParameterError(f"refinecam needs at least two layers, got {', '.join(self.layers)}")
        self._set("base_method", _check_base(self.base_method))


# ---- default layers ----------------------------------------------------------------------------
_NOT_A_MAP = (nn.Identity, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
_SHAPES: "weakref.WeakKeyDictionary[nn.Module, dict[tuple[int, int], list[tuple[str, int, int]]]]" = \
    weakref.WeakKeyDictionary()
_SHAPES_LOCK = threading.Lock()


def _map_shapes(ctx: PassContext) -> list[tuple[str, int, int]]:
    """``(path, h, w)`` of every module output that is a ``(N, C, h, w)`` map with ``h * w > 1``, in
    the order the forwards finish (one forward of a zero input of the request's size, under the
    model lock and ``inference_mode``; hooks removed on every path). Cached per model and size."""
    size = ctx.input_size
    with _SHAPES_LOCK:
        cached = _SHAPES.get(ctx.model, {}).get(size)
    if cached is not None:
        return cached
    order: list[tuple[str, int, int]] = []

    def make_hook(path: str):
        def hook(_m: nn.Module, _i: Any, out: Any) -> None:
            if isinstance(out, torch.Tensor) and out.ndim == 4 and out.shape[2] * out.shape[3] > 1:
                order.append((path, int(out.shape[2]), int(out.shape[3])))
        return hook

    handles = []
    with ctx.handle.lock:
        try:
            for path, m in ctx.model.named_modules():
                if path and not isinstance(m, _NOT_A_MAP):
                    try:
                        handles.append(m.register_forward_hook(make_hook(path)))
                    except RuntimeError as exc:  # TorchScript modules take no hooks
                        raise MethodUnavailableError(f"the layers of {ctx.handle.name!r} cannot be hooked "
                                                     f"({str(exc).splitlines()[0][:80]})") from None
            with torch.inference_mode():
                ctx.model(torch.zeros_like(ctx.x))
        finally:
            for h in handles:
                h.remove()
    with _SHAPES_LOCK:
        _SHAPES.setdefault(ctx.model, {})[size] = order
    return order


def default_layers(ctx: PassContext, stages: int = 2) -> tuple[str, ...]:
    """The request's layer preceded by the outputs that end the ``stages`` stages before it (module
    doc), shallow to deep. Just the layer when it is not a spatial map or nothing precedes it."""
    order = _map_shapes(ctx)
    ends = [i for i, (path, _, _) in enumerate(order) if path == ctx.layer]
    if not ends:
        return (ctx.layer,)
    _, h, w = order[ends[-1]]
    parts = ctx.layer.split(".")
    # stage-level modules only: children of the layer's ancestors (its siblings, its parent's
    # siblings...) or of the layer itself - never modules deep inside a block (ConvNeXt's blocks
    # even permute to channels-last inside)
    parents = {".".join(parts[:i]) for i in range(len(parts) + 1)}
    area, chosen = h * w, []
    for path, hh, ww in reversed(order[:ends[-1]]):
        if path.rpartition(".")[0] not in parents or hh * ww <= area:
            continue
        chosen.append(path)
        area = hh * ww
        if len(chosen) == stages:
            break
    return tuple(reversed(chosen)) + (ctx.layer,)


def layers_of(ctx: PassContext, p: Union[FusionParams, RefineCAMParams]) -> tuple[str, ...]:
    layers = p.layers if p.layers is not None else default_layers(ctx)
    for layer in layers:
        ctx.handle.module(layer)  # ParameterError for a path the model lacks
    return layers


def _plan(ctx: PassContext, p: Union[FusionParams, RefineCAMParams]) -> LayerPlan:
    if not getattr(ctx.handle, "hookable", True):
        raise MethodUnavailableError("multi-layer CAMs need hooks on the layers, and this model's layers "
                                     "cannot be hooked (TorchScript)")
    products = set(METHODS[p.base_method].passes) & LAYER_PRODUCTS
    return {layer: products for layer in layers_of(ctx, p)}


layer_planner("multilayer_cam")(_plan)
layer_planner("refinecam")(_plan)


# ---- fusion ------------------------------------------------------------------------------------
def _unit(m: torch.Tensor) -> torch.Tensor:
    lo, hi = m.min(), m.max()
    return (m - lo) / (hi - lo) if hi > lo else torch.zeros_like(m)


def layer_maps(ctx: PassContext, layers: Sequence[str], p: Union[FusionParams, RefineCAMParams],
               info: dict[str, Any]) -> list[torch.Tensor]:
    """The base method's ReLU'd map of each layer at its layer's resolution, scaled to [0, 1]."""
    base = METHODS[p.base_method]
    owner = base.compute.__self__  # type: ignore[attr-defined]  # checked by _is_base
    fields = {f for f in ("eigen_smooth",) if hasattr(base.params_type, "__dataclass_fields__")
              and f in base.params_type.__dataclass_fields__}
    bp = base.params_type(**{f: getattr(p, f) for f in fields})
    out = []
    for layer in layers:
        part: dict[str, Any] = {}
        out.append(_unit(owner.layer_map(ctx.layer_view(layer), bp, part).clamp(min=0)))
        if part:
            info.setdefault("per_layer", {})[layer] = part
    return out


def fuse(maps: Sequence[torch.Tensor], how: Literal["mean", "max", "product"],
         size: tuple[int, int]) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """``(fused (H, W), fused at layer resolution or None)`` of per-layer [0, 1] maps (module doc)."""
    if how == "max":
        shape = (max(m.shape[0] for m in maps), max(m.shape[1] for m in maps))
        ups = [m if tuple(m.shape) == shape else
               F.interpolate(m[None, None], size=shape, mode="bilinear", align_corners=False)[0, 0] for m in maps]
        low = torch.stack(ups).amax(dim=0)
        return upsample(low, size), low
    ups = torch.stack([upsample(m, size) for m in maps])
    return (ups.mean(dim=0) if how == "mean" else ups.prod(dim=0)), None


def _fused(ctx: PassContext, layers: Sequence[str], p: Union[FusionParams, RefineCAMParams],
           how: Literal["mean", "max", "product"], info: dict[str, Any]) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    maps = layer_maps(ctx, layers, p, info)
    return fuse(maps, how, ctx.input_size)


def _compute(ctx: PassContext, p: Union[FusionParams, RefineCAMParams], how: Literal["mean", "max", "product"],
             minimum: int) -> Computed:
    layers = layers_of(ctx, p)
    if len(layers) < minimum:
        raise MethodUnavailableError(f"refinecam needs at least two layers; {ctx.handle.name!r} has no spatial "
                                     f"stage before {ctx.layer!r} (give layers=...)")
    info: dict[str, Any] = {"layers": list(layers), "base_method": p.base_method, "fusion": how}
    if not p.aug_smooth:
        raw, low = _fused(ctx, layers, p, how, info)
        return Computed(raw=raw, layer_map=low, info=info)
    # every layer the request planned (FullGrad's, other fusions'), so each augmentation runs one pass
    plan = {**ctx.planned_layers, **{k: set(v) for k, v in _plan(ctx, p).items()}}
    contexts = augmented_contexts(ctx)
    total: Optional[torch.Tensor] = None
    for sub, flipped in contexts:
        check_cancel(ctx.cancel)
        sub.plan_layers(plan)  # a sub-context whose pass already ran runs one more for these layers
        m = _unit(_fused(sub, layers, p, how, info if sub is ctx else {})[0])
        m = m.flip(-1) if flipped else m
        total = m if total is None else total + m
    assert total is not None
    info["aug_smooth"] = (f"mean of {len(contexts)} test-time augmentations (horizontal flip x intensity "
                          "0.9/1/1.1), each fused map min-max scaled")
    return Computed(raw=total / len(contexts), info=info)


_COMMON = dict(family="cam", passes=(P.ACTIVATION, P.LAYER_GRAD), needs=("gradients",),
               cost="1 (one shared pass for all layers)", class_discriminative=True)


@register("multilayer_cam", display_name="Multi-layer CAM fusion",
          paper=Paper("Jiang et al.", 2021, "LayerCAM: Exploring Hierarchical Class Activation Maps for "
                      "Localization", "https://doi.org/10.1109/TIP.2021.3089943"),
          params=FusionParams, **_COMMON)  # type: ignore[arg-type]
def multilayer_cam(ctx: PassContext, p: FusionParams) -> Computed:
    """Multi-layer CAM fusion: a CAM method at several layers from one pass, per-layer min-max scaled,
    fused by mean (pytorch-grad-cam) or element-wise max (TorchCAM, LayerCAM paper). ``(H, W)`` in [0, 1]."""
    return _compute(ctx, p, p.fusion, 1)


@register("refinecam", display_name="RefineCAM",
          paper=Paper("Domeniconi et al.", 2026, "How to Evaluate and Refine your CAM",
                      "https://arxiv.org/abs/2605.14641"),
          params=RefineCAMParams, **_COMMON)  # type: ignore[arg-type]
def refinecam(ctx: PassContext, p: RefineCAMParams) -> Computed:
    """RefineCAM (2026): the element-wise product of a CAM method's per-layer min-max scaled maps at
    two or more layers (one pass), at input resolution. ``(H, W)`` in [0, 1]."""
    return _compute(ctx, p, "product", 2)
