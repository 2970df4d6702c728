"""Localization metrics on scenes with ground-truth masks.

* Pointing game (Zhang et al. 2016/2018, "Top-down Neural Attention by Excitation Backprop",
  https://arxiv.org/abs/1608.00507): a hit when the map's maximum lies in the object's mask (or
  within ``tolerance`` pixels of it; TorchRay uses 15 px on VOC/COCO).
* Energy-based pointing game (Wang et al. 2020, Score-CAM, https://arxiv.org/abs/1910.01279,
  Sec. 4.2): the share of the map's (positive) energy that falls inside the mask.

:func:`pointing_game_table` runs both over generated scenes (:mod:`cnnviz_core.scenes`), one target
per present object, for several methods at once (one shared pass per target).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image
from scipy.ndimage import distance_transform_edt

from ..errors import ParameterError
from ..models import ModelHandle
from ..progress import CancelToken, ProgressFn, check_cancel, report
from .causal import saliency_2d
from .registry import MetricResult, NoParams, Paper, Params, need, real, register_metric


def _map_and_mask(saliency, mask) -> tuple[np.ndarray, np.ndarray]:
    sal = saliency_2d(saliency).numpy()
    mask = np.asarray(mask).astype(bool)
    if sal.shape != mask.shape:
        raise ParameterError(f"saliency map {sal.shape} and mask {mask.shape} differ in size")
    return sal, mask


def pointing_game(saliency: Union[np.ndarray, torch.Tensor], mask: np.ndarray, tolerance: float = 0.0) -> bool:
    """True when the map's maximum lies in ``mask`` or within ``tolerance`` px (Euclidean) of it.
    A constant map (e.g. all zeros) points nowhere: a miss."""
    sal, mask = _map_and_mask(saliency, mask)
    if not mask.any() or sal.max() == sal.min():
        return False
    y, x = np.unravel_index(int(np.argmax(sal)), sal.shape)
    if tolerance <= 0:
        return bool(mask[y, x])
    return bool(distance_transform_edt(~mask)[y, x] <= tolerance)


def energy_in_mask(saliency: Union[np.ndarray, torch.Tensor], mask: np.ndarray) -> float:
    """Share of the positive energy ``sum(max(s, 0))`` inside ``mask`` (0 for an all-zero map)."""
    sal, mask = _map_and_mask(saliency, mask)
    sal = np.maximum(sal, 0)
    total = float(sal.sum())
    return float(sal[mask].sum()) / total if total > 0 else 0.0


@dataclass(frozen=True)
class PointingRow:
    """Per method over all (scene, present object) pairs: ``pointing`` = share of hits,
    ``energy`` = mean energy share in the object's mask, ``energy_wins`` = share of pairs where the
    object's own mask holds more of the map's energy than the other object's mask (two-object
    scenes), ``n`` = number of pairs."""

    method: str
    pointing: float
    energy: float
    energy_wins: float
    n: int
    class_discriminative: bool
    pointing_by_tolerance: dict[float, float]


def pointing_game_table(
    handle: ModelHandle, methods: Sequence[str], scenes: Iterable, *, layer: Optional[str] = None,
    tolerance: Union[float, Sequence[float]] = 0.0, progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None,
    **params,
) -> list[PointingRow]:
    """Pointing-game table of ``methods`` over ``scenes`` (objects with ``class_index`` and
    ``mask_value``; scene size must equal the model's input size). Gradient maps are reduced to
    ``max_c |.|``, so methods that are not class-discriminative (guided backprop) are measured as
    they are."""
    from ..attribution import METHODS, explain

    scenes = list(scenes)
    tolerances = [float(tolerance)] if isinstance(tolerance, (int, float)) else [float(t) for t in tolerance]
    hits: dict[tuple[str, float], list[bool]] = {(m, t): [] for m in methods for t in tolerances}
    energy = {m: [] for m in methods}
    wins = {m: [] for m in methods}
    for i, scene in enumerate(scenes):
        check_cancel(cancel)
        if scene.mask.shape != (handle.input_size, handle.input_size):
            raise ParameterError(f"scene size {scene.mask.shape} differs from the model input {handle.input_size}")
        x = handle.preprocess(Image.fromarray(scene.image))
        for obj in scene.objects:
            own = scene.mask == obj.mask_value
            others = [scene.mask == o.mask_value for o in scene.objects if o is not obj]
            maps = explain(handle, x, list(methods), target=obj.class_index, layer=layer, cache=None, **params)
            for m in methods:
                for t in tolerances:
                    hits[m, t].append(pointing_game(maps[m], own, t))
                energy[m].append(energy_in_mask(maps[m], own))
                if others:
                    wins[m].append(energy[m][-1] > max(energy_in_mask(maps[m], o) for o in others))
        report(progress, i + 1, len(scenes), "pointing game scenes")
    return [PointingRow(m, float(np.mean(hits[m, tolerances[0]])), float(np.mean(energy[m])),
                        float(np.mean(wins[m])) if wins[m] else float("nan"), len(energy[m]),
                        METHODS[m].class_discriminative, {t: float(np.mean(hits[m, t])) for t in tolerances})
            for m in methods]


def format_table(rows: Sequence[PointingRow]) -> str:
    """A plain-text table: one pointing column per tolerance, then the energy columns."""
    tols = list(rows[0].pointing_by_tolerance) if rows else []
    head = "".join(f"  point@{t:g}px" for t in tols)
    lines = [f"{'method':<22}{head}  energy-in-mask  own>other  n     class-discr.", "-" * (68 + 13 * len(tols))]
    for r in rows:
        cols = "".join(f"  {r.pointing_by_tolerance[t]:>10.1%}" for t in tols)
        lines.append(f"{r.method:<22}{cols}  {r.energy:14.1%}  {r.energy_wins:9.1%}  {r.n:<5} "
                     f"{'yes' if r.class_discriminative else 'no'}")
    return "\n".join(lines)


# ---- registered metrics -----------------------------------------------------------------------------

@dataclass(frozen=True)
class PointingParams(Params):
    """``tolerance``: a hit within this many pixels of the mask counts (TorchRay: 15 px)."""

    tolerance: float = 0.0

    def __post_init__(self) -> None:
        self._set("tolerance", real("tolerance", self.tolerance, low=0.0))


@register_metric(
    "pointing_game", display_name="Pointing game",
    paper=Paper("Zhang, Bargal, Lin, Brandt, Shen & Sclaroff", 2018, "Top-down Neural Attention by Excitation Backprop",
                "https://arxiv.org/abs/1608.00507"),
    reference="TorchRay (pointing game)", higher_is_better=True, value_range="{0, 1}", cost="no forward",
    needs=("mask",), params=PointingParams,
)
def pointing_game_metric(handle, x: torch.Tensor, saliency_map, target, params: PointingParams = PointingParams(),
                         progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None, *,
                         explain=None, mask=None) -> MetricResult:
    """1 when the map's maximum lies in the object's mask (within ``tolerance`` px), else 0 (:func:`pointing_game`)."""
    mask = need("pointing_game", "the object's ground-truth mask", mask)
    return MetricResult("pointing_game", float(pointing_game(saliency_map, mask, params.tolerance)), True,
                        details={"tolerance": params.tolerance})


@register_metric(
    "energy_pointing_game", display_name="Energy pointing game",
    paper=Paper("Wang, Wang, Du, Yang, Zhang, Ding, Mardziel & Hu", 2020,
                "Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural Networks",
                "https://arxiv.org/abs/1910.01279"),
    reference="Score-CAM paper (Sec. 4.2)", higher_is_better=True, value_range="[0, 1]", cost="no forward",
    needs=("mask",),
)
def energy_pointing_game_metric(handle, x: torch.Tensor, saliency_map, target, params: NoParams = NoParams(),
                                progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None, *,
                                explain=None, mask=None) -> MetricResult:
    """Share of the map's positive energy inside the object's mask (:func:`energy_in_mask`)."""
    mask = need("energy_pointing_game", "the object's ground-truth mask", mask)
    return MetricResult("energy_pointing_game", energy_in_mask(saliency_map, mask), True)
