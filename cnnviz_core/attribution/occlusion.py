"""Occlusion (Zeiler & Fergus 2014, Sec. 4.2 and Fig. 7): slide a grey square over the image and map
the drop of the target's score - a class probability, or a unit's activation.

Batched under ``torch.inference_mode``, progress after each batch, the cancel token checked
between batches, the model lock taken per batch. Class targets forward their occluded batches
through :meth:`~cnnviz_core.models.ModelHandle.batch_logits` (BatchNorm folded, channels-last);
unit targets through a forward truncated after the unit's layer. :func:`unit_occlusion` gives the
paper's Fig. 7 pair from ONE full forward per batch: the drop of a unit's activation beside the
drop of a class probability.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from ..errors import ParameterError
from ..hooks import capture
from ..models import ModelHandle
from ..progress import CancelToken, ProgressFn, check_cancel, report
from .passes import PassContext, neuron_positions, unit_scores
from .registry import Computed, OcclusionParams, Paper, Product, register
from .targets import NeuronTarget, UnitTarget

P = Product


def _window_starts(length: int, patch: int, stride: int) -> list[int]:
    starts = list(range(0, length - patch + 1, stride))
    if starts[-1] != length - patch:
        starts.append(length - patch)  # the last window touches the border, so every pixel is covered
    return starts


def _geometry(h: int, w: int, p: OcclusionParams) -> tuple[int, int]:
    patch = max(2, round(min(h, w) / 7)) if p.patch is None else p.patch
    stride = max(1, patch // 2) if p.stride is None else p.stride
    if not (1 <= patch <= min(h, w)) or stride < 1:
        raise ParameterError(f"occlusion needs 1 <= patch <= {min(h, w)} and stride >= 1, got {patch}, {stride}")
    return patch, stride


def occlusion_maps(handle: ModelHandle, x: torch.Tensor, p: OcclusionParams,
                   scores: Callable[[torch.Tensor], torch.Tensor], base: torch.Tensor, *,
                   progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None,
                   label: str = "occlusion windows") -> tuple[torch.Tensor, dict]:
    """``(S, H, W)`` mean drop ``base - scores(occluded)`` of ``S`` scores over the windows covering
    each pixel; ``scores(batch) -> (B, S)`` runs under ``inference_mode`` (the caller's lock)."""
    h, w = int(x.shape[-2]), int(x.shape[-1])
    patch, stride = _geometry(h, w, p)
    grey = handle.normalize(torch.full_like(x, 0.5))
    windows = [(y0, x0) for y0 in _window_starts(h, patch, stride) for x0 in _window_starts(w, patch, stride)]
    total = torch.zeros(base.numel(), h, w, dtype=x.dtype, device=x.device)
    count = torch.zeros(h, w, dtype=x.dtype, device=x.device)
    for start in range(0, len(windows), p.batch_size):
        check_cancel(cancel)
        chunk = windows[start:start + p.batch_size]
        with torch.inference_mode():
            xb = x.repeat(len(chunk), 1, 1, 1)
            for i, (y0, x0) in enumerate(chunk):
                xb[i, :, y0:y0 + patch, x0:x0 + patch] = grey[0, :, y0:y0 + patch, x0:x0 + patch]
            drops = base[None] - scores(xb).to(x.dtype)
            for (y0, x0), drop in zip(chunk, drops):
                total[:, y0:y0 + patch, x0:x0 + patch] += drop[:, None, None]
                count[y0:y0 + patch, x0:x0 + patch] += 1
        report(progress, min(len(windows), start + p.batch_size), len(windows), label)
    raw = torch.where(count > 0, total / count.clamp_min(1), torch.zeros_like(total))
    return raw, {"patch": patch, "stride": stride, "windows": len(windows)}


@register("occlusion", display_name="Occlusion",
          paper=Paper("Zeiler & Fergus", 2014, "Visualizing and Understanding Convolutional Networks",
                      "https://arxiv.org/abs/1311.2901"),
          family="perturbation", passes=(P.LOGITS,), needs=("extra_forwards",), cost="windows",
          class_discriminative=True, params=OcclusionParams, long_running=True, unit_targets=True)
def occlusion(ctx: PassContext, p: OcclusionParams) -> Computed:
    """Occlusion (Zeiler & Fergus 2014, Sec. 4.2): slide a grey square (RGB 0.5, normalized) of
    ``patch`` px with ``stride``; each pixel gets the mean, over the windows covering it, of the drop
    in the target-class probability (for a unit target: of the unit's activation, Fig. 7 (b)).
    Raw map ``(H, W)`` is signed (negative: occluding helped).
    Defaults: ``patch = round(min(H, W) / 7)``, ``stride = patch // 2``."""
    _geometry(*ctx.input_size, p)  # refuse a bad patch before any pass
    if ctx.is_unit:
        unit = ctx.resolved_unit()
        base = unit_scores(ctx.product(P.ACTIVATION), unit, _positions(unit, ctx.x.device))

        def scores(xb: torch.Tensor) -> torch.Tensor:
            with ctx.handle.lock:
                return ctx.unit_scores(xb)[:, None]
        label = "occlusion windows (unit)"
    else:
        target = ctx.resolved_target()
        base = ctx.handle.probabilities(ctx.product(P.LOGITS))[0, target:target + 1]

        def scores(xb: torch.Tensor) -> torch.Tensor:
            return ctx.handle.probabilities(ctx.handle.batch_logits(xb))[:, target:target + 1]
        label = "occlusion windows"
    raw, info = occlusion_maps(ctx.handle, ctx.x, p, scores, base.reshape(1), progress=ctx.progress,
                               cancel=ctx.cancel, label=label)
    return Computed(raw=raw[0], info=info)


def _positions(unit: UnitTarget, device: torch.device) -> Optional[torch.Tensor]:
    return torch.tensor([[unit.y, unit.x]], device=device) if isinstance(unit, NeuronTarget) else None


@dataclass(frozen=True)
class UnitOcclusion:
    """Zeiler & Fergus Fig. 7 for one image: ``unit_drop`` ``(H, W)`` drop of the unit's activation,
    ``class_drop`` ``(H, W)`` drop of the class probability (both signed, mean over the windows
    covering each pixel), for ``unit`` (position resolved) and class ``target``."""

    unit: UnitTarget
    activation: float
    target: int
    probability: float
    unit_drop: np.ndarray
    class_drop: np.ndarray
    info: dict


def unit_occlusion(handle: ModelHandle, x: torch.Tensor, unit: UnitTarget, target: Optional[int] = None,
                   params: Optional[OcclusionParams] = None, *, progress: Optional[ProgressFn] = None,
                   cancel: Optional[CancelToken] = None) -> UnitOcclusion:
    """Occlude ``x`` ``(1, 3, H, W)`` (normalized) and map both drops from ONE full forward per batch
    (the unit's layer captured on the way). ``target``: the class (default: top-1)."""
    from ..inputs import as_model_input

    x = as_model_input(handle, x)
    p = params or OcclusionParams()
    handle.module(unit.layer)

    def both(xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with handle.lock, torch.inference_mode(), capture(handle.model, [unit.layer]) as store:
            logits = handle.model(xb)
        if unit.layer not in store:
            raise ParameterError(f"layer {unit.layer!r} is not used by the forward pass of {handle.name!r}")
        return logits, store[unit.layer]

    logits, act = both(x)
    cls = int(logits[0].argmax()) if target is None else handle.class_index(target)
    if isinstance(unit, NeuronTarget):
        y, xx = (int(v) for v in neuron_positions(act, unit)[0])
        unit = NeuronTarget(unit.layer, unit.channel, y, xx)
    value = unit_scores(act, unit, _positions(unit, x.device))
    prob = handle.probabilities(logits)[0, cls]

    def scores(xb: torch.Tensor) -> torch.Tensor:
        lg, a = both(xb)
        pos = _positions(unit, x.device)
        return torch.stack([unit_scores(a, unit, None if pos is None else pos.expand(len(xb), 2)),
                            handle.probabilities(lg)[:, cls]], dim=1)

    raw, info = occlusion_maps(handle, x, p, scores, torch.stack([value[0], prob]), progress=progress,
                               cancel=cancel, label="occlusion windows (unit and class)")
    maps = raw.detach().to("cpu", torch.float32).numpy()
    return UnitOcclusion(unit, float(value[0]), cls, float(prob), maps[0], maps[1], info)
