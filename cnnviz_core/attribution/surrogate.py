"""LIME and KernelSHAP on SLIC superpixels (region family).

Both explain the target logit by a weighted linear model over ``M`` binary features, one per SLIC
superpixel (Achanta et al. 2012, scikit-image's ``slic`` on the displayed RGB image): a sample
``z in {0, 1}^M`` keeps the superpixels with ``z_j = 1`` and fills the others with the baseline
(``"zero"``: the all-zero normalized tensor = the mean colour, Captum's default; ``"black"``: the
black image). The samples are forwarded ``batch_size`` at a time through the BatchNorm-folded
inference twin (:meth:`~cnnviz_core.models.ModelHandle.batch_logits`) under
``torch.inference_mode``, with progress after each batch and the cancel token checked between
batches; the regression runs in float64 on the CPU.

Output: ``(H, W)`` float32, raw = each superpixel's signed coefficient painted on its pixels (logit
units; the API min-max scales the positive part for display). ``info`` has the number of
superpixels, the samples and the intercept.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ParameterError
from ..progress import check_cancel, report
from .passes import PassContext
from .registry import Computed, Paper, Params, Product, integer, positive_int, register

P = Product
#: KernelSHAP's weight of the empty and the full coalition (Captum's ``inf_weight``): large enough
#: that the fit meets ``phi_0 = f(baseline)`` and ``phi_0 + sum phi = f(x)`` almost exactly.
INF_WEIGHT = 1e6
Fill = Literal["zero", "black"]


def _positive_float(name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be a number > 0, got {value!r}") from None
    if not v > 0 or v == float("inf"):
        raise ParameterError(f"{name} must be a number > 0, got {value!r}")
    return v


@dataclass(frozen=True)
class SurrogateParams(Params):
    """``segments``: about how many SLIC superpixels; ``compactness``: SLIC's colour/space trade-off
    (higher = squarer); ``samples`` perturbed images; ``batch_size`` of them per forward; ``seed`` of
    the samples; ``baseline`` fill of the removed superpixels, ``"zero"`` or ``"black"``."""

    segments: int = 50
    compactness: float = 10.0
    samples: int = 200
    batch_size: int = 16
    seed: int = 0
    baseline: Fill = "zero"

    def __post_init__(self) -> None:
        self._set("segments", positive_int("segments", self.segments))
        self._set("compactness", _positive_float("compactness", self.compactness))
        self._set("samples", positive_int("samples", self.samples))
        self._set("batch_size", positive_int("batch_size", self.batch_size))
        self._set("seed", integer("seed", self.seed))
        if self.baseline not in ("zero", "black"):
            raise ParameterError(f"unknown baseline {self.baseline!r}; choose zero or black")


@dataclass(frozen=True)
class LimeParams(SurrogateParams):
    """Adds ``kernel_width`` of LIME's exponential kernel on the cosine distance (Captum's default 1.0)."""

    kernel_width: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self._set("kernel_width", _positive_float("kernel_width", self.kernel_width))


@dataclass(frozen=True)
class KernelShapParams(SurrogateParams):
    """The surrogate parameters; the weights are the Shapley kernel's."""


def superpixels(ctx: PassContext, p: SurrogateParams) -> torch.Tensor:
    """``(H, W)`` long labels ``0..M-1`` of the SLIC superpixels of the displayed image."""
    from skimage.segmentation import slic

    rgb = ctx.handle.denormalize(ctx.x)[0].clamp(0, 1).permute(1, 2, 0).detach().cpu().double().numpy()
    labels = slic(rgb, n_segments=p.segments, compactness=p.compactness, start_label=0, channel_axis=-1)
    _, dense = np.unique(labels, return_inverse=True)
    return torch.from_numpy(dense.reshape(labels.shape).astype(np.int64)).to(ctx.x.device)


def lime_samples(m: int, p: SurrogateParams) -> torch.Tensor:
    """``(S, M)`` LIME's samples: each superpixel kept with probability 1/2 (Captum's default), seeded."""
    gen = torch.Generator().manual_seed(p.seed)
    return torch.bernoulli(torch.full((p.samples, m), 0.5, dtype=torch.float64), generator=gen)


def kernel_shap_samples(m: int, p: SurrogateParams) -> torch.Tensor:
    """``(S, M)`` KernelSHAP's samples: the full and the empty coalition, then coalitions whose size
    ``k`` is drawn with probability proportional to ``(M - 1) / (k (M - k))`` (the Shapley kernel
    summed over the ``C(M, k)`` coalitions of size ``k``) and whose members are uniform among those of
    that size. Drawn like this, each coalition's frequency follows the Shapley kernel, so every drawn
    sample has weight 1 in the regression (Captum's scheme)."""
    gen = torch.Generator().manual_seed(p.seed)
    fixed = torch.stack([torch.ones(m, dtype=torch.float64), torch.zeros(m, dtype=torch.float64)])[:p.samples]
    rest = p.samples - fixed.shape[0]
    if rest <= 0 or m < 2:
        extra = torch.bernoulli(torch.full((max(rest, 0), m), 0.5, dtype=torch.float64), generator=gen)
        return torch.cat([fixed, extra])
    k = torch.arange(1, m, dtype=torch.float64)
    sizes = torch.multinomial((m - 1) / (k * (m - k)), rest, replacement=True, generator=gen) + 1
    rank = torch.rand((rest, m), generator=gen, dtype=torch.float64).argsort(dim=1).argsort(dim=1)
    return torch.cat([fixed, (rank >= m - sizes[:, None]).to(torch.float64)])


def weighted_linear_fit(z: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Weighted least squares ``y ~ b + z @ coef`` (intercept not penalized), float64: centre by the
    weighted means, scale rows by ``sqrt(w)``, minimum-norm solution (``gelsd``: also when there are
    fewer samples than superpixels), as scikit-learn's ``LinearRegression(sample_weight=w)``."""
    z, y, w = (t.detach().to("cpu", torch.float64) for t in (z, y, w))
    wsum = w.sum()
    zm, ym = (w[:, None] * z).sum(0) / wsum, (w * y).sum() / wsum
    sw = w.sqrt()
    coef = torch.linalg.lstsq((z - zm) * sw[:, None], ((y - ym) * sw)[:, None], driver="gelsd").solution[:, 0]
    return coef, float(ym - zm @ coef)


def _evaluate(ctx: PassContext, labels: torch.Tensor, z: torch.Tensor, p: SurrogateParams, label: str,
              lime_width: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Target logits ``(S,)`` of the perturbed images and LIME's kernel weights ``(S,)`` (if ``lime_width``)."""
    target = ctx.resolved_target()
    x = ctx.x
    fill = ctx.handle.normalize(torch.zeros_like(x)) if p.baseline == "black" else torch.zeros_like(x)
    total = z.shape[0]
    scores = torch.empty(total, dtype=torch.float64)
    weights = torch.ones(total, dtype=torch.float64)
    flat_x = x.reshape(1, -1)
    for start in range(0, total, p.batch_size):
        check_cancel(ctx.cancel)
        stop = min(total, start + p.batch_size)
        with torch.inference_mode():
            keep = z[start:stop].to(x.device, x.dtype)[:, labels][:, None]  # (b, 1, H, W)
            images = keep * x + (1 - keep) * fill
            scores[start:stop] = ctx.handle.batch_logits(images)[:, target].double().cpu()
            if lime_width:
                cos = F.cosine_similarity(flat_x, images.reshape(stop - start, -1), dim=1)
                weights[start:stop] = torch.exp(-((1 - cos.double()) ** 2) / (2 * lime_width ** 2)).cpu()
        report(ctx.progress, stop, total, label)
    return scores, weights


def _paint(labels: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    return coef.to(labels.device, torch.float32)[labels]


@register("lime", display_name="LIME (superpixels)",
          paper=Paper("Ribeiro, Singh & Guestrin", 2016, "\"Why Should I Trust You?\": Explaining the "
                      "Predictions of Any Classifier", "https://arxiv.org/abs/1602.04938"),
          family="region", passes=(P.LOGITS,), needs=("extra_forwards",), cost="samples forwards",
          class_discriminative=True, params=LimeParams, long_running=True)
def lime(ctx: PassContext, p: LimeParams) -> Computed:
    """LIME (Ribeiro et al. 2016; Captum ``Lime``) on SLIC superpixels: samples keep each superpixel
    with probability 1/2; the target logits are fitted by weighted least squares with weights
    ``exp(-d^2 / (2 w^2))``, ``d`` the cosine distance between the perturbed and the original input
    (Captum's default kernel, ``w = kernel_width``). The paper's K-Lasso is used with K = all
    superpixels, where it is plain weighted least squares (Captum's default fits a Lasso with
    alpha 0.01 instead)."""
    labels = superpixels(ctx, p)
    m = int(labels.max()) + 1
    z = lime_samples(m, p)
    scores, weights = _evaluate(ctx, labels, z, p, "LIME samples", lime_width=p.kernel_width)
    coef, intercept = weighted_linear_fit(z, scores, weights)
    return Computed(raw=_paint(labels, coef), info={"segments": m, "samples": p.samples, "intercept": intercept,
                                                    "baseline": p.baseline})


@register("kernel_shap", display_name="KernelSHAP (superpixels)",
          paper=Paper("Lundberg & Lee", 2017, "A Unified Approach to Interpreting Model Predictions",
                      "https://arxiv.org/abs/1705.07874"),
          family="region", passes=(P.LOGITS,), needs=("extra_forwards",), cost="samples forwards",
          class_discriminative=True, params=KernelShapParams, long_running=True)
def kernel_shap(ctx: PassContext, p: KernelShapParams) -> Computed:
    """KernelSHAP (Lundberg & Lee 2017, Theorem 2; Captum ``KernelShap``) on SLIC superpixels: a
    linear fit of the target logits over coalitions sampled from the Shapley kernel
    ``pi(z) = (M - 1) / (C(M, |z|) |z| (M - |z|))`` (see :func:`kernel_shap_samples`), with the empty
    and the full coalition weighted :data:`INF_WEIGHT` to enforce ``phi_0 = f(baseline)`` and
    ``sum phi = f(x) - f(baseline)``. The coefficients estimate the superpixels' Shapley values."""
    labels = superpixels(ctx, p)
    m = int(labels.max()) + 1
    z = kernel_shap_samples(m, p)
    scores, _ = _evaluate(ctx, labels, z, p, "KernelSHAP samples")
    on = z.sum(dim=1)
    weights = torch.where((on == 0) | (on == m), torch.full_like(on, INF_WEIGHT), torch.ones_like(on))
    coef, intercept = weighted_linear_fit(z, scores, weights)
    return Computed(raw=_paint(labels, coef), info={"segments": m, "samples": p.samples, "intercept": intercept,
                                                    "baseline": p.baseline})
