"""Deep Dream: amplify what a layer already sees in a photo.

Mordvintsev, Olah & Tyka, "Inceptionism: Going Deeper into Neural Networks", Google Research blog,
2015, https://research.google/blog/inceptionism-going-deeper-into-neural-networks/ and the
accompanying deepdream notebook (https://github.com/google/deepdream): gradient ascent on the L2
norm of a layer's activations, starting from the photo, with

* octaves: process a pyramid of scales (smallest first), carrying the added detail upwards;
* jitter: a random circular shift before every step;
* step normalization: ``x += step_size * g / mean(|g|)``, so the step does not depend on the
  gradient's scale;
* "guided" dreaming: maximize, at every position, the dot product with the best-matching feature
  vector of a guide image (the notebook's ``objective_guide``);
* class-targeted hallucination: maximize a class logit instead of a layer.

Images are RGB in [0, 1] (clamped after every step); the network sees them normalized.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import ParameterError
from ..models import ModelHandle
from ..progress import CancelToken, ProgressFn, check_cancel, report
from .objectives import Target, half_mean_square, make_target, run_to_target
from .params import (OCTAVES_RANGE, SIZE_RANGE, STEPS_RANGE, as_model_input, check_float, check_int,
                     compute_mode)
from .regularizers import random_roll
from .tiles import rgb_uint8

MIN_OCTAVE_SIDE = 32


@dataclass
class DreamResult:
    """``image``: uint8 ``(H, W, 3)`` at the (bounded) size of the input photo; ``history``: the
    objective per step, all octaves in order; ``octave_sizes``: ``(h, w)`` of each octave run."""

    image: np.ndarray
    target: Target
    history: list[float] = field(default_factory=list)
    octave_sizes: list[tuple[int, int]] = field(default_factory=list)


def image_tensor(image: Image.Image, max_side: int, device: torch.device) -> torch.Tensor:
    """PIL image -> ``(1, 3, H, W)`` float RGB in [0, 1], longer side at most ``max_side``."""
    image = image.convert("RGB")
    scale = min(1.0, max_side / max(image.size))
    if scale < 1.0:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.LANCZOS)
    arr = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy())
    return arr.permute(2, 0, 1).unsqueeze(0).float().div(255.0).to(device)


def octave_sizes(h: int, w: int, octaves: int, scale: float) -> list[tuple[int, int]]:
    """Sizes from smallest to full; octaves whose shorter side would fall under 32 px are dropped."""
    sizes = [(round(h / scale ** i), round(w / scale ** i)) for i in range(octaves)]
    kept = [s for s in sizes if min(s) >= MIN_OCTAVE_SIDE] or [(h, w)]
    return kept[::-1]


def guide_features(handle: ModelHandle, guide: Image.Image, target: Target, max_side: int) -> torch.Tensor:
    """The guide's feature vectors at the target layer, ``(C, M)`` (M positions)."""
    if target.class_index is not None or target.channel is not None:
        raise ParameterError("a guide image works with a whole layer, not with a class or a channel")
    with handle.lock, torch.no_grad():
        act = run_to_target(handle, handle.normalize(image_tensor(guide, max_side, handle.device)), target)
    return act[0].float().reshape(act.shape[1], -1)


def guided_objective(act: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
    """Mean over positions of ``a(x) . g*(x)``, ``g*(x)`` = the guide vector with the largest dot
    product with ``a(x)`` (chosen without gradient, as in the deepdream notebook)."""
    feats = act[0].float().reshape(act.shape[1], -1)  # (C, N)
    with torch.no_grad():
        best = (feats.T @ guide).argmax(dim=1)  # (N,)
    return (feats * guide[:, best]).sum(dim=0).mean()


def deep_dream(
    handle: ModelHandle,
    image: Image.Image,
    layer: Optional[str] = None,
    channel: Optional[int] = None,
    *,
    class_index: Union[int, str, None] = None,
    guide: Optional[Image.Image] = None,
    octaves: int = 4,
    octave_scale: float = 1.4,
    steps: int = 10,
    step_size: float = 0.01,
    jitter: int = 32,
    max_side: int = 512,
    seed: int = 0,
    precision: str = "float32",
    channels_last: bool = False,
    preview_every: int = 0,
    progress: Optional[ProgressFn] = None,
    cancel: Optional[CancelToken] = None,
) -> DreamResult:
    """Deep Dream ``image`` on ``layer`` (optionally one ``channel``), a ``class_index`` logit, or
    guided by ``guide``. ``steps`` per octave (total ``steps * octaves``), ``step_size`` in [0, 1]
    RGB units per step (after normalization by the mean absolute gradient), ``jitter`` pixels.
    The photo is first scaled so its longer side is at most ``max_side`` (32..1024).

    Only the network up to ``layer`` runs; ``handle.lock`` is held per step; ``cancel`` is checked
    between steps; ``progress`` gets ``losses={"objective"}`` and a uint8 preview every
    ``preview_every`` steps (and at the end of each octave if ``preview_every`` > 0).
    """
    target = make_target(handle, layer, channel, None, class_index)
    octaves = check_int("octaves", octaves, *OCTAVES_RANGE)
    steps = check_int("steps", steps, *STEPS_RANGE)
    max_side = check_int("max_side", max_side, *SIZE_RANGE)
    step_size = check_float("step_size", step_size, 1e-5, 1.0)
    octave_scale = check_float("octave_scale", octave_scale, 1.01, 4.0)
    jitter = check_int("jitter", jitter, 0, 256)
    gen = torch.Generator().manual_seed(int(seed))
    base = image_tensor(image, max_side, handle.device)
    guide_vecs = guide_features(handle, guide, target, max_side) if guide is not None else None
    sizes = octave_sizes(base.shape[2], base.shape[3], octaves, octave_scale)
    total = steps * len(sizes)
    detail = torch.zeros(1, 3, *sizes[0], device=handle.device)
    history: list[float] = []
    for octave, size in enumerate(sizes):
        octave_base = F.interpolate(base, size=size, mode="bilinear", align_corners=False, antialias=True)
        detail = F.interpolate(detail, size=size, mode="bilinear", align_corners=False)
        img = (octave_base + detail).clamp(0, 1)
        for i in range(steps):
            check_cancel(cancel)
            step = octave * steps + i + 1
            img = img.detach().requires_grad_(True)
            with handle.lock, compute_mode(handle.device, precision):
                seen = as_model_input(handle.normalize(random_roll(img, jitter, gen)), channels_last)
                act = run_to_target(handle, seen, target)
                objective = (guided_objective(act, guide_vecs) if guide_vecs is not None
                             else half_mean_square(act, target))
                (grad,) = torch.autograd.grad(objective, img)
            with torch.no_grad():
                img = (img + step_size * grad / grad.abs().mean().clamp_min(1e-12)).clamp(0, 1)
            history.append(objective.item())
            due = preview_every and (step % preview_every == 0 or i == steps - 1)
            report(progress, step, total, f"octave {octave + 1}/{len(sizes)}", losses={"objective": history[-1]},
                   preview=rgb_uint8(img) if due else None)
        detail = img.detach() - octave_base
    return DreamResult(rgb_uint8(img), target, history, sizes)
