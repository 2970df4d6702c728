"""Randomization sanity checks: smooth and efficient MPRT (Hedström, Weber, Lapuschkin & Höhne 2023,
"Sanity Checks Revisited: An Exploration to Repair the Model Parameter Randomisation Test", XAI in
Action workshop, NeurIPS, https://arxiv.org/abs/2401.06465) and the random-logit test (Sixt, Granz
& Landgraf 2020, "When Explanations Lie: Why Many Modified BP Attributions Fail", ICML,
https://arxiv.org/abs/1912.09818, Sec. 5).

The MPRT variants re-explain under randomized weights. The weights of a DEEP COPY of the model are
re-initialized, layer after layer (cascading), never those of the shared model. Quantus's
``get_random_layer_generator`` conventions, so that the randomized model is Quantus's for the same
``seed``: every module that has ``reset_parameters`` (convolutions, linear and batch-norm layers),
in ``named_modules`` order (``bottom_up``, the paper's recommendation) or reversed (``top_down``),
is reset right after ``torch.manual_seed(seed + 1)``. Every layer is seeded alike, so the fully
randomized model does not depend on the order and same-shaped layers get the same weights. The
global torch generator is forked and restored around each reset. ``explain`` (an
:data:`~.registry.Explainer`) recomputes the judged method's map under the randomized model. Every
compared map, the original model's too, comes from ``explain`` (so all share one scale, raw or
min-max); the ``saliency_map`` argument only fixes the expected shape.

* **smooth MPRT** (sMPRT, Sec. 4.1): noise is averaged away before comparing. Each explanation is
  the mean of ``samples`` maps of ``x + eps``, ``eps ~ N(0, (noise * (max x - min x))^2)``, the last
  one with ``eps = 0``. The mean map is divided by its largest ``|.|`` and its absolute value is
  taken (Quantus's ``normalise`` and ``abs``). The value is the Spearman rank correlation between
  the denoised map of the original model and that of the fully randomized one. Lower is better.
  The noise comes from numpy's legacy ``RandomState(seed)``, drawn in Quantus's order (original
  model, then each randomized step). The paper denoises the original model's explanation too.
* **efficient MPRT** (eMPRT, Sec. 4.2): the relative rise in the explanation's complexity,
  ``(H(m_random) - H(m)) / H(m)``, with ``H`` the Shannon entropy of a ``bins``-bin histogram of
  the map (Quantus ``discrete_entropy``). Higher is better (a randomized model should explain
  noise).
* **random logit**: SSIM between the map for the target and the map for a random other class
  ``c'`` (numpy's ``RandomState(seed).randint(0, K - 1)``-th of the other classes, Quantus's draw).
  Quantus takes the target's map as given; here it is recomputed by ``explain`` (the same map when
  the caller's came from the same method and scale). Both maps are divided by their largest
  ``|.|`` (Quantus ``normalise_by_max``), with ``data_range`` = the spread of both. Lower is
  better. Quantus computes SSIM on the *flattened* maps, a 1-D SSIM. The paper compares images, so
  SSIM here is 2-D (7x7 windows, scikit-image defaults). Gradient maps are reduced to ``max_c |.|`` first.
"""
from __future__ import annotations

import copy
import threading
from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np
import torch
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity
from torch import nn

from ..errors import MethodUnavailableError, ParameterError
from ..progress import CancelToken, ProgressFn, check_cancel, report
from .causal import saliency_2d
from .registry import (Curve, Explainer, MetricResult, Paper, Params, as_numpy, boolean, check_input, choice,
                       integer, need, positive_int, real, register_metric)

SANITY_REVISITED = Paper("Hedström, Weber, Lapuschkin & Höhne", 2023,
                         "Sanity Checks Revisited: An Exploration to Repair the Model Parameter Randomisation Test",
                         "https://arxiv.org/abs/2401.06465")
LAYER_ORDERS = ("bottom_up", "top_down")
# Serializes our seeded resets of the global generator (fork_rng restores it after each one).
_RESET_LOCK = threading.Lock()


def randomizable_layers(model: nn.Module) -> list[str]:
    """Names of the modules that have ``reset_parameters``, in ``named_modules`` order."""
    return [name for name, m in model.named_modules() if hasattr(m, "reset_parameters")]


def randomized_models(handle, *, order: str = "bottom_up", seed: int = 42) -> Iterator[tuple[str, nn.Module]]:
    """Cascading randomization of a deep copy of ``handle.model``: yields ``(layer, copy)`` after
    each layer's reset (the same copy object, randomized further at each step)."""
    with handle.lock:
        model = copy.deepcopy(handle.model)
    modules = [(name, m) for name, m in model.named_modules() if hasattr(m, "reset_parameters")]
    if order == "top_down":
        modules = modules[::-1]
    devices = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    for name, module in modules:
        with _RESET_LOCK, torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed + 1)
            module.reset_parameters()
        for p in module.parameters(recurse=False):
            p.requires_grad_(False)
        yield name, model


def _explained(explain: Explainer, model: nn.Module, x: torch.Tensor, target: int) -> np.ndarray:
    return as_numpy(explain(model, x, target)).astype(np.float64)


def _max_normalised(m: np.ndarray) -> np.ndarray:
    top = float(np.abs(m).max())
    return m / top if top > 0 else m


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.ravel(a), np.ravel(b)
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


@dataclass(frozen=True)
class SmoothMPRTParams(Params):
    """``samples`` noisy copies per denoised map (Quantus ``nr_samples``), noise std ``noise *
    (max(x) - min(x))`` (``noise_magnitude``); ``seed`` of the layer re-initialization and of the
    noise; ``layer_order`` ``bottom_up`` or ``top_down``; ``all_layers``: also compare after each
    layer (a curve; one denoised map per layer) instead of only after the last (Quantus ``skip_layers``)."""

    samples: int = 50
    noise: float = 0.1
    seed: int = 42
    layer_order: str = "bottom_up"
    all_layers: bool = False

    def __post_init__(self) -> None:
        self._set("samples", positive_int("samples", self.samples))
        self._set("noise", real("noise", self.noise, low=0.0))
        self._set("seed", integer("seed", self.seed))
        self._set("layer_order", choice("layer_order", self.layer_order, LAYER_ORDERS))
        self._set("all_layers", boolean("all_layers", self.all_layers))


def _layers_or_refuse(handle, metric: str) -> list[str]:
    layers = randomizable_layers(handle.model)
    if not layers:
        raise MethodUnavailableError(f"{metric}: the model has no layer with reset_parameters to randomize")
    return layers


@register_metric(
    "smooth_mprt", display_name="Smooth MPRT", paper=SANITY_REVISITED, reference="Quantus (SmoothMPRT)",
    higher_is_better=False, value_range="[-1, 1]",
    cost="2 x samples explanations (100 by default; all_layers: (1 + L) x samples) and a copy of the model",
    needs=("explain", "model_copy"), params=SmoothMPRTParams, long_running=True,
)
def smooth_mprt(handle, x: torch.Tensor, saliency_map, target, params: SmoothMPRTParams = SmoothMPRTParams(),
                progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None, *,
                explain: Optional[Explainer] = None, mask=None) -> MetricResult:
    """Spearman correlation between the denoised maps of the original and the fully randomized model."""
    explain = need("smooth_mprt", "an explain callable (model, x, target) -> map", explain)
    x, _, target = check_input(handle, x, saliency_map, target)
    layers = _layers_or_refuse(handle, "smooth_mprt")
    evaluated = len(layers) if params.all_layers else 1
    total = params.samples * (1 + evaluated)
    rs = np.random.RandomState(params.seed)
    x_np = x.detach().cpu().numpy()
    std = params.noise * (x_np.max() - x_np.min())
    done = 0

    def denoised(model: nn.Module) -> np.ndarray:
        nonlocal done
        acc = None
        for i in range(params.samples):
            check_cancel(cancel)
            eps = np.zeros_like(x_np, dtype=np.float64) if i == params.samples - 1 else rs.randn(*x_np.shape) * std
            noisy = torch.from_numpy(x_np + eps).float().to(x.device)
            m = _explained(explain, model, noisy, target)
            acc = m / params.samples if acc is None else acc + m / params.samples
            done += 1
            report(progress, done, total, "smooth MPRT explanations")
        return np.abs(_max_normalised(acc))

    original = denoised(handle.model)
    names, values, last_map = [], [], None
    for step, (name, model) in enumerate(randomized_models(handle, order=params.layer_order, seed=params.seed)):
        if not params.all_layers and step + 1 < len(layers):
            continue
        last_map = denoised(model)
        names.append(name)
        values.append(spearman(original, last_map))
    curves = {"per_layer": Curve(np.arange(1, len(values) + 1, dtype=np.float64), np.asarray(values),
                                 f"layers randomized ({params.layer_order})", "Spearman correlation")} \
        if params.all_layers else {}
    return MetricResult("smooth_mprt", values[-1], False, curves=curves,
                        maps={"original": original.astype(np.float32), "randomized": last_map.astype(np.float32)},
                        details={"layers": names})


@dataclass(frozen=True)
class EfficientMPRTParams(Params):
    """``seed`` of the layer re-initialization; ``layer_order``; ``bins`` of the entropy's histogram
    (Quantus ``n_bins``, 100); ``all_layers``: also the entropy after each layer (a curve)."""

    seed: int = 42
    layer_order: str = "bottom_up"
    bins: int = 100
    all_layers: bool = False

    def __post_init__(self) -> None:
        self._set("seed", integer("seed", self.seed))
        self._set("layer_order", choice("layer_order", self.layer_order, LAYER_ORDERS))
        self._set("bins", positive_int("bins", self.bins))
        self._set("all_layers", boolean("all_layers", self.all_layers))


def discrete_entropy(m: np.ndarray, bins: int = 100) -> float:
    """Shannon entropy (nats) of the ``bins``-bin equal-width histogram of ``m``'s values."""
    counts, _ = np.histogram(np.ravel(m), bins=bins)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


@register_metric(
    "efficient_mprt", display_name="Efficient MPRT", paper=SANITY_REVISITED, reference="Quantus (EfficientMPRT)",
    higher_is_better=True, value_range=">= -1",
    cost="2 explanations (all_layers: 1 + L) and a copy of the model", needs=("explain", "model_copy"),
    params=EfficientMPRTParams, long_running=True,
)
def efficient_mprt(handle, x: torch.Tensor, saliency_map, target, params: EfficientMPRTParams = EfficientMPRTParams(),
                   progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None, *,
                   explain: Optional[Explainer] = None, mask=None) -> MetricResult:
    """Relative rise of the map's histogram entropy from the original to the fully randomized model.
    Both maps come from ``explain``; ``saliency_map`` only fixes the expected shape."""
    explain = need("efficient_mprt", "an explain callable (model, x, target) -> map", explain)
    x, s, target = check_input(handle, x, saliency_map, target)
    layers = _layers_or_refuse(handle, "efficient_mprt")
    original = _explained(explain, handle.model, x, target)  # as Quantus: both maps from ``explain``
    if original.shape != tuple(s.shape):
        raise ParameterError(f"explain returned a map of shape {original.shape}, expected {tuple(s.shape)}")
    h0 = discrete_entropy(original, params.bins)
    if h0 == 0:
        raise ParameterError("efficient_mprt needs a map that is not constant (its entropy is 0)")
    total = len(layers) if params.all_layers else 1
    names, entropies, last_map = [], [], None
    for step, (name, model) in enumerate(randomized_models(handle, order=params.layer_order, seed=params.seed)):
        check_cancel(cancel)
        if not params.all_layers and step + 1 < len(layers):
            continue
        last_map = _explained(explain, model, x, target)
        names.append(name)
        entropies.append(discrete_entropy(last_map, params.bins))
        report(progress, len(names), total, "efficient MPRT explanations")
    curves = {"per_layer": Curve(np.arange(1, len(entropies) + 1, dtype=np.float64), np.asarray(entropies),
                                 f"layers randomized ({params.layer_order})", "histogram entropy (nats)")} \
        if params.all_layers else {}
    return MetricResult("efficient_mprt", (entropies[-1] - h0) / h0, True, curves=curves,
                        maps={"randomized": last_map.astype(np.float32)},
                        details={"entropy_original": h0, "entropy_randomized": entropies[-1], "layers": names})


@dataclass(frozen=True)
class RandomLogitParams(Params):
    """``seed`` of the random other class (Quantus's default 42)."""

    seed: int = 42

    def __post_init__(self) -> None:
        self._set("seed", integer("seed", self.seed))


def off_class(num_classes: int, target: int, seed: int) -> int:
    """A random class other than ``target``: the ``RandomState(seed).randint(0, K - 1)``-th of the others."""
    others = [c for c in range(num_classes) if c != target]
    return others[int(np.random.RandomState(seed).randint(0, num_classes - 1))]


def ssim_2d(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two 2-D maps (scikit-image defaults, 7x7 windows), ``data_range`` = spread of both."""
    lo, hi = min(a.min(), b.min()), max(a.max(), b.max())
    return float(structural_similarity(a, b, data_range=float(hi - lo) or 1.0))


@register_metric(
    "random_logit", display_name="Random logit", paper=Paper(
        "Sixt, Granz & Landgraf", 2020, "When Explanations Lie: Why Many Modified BP Attributions Fail",
        "https://arxiv.org/abs/1912.09818"),
    reference="Quantus (RandomLogit), with 2-D SSIM", higher_is_better=False, value_range="[-1, 1]",
    cost="2 explanations", needs=("explain",), params=RandomLogitParams,
)
def random_logit(handle, x: torch.Tensor, saliency_map, target, params: RandomLogitParams = RandomLogitParams(),
                 progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None, *,
                 explain: Optional[Explainer] = None, mask=None) -> MetricResult:
    """SSIM between the map for the target and the map for a random other class (low: the method
    is class-sensitive). Both maps come from ``explain``; ``saliency_map`` only fixes the shape."""
    explain = need("random_logit", "an explain callable (model, x, target) -> map", explain)
    x, s, target = check_input(handle, x, saliency_map, target)
    if handle.num_classes < 2:
        raise MethodUnavailableError("random_logit needs a model with at least 2 classes")
    check_cancel(cancel)
    other = off_class(handle.num_classes, target, params.seed)
    m_target = torch.from_numpy(_explained(explain, handle.model, x, target))
    m_off = torch.from_numpy(_explained(explain, handle.model, x, other))
    for m in (m_target, m_off):
        if tuple(m.shape) != tuple(s.shape):
            raise ParameterError(f"explain returned a map of shape {tuple(m.shape)}, expected {tuple(s.shape)}")
    a = _max_normalised(saliency_2d(m_target).double().numpy())
    b = _max_normalised(saliency_2d(m_off).double().numpy())
    report(progress, 1, 1, "random logit")
    return MetricResult("random_logit", ssim_2d(a, b), False, maps={"off_class": b.astype(np.float32)},
                        details={"off_class": other, "off_class_name": handle.class_name(other)})
