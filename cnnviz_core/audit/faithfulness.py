"""Faithfulness and localization scores for a BATCH of images and maps (audit scale).

The definitions are those of :mod:`cnnviz_core.metrics` (used as they are for the pointing games
and the saliency / substrates); what this module adds is batching for whole image sets:

* **Deletion / insertion AUC** - Petsiuk, Das & Saenko (2018), "RISE", https://arxiv.org/abs/1806.07421:
  :func:`curve_aucs` computes, for N images and several methods at once, the same curves as
  :func:`cnnviz_core.metrics.causal_curve` with ``step = H * W / steps`` pixels per step (pixels
  ranked by the saliency, ties in raster order; deletion substrate = zeros in the normalized
  space, insertion substrate = Gaussian blur, kernel 11, sigma 5; target-class probability;
  trapezoidal AUC over [0, 1], in [0, 1]; deletion: lower is better, insertion: higher). Default
  ``steps=16`` (the dashboard uses ~100 points per curve; the area differs only by discretization).
  The perturbed inputs of all images and methods go through the model in chunks of ``chunk``.
* **Pointing game** - Zhang et al. (2016), https://arxiv.org/abs/1608.00507, with the paper's 15 px
  tolerance at 224 px scaled to the input size (:func:`pointing_tolerance`), and the **energy
  pointing game** - Wang et al. (2020, Score-CAM): :func:`cnnviz_core.metrics.pointing_game` and
  :func:`cnnviz_core.metrics.energy_in_mask` on the target's object mask.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ParameterError
from ..metrics.causal import substrate_of
from ..models import ModelHandle

CURVE_METRICS = ("deletion", "insertion")
METRICS = (*CURVE_METRICS, "pointing")
POINTING_TOLERANCE_224 = 15


def check_metrics(names: Sequence[str]) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip() for n in names if n.strip()))
    bad = [n for n in names if n not in METRICS]
    if bad:
        raise ParameterError(f"unknown metric {bad[0]!r}; choose from {', '.join(METRICS)}")
    return names


def _probabilities(handle: ModelHandle, batch: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Target-class probability of each input (through the model's faster batch twin)."""
    logits = handle.batch_logits(batch)
    return handle.probabilities(logits.float()).gather(1, targets[:, None])[:, 0]


def curve_aucs(handle: ModelHandle, x: torch.Tensor, saliency: Mapping[str, torch.Tensor],
               targets: torch.Tensor, *, metrics: Sequence[str] = CURVE_METRICS, steps: int = 16,
               chunk: int = 128) -> dict[str, dict[str, torch.Tensor]]:
    """Deletion/insertion AUCs: ``{method: {metric: (N,)}}`` for inputs ``x`` (N, 3, H, W), one
    saliency ``(N, H, W)`` per method and the target classes (N,). ``steps`` (>= 2) perturbation
    steps; ``chunk`` images per forward. The curve end points do not depend on the map, so they
    are computed once per image and shared by every method: the perturbed forwards per image are
    ``2 + methods * (steps - 1)`` per curve instead of ``methods * (steps + 1)``."""
    if steps < 2:
        raise ParameterError(f"steps must be >= 2, got {steps}")
    bad = [m for m in metrics if m not in CURVE_METRICS]
    if bad:
        raise ParameterError(f"unknown curve metric {bad[0]!r}; choose from {', '.join(CURVE_METRICS)}")
    n, _, h, w = x.shape
    x, targets = x.detach(), targets.to(x.device)
    counts = torch.round(torch.linspace(0, h * w, steps + 1, device=x.device)).long()[1:-1]
    keys = list(saliency)
    order = torch.stack([saliency[k].detach().reshape(n, -1).to(x.device) for k in keys])
    order = order.argsort(dim=2, descending=True, stable=True)  # (methods, N, HW)
    position = torch.arange(h * w, device=x.device).expand_as(order)
    ranks = torch.empty_like(order).scatter_(2, order, position)  # rank of each pixel
    out: dict[str, dict[str, torch.Tensor]] = {key: {} for key in saliency}
    for name in metrics:
        if name == "deletion":  # x -> zeros (the mean colour in the normalized space)
            start, end = x, substrate_of(handle, x, "zeros")
        else:  # blurred x -> x
            start, end = substrate_of(handle, x, "blur"), x
        first = _probabilities(handle, start, targets)
        last = _probabilities(handle, end, targets)
        total = len(keys) * n * (steps - 1)
        inner = torch.empty(total, device=x.device)
        for lo in range(0, total, chunk):
            idx = torch.arange(lo, min(lo + chunk, total), device=x.device)
            method, rest = idx // (n * (steps - 1)), idx % (n * (steps - 1))
            img, step = rest // (steps - 1), rest % (steps - 1)
            changed = (ranks[method, img] < counts[step][:, None]).reshape(-1, 1, h, w)
            inner[idx] = _probabilities(handle, torch.where(changed, end[img], start[img]), targets[img])
        for k, key in enumerate(keys):
            curve = torch.cat([first[:, None], inner[k * n * (steps - 1):(k + 1) * n * (steps - 1)]
                               .reshape(n, steps - 1), last[:, None]], dim=1)
            out[key][name] = (curve.sum(1) - (curve[:, 0] + curve[:, -1]) / 2) / steps
    return out


def pointing_tolerance(input_side: int) -> int:
    """The paper's 15 px tolerance at 224 px, scaled to the model's input side and rounded to whole
    pixels (9 px at 128). The one definition: the audit and the dashboard's leaderboard both use it,
    so they score the same map the same way."""
    return int(round(POINTING_TOLERANCE_224 * input_side / 224))


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a bool mask to ``size`` (H, W) (maps and masks must agree)."""
    if mask.shape == tuple(size):
        return mask
    t = torch.from_numpy(mask.astype(np.float32))[None, None]
    return F.interpolate(t, size=size, mode="nearest")[0, 0].numpy() > 0.5


def object_mask(mask_values: np.ndarray, target: int, object_classes: Sequence[int],
                object_values: Sequence[int]) -> Optional[np.ndarray]:
    """Bool mask of the objects of class ``target`` in a scene mask (value k = object k); for a
    binary mask (no object list) every non-zero pixel. None when the target is not in the scene."""
    if not object_classes:
        return mask_values > 0
    values = [v for c, v in zip(object_classes, object_values) if c == target]
    return np.isin(mask_values, values) if values else None
