"""Max-sensitivity (Yeh, Hsieh, Suggala, Inouye & Ravikumar 2019, "On the (In)fidelity and
Sensitivity of Explanations", NeurIPS, https://arxiv.org/abs/1901.09392, Def. 3.1).

``max_{||d||_inf <= radius} ||m(x + d) - m(x)|| / ||m(x)||`` (Frobenius norms), estimated, as
Captum's ``sensitivity_max`` does, by the maximum over ``samples`` perturbations drawn uniformly
from the L-infinity ball of ``radius`` (normalized input units; Captum's default 0.02) around
``x``; the ratio uses ``||m(x)|| = 1`` when the map is all zeros (Captum's guard). The map is
recomputed for every perturbed input by the same method: an :data:`~.registry.Explainer` is
required; it also gives ``m(x)``, so the judged map's scale (raw or min-max) does not matter.
Lower is better (a small change of the input should not change the explanation much).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from ..errors import ParameterError
from ..progress import CancelToken, ProgressFn, check_cancel, report
from .registry import (Curve, Explainer, MetricResult, Paper, Params, as_numpy, check_input, integer, need,
                       positive_int, real, register_metric)


@dataclass(frozen=True)
class MaxSensitivityParams(Params):
    """``samples`` perturbations (Captum ``n_perturb_samples``) uniform in the L-infinity ball of
    ``radius`` (Captum ``perturb_radius``); ``seed`` of the perturbations."""

    samples: int = 10
    radius: float = 0.02
    seed: int = 0

    def __post_init__(self) -> None:
        self._set("samples", positive_int("samples", self.samples))
        self._set("radius", real("radius", self.radius, low=0.0, low_open=True))
        self._set("seed", integer("seed", self.seed))


def uniform_perturbations(shape: tuple[int, ...], samples: int, radius: float, seed: int) -> torch.Tensor:
    """``(samples, *shape)`` draws uniform in ``[-radius, radius]`` from a generator seeded with ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    return torch.empty(samples, *shape).uniform_(-radius, radius, generator=gen)


@register_metric(
    "max_sensitivity", display_name="Max-sensitivity",
    paper=Paper("Yeh, Hsieh, Suggala, Inouye & Ravikumar", 2019, "On the (In)fidelity and Sensitivity of Explanations",
                "https://arxiv.org/abs/1901.09392"),
    reference="Captum (captum.metrics.sensitivity_max)", higher_is_better=False, value_range=">= 0",
    cost="1 + samples explanations (11 by default)", needs=("explain",), params=MaxSensitivityParams,
    long_running=True,
)
def max_sensitivity(handle, x: torch.Tensor, saliency_map, target,
                    params: MaxSensitivityParams = MaxSensitivityParams(), progress: Optional[ProgressFn] = None,
                    cancel: Optional[CancelToken] = None, *, explain: Optional[Explainer] = None, mask=None,
                    perturbations: Optional[torch.Tensor] = None) -> MetricResult:
    """Largest relative change of the map, ``||m(x + d) - m(x)|| / ||m(x)||``, over random small
    perturbations ``d``. Every map, ``m(x)`` included, comes from ``explain`` (one scale for all);
    ``saliency_map`` only fixes the expected shape. ``perturbations``: ``(samples, 3, H, W)`` to
    use instead of drawing them."""
    explain = need("max_sensitivity", "an explain callable (the same method on perturbed inputs)", explain)
    x, s, target = check_input(handle, x, saliency_map, target)
    if perturbations is None:
        perturbations = uniform_perturbations(tuple(x.shape[1:]), params.samples, params.radius, params.seed)
    perturbations = torch.as_tensor(perturbations).float()
    if perturbations.ndim != 4 or perturbations.shape[1:] != x.shape[1:]:
        raise ParameterError(f"perturbations must be (samples, 3, H, W), got {tuple(perturbations.shape)}")
    # m(x) from ``explain`` too (as Captum does), so that every compared map has the same scale
    m0 = as_numpy(explain(handle.model, x, target)).astype(np.float64)
    if m0.shape != tuple(s.shape):
        raise ParameterError(f"explain returned a map of shape {m0.shape}, expected {tuple(s.shape)}")
    norm0 = float(np.linalg.norm(m0.ravel())) or 1.0
    ratios = []
    for i, d in enumerate(perturbations):
        check_cancel(cancel)
        m = as_numpy(explain(handle.model, x + d.to(x.device)[None], target)).astype(np.float64)
        if m.shape != m0.shape:
            raise ParameterError(f"explain returned a map of shape {m.shape}, expected {m0.shape}")
        ratios.append(float(np.linalg.norm((m - m0).ravel())) / norm0)
        report(progress, i + 1, len(perturbations), "max-sensitivity explanations")
    r = np.asarray(ratios)
    return MetricResult("max_sensitivity", float(r.max()), False,
                        curves={"sensitivity": Curve(np.arange(1, len(r) + 1, dtype=np.float64), r,
                                                     "perturbation", "relative change of the map")},
                        details={"mean": float(r.mean())})
