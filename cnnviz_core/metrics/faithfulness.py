"""Faithfulness correlation (Bhatt, Weller & Moura 2020) and infidelity (Yeh et al. 2019).

Both read the map as an attribution per input element: a gradient map ``(3, H, W)`` as it is, an
``(H, W)`` map broadcast over the 3 channels (each pixel's value for each of its channels, as
Quantus and Captum do when an attribution has fewer channels than the input).

* **Faithfulness correlation** (Bhatt, Weller & Moura 2020, "Evaluating and Aggregating
  Feature-based Model Explanations", IJCAI, https://arxiv.org/abs/2005.00631, Eq. 3): over
  ``samples`` random subsets ``S`` of ``subset`` input elements, the Pearson correlation between
  ``sum_{i in S} a_i`` and ``f(x) - f(x with S set to the baseline)``. Higher is better. Quantus
  ``FaithfulnessCorrelation`` conventions: subsets drawn with numpy's legacy
  ``RandomState(seed).choice(n, subset, replace=False)``, one per run, so the same seed gives the
  same subsets as Quantus after ``np.random.seed(seed)``; baseline ``"min"`` is Quantus's
  ``"black"`` (the input's minimum over all elements); logits by default (Quantus' ``softmax=False``).
* **Infidelity** (Yeh, Hsieh, Suggala, Inouye & Ravikumar 2019, "On the (In)fidelity and
  Sensitivity of Explanations", NeurIPS, https://arxiv.org/abs/1901.09392, Def. 2.1):
  ``E_I[(I . a - (f(x) - f(x - I)))^2]`` over Gaussian perturbations ``I ~ N(0, perturbation_std^2)``
  (Captum ``infidelity``'s documented example perturbation). With ``normalize`` (default, the paper's
  official code and Captum's ``normalize=True``) the map is first scaled by the optimal
  ``beta = E[(I . a) d] / E[(I . a)^2]``, which makes the value independent of the map's scale
  (CAM maps in [0, 1] and raw gradients become comparable). Lower is better.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from ..errors import ParameterError
from ..progress import CancelToken, ProgressFn, check_cancel, report
from .registry import (MetricResult, Output, Paper, Params, boolean, check_input, choice, integer, positive_int,
                       real, register_metric, scores)

BASELINES = ("min", "mean", "max", "black", "zero")


def element_attribution(s: torch.Tensor) -> torch.Tensor:
    """``(3, H, W)`` attribution per input element: gradient maps as they are, ``(H, W)`` maps broadcast."""
    return s if s.ndim == 3 else s.unsqueeze(0).expand(3, *s.shape)


def baseline_of(handle, x: torch.Tensor, kind: str) -> torch.Tensor:
    """``(3, H, W)`` replacement values: the input's ``min``/``mean``/``max`` over all elements
    (Quantus's ``"black"``/``"mean"``/``"white"``), normalized ``black`` (RGB 0) or ``zero`` (the
    dataset-mean colour)."""
    x0 = x[0]
    if kind == "min":
        return torch.full_like(x0, float(x0.min()))
    if kind == "mean":
        return torch.full_like(x0, float(x0.mean()))
    if kind == "max":
        return torch.full_like(x0, float(x0.max()))
    if kind == "black":
        return handle.normalize(torch.zeros_like(x))[0]
    return torch.zeros_like(x0)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; NaN when either side is constant."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else float("nan")


@dataclass(frozen=True)
class FaithfulnessCorrelationParams(Params):
    """``samples`` random subsets (Quantus ``nr_runs``), each of ``subset`` input elements (Quantus
    ``subset_size``), set to ``baseline``; ``output``: ``logit`` or ``probability``; ``seed`` of
    the subsets; ``batch_size`` perturbed inputs per forward."""

    samples: int = 100
    subset: int = 224
    baseline: str = "min"
    output: str = "logit"
    seed: int = 0
    batch_size: int = 16

    def __post_init__(self) -> None:
        self._set("samples", positive_int("samples", self.samples))
        if self.samples < 2:
            raise ParameterError(f"faithfulness_correlation needs samples >= 2, got {self.samples}")
        self._set("subset", positive_int("subset", self.subset))
        self._set("baseline", choice("baseline", self.baseline, BASELINES))
        self._set("output", choice("output", self.output, Output))
        self._set("seed", integer("seed", self.seed))
        self._set("batch_size", positive_int("batch_size", self.batch_size))


def random_subsets(n: int, size: int, samples: int, seed: int) -> np.ndarray:
    """``(samples, size)`` flat element indices, one ``RandomState(seed).choice(n, size, replace=False)`` per row."""
    rs = np.random.RandomState(seed)
    return np.stack([rs.choice(n, size, replace=False) for _ in range(samples)])


@register_metric(
    "faithfulness_correlation", display_name="Faithfulness correlation",
    paper=Paper("Bhatt, Weller & Moura", 2020, "Evaluating and Aggregating Feature-based Model Explanations",
                "https://arxiv.org/abs/2005.00631"),
    reference="Quantus (FaithfulnessCorrelation)", higher_is_better=True, value_range="[-1, 1]",
    cost="1 + samples forwards (101 by default)", needs=("forwards",), params=FaithfulnessCorrelationParams,
    long_running=True,
)
def faithfulness_correlation(handle, x: torch.Tensor, saliency_map, target,
                             params: FaithfulnessCorrelationParams = FaithfulnessCorrelationParams(),
                             progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None, *,
                             explain=None, mask=None, subsets: Optional[np.ndarray] = None) -> MetricResult:
    """Pearson correlation, over random subsets of input elements, between the map's sum on the
    subset and the drop of the target's score when the subset is set to the baseline.
    ``subsets``: ``(samples, subset)`` flat indices to use instead of drawing them."""
    x, s, target = check_input(handle, x, saliency_map, target)
    a = element_attribution(s).reshape(-1).double().cpu().numpy()
    n = a.size
    if subsets is None:
        if params.subset > n:
            raise ParameterError(f"subset {params.subset} is larger than the input's {n} elements")
        subsets = random_subsets(n, params.subset, params.samples, params.seed)
    subsets = np.asarray(subsets, dtype=np.int64)
    base = baseline_of(handle, x, params.baseline).reshape(-1)
    flat = x.reshape(-1)
    idx = torch.from_numpy(subsets).to(x.device)
    total = len(subsets)
    y = float(scores(handle, handle.batch_logits(x), target, params.output)[0])
    perturbed_scores = []
    for first in range(0, total, params.batch_size):
        check_cancel(cancel)
        rows = idx[first:first + params.batch_size]
        batch = flat.expand(len(rows), -1).clone()
        batch.scatter_(1, rows, base[rows])
        perturbed_scores.append(scores(handle, handle.batch_logits(batch.view(-1, *x.shape[1:])), target,
                                       params.output))
        report(progress, min(total, first + params.batch_size), total, "faithfulness correlation")
    deltas = y - torch.cat(perturbed_scores).numpy()
    sums = a[subsets].sum(axis=1)
    return MetricResult("faithfulness_correlation", pearson(sums, deltas), True,
                        details={"original": y, "attribution_sums": sums, "score_drops": deltas})


@dataclass(frozen=True)
class InfidelityParams(Params):
    """``samples`` Gaussian perturbations (Captum ``n_perturb_samples``) of std ``perturbation_std``
    (normalized input units); ``normalize``: scale the map by the optimal beta first; ``output``:
    ``logit`` or ``probability``; ``seed`` of the noise; ``batch_size`` perturbed inputs per forward."""

    samples: int = 10
    perturbation_std: float = 0.1
    normalize: bool = True
    output: str = "logit"
    seed: int = 0
    batch_size: int = 16

    def __post_init__(self) -> None:
        self._set("samples", positive_int("samples", self.samples))
        self._set("perturbation_std", real("perturbation_std", self.perturbation_std, low=0.0, low_open=True))
        self._set("normalize", boolean("normalize", self.normalize))
        self._set("output", choice("output", self.output, Output))
        self._set("seed", integer("seed", self.seed))
        self._set("batch_size", positive_int("batch_size", self.batch_size))


def gaussian_perturbations(shape: tuple[int, ...], samples: int, std: float, seed: int) -> torch.Tensor:
    """``(samples, *shape)`` draws of ``N(0, std^2)`` from a generator seeded with ``seed`` (CPU, float32)."""
    return torch.randn(samples, *shape, generator=torch.Generator().manual_seed(seed)) * std


@register_metric(
    "infidelity", display_name="Infidelity",
    paper=Paper("Yeh, Hsieh, Suggala, Inouye & Ravikumar", 2019, "On the (In)fidelity and Sensitivity of Explanations",
                "https://arxiv.org/abs/1901.09392"),
    reference="Captum (captum.metrics.infidelity)", higher_is_better=False, value_range=">= 0",
    cost="1 + samples forwards (11 by default)", needs=("forwards",), params=InfidelityParams,
)
def infidelity(handle, x: torch.Tensor, saliency_map, target, params: InfidelityParams = InfidelityParams(),
               progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None, *, explain=None,
               mask=None, perturbations: Optional[torch.Tensor] = None) -> MetricResult:
    """Mean squared error between ``I . a`` and the score change ``f(x) - f(x - I)`` over random
    perturbations ``I``. ``perturbations``: ``(samples, 3, H, W)`` perturbations to use instead of drawing them."""
    x, s, target = check_input(handle, x, saliency_map, target)
    a = element_attribution(s).double().cpu()
    if perturbations is None:
        perturbations = gaussian_perturbations(tuple(x.shape[1:]), params.samples, params.perturbation_std,
                                               params.seed)
    perturbations = torch.as_tensor(perturbations).float()
    if perturbations.ndim != 4 or perturbations.shape[1:] != x.shape[1:]:
        raise ParameterError(f"perturbations must be (samples, 3, H, W), got {tuple(perturbations.shape)}")
    y = float(scores(handle, handle.batch_logits(x), target, params.output)[0])
    out = []
    total = len(perturbations)
    for first in range(0, total, params.batch_size):
        check_cancel(cancel)
        chunk = perturbations[first:first + params.batch_size].to(x.device)
        out.append(scores(handle, handle.batch_logits(x - chunk), target, params.output))
        report(progress, min(total, first + params.batch_size), total, "infidelity")
    diffs = y - torch.cat(out)
    dots = (perturbations.double() * a).flatten(1).sum(dim=1)
    if params.normalize:
        denom = float((dots * dots).sum())
        beta = float((dots * diffs).sum()) / denom if denom != 0 else 0.0
    else:
        beta = 1.0
    value = float(((beta * dots - diffs) ** 2).mean())
    return MetricResult("infidelity", value, False, details={"original": y, "beta": beta,
                                                             "normalized": params.normalize})
