"""Gradient-CAM variants from pytorch-grad-cam ("pgc"): EigenGrad-CAM, element-wise Grad-CAM,
KPCA-CAM, Finer-CAM and ShapleyCAM.

Each is a small :class:`~.cam.WeightedCAM` subclass (it supplies weights and, where the map weights
something other than ``A``, the features), so the ``aug_smooth`` / ``eigen_smooth`` options of
:class:`~.registry.CAMParams` work on all of them. Notation as in :mod:`.cam`: ``A`` the layer's
activation ``(C, h, w)``, ``G = dy_c/dA`` the gradient of the target logit.

EigenGrad-CAM, element-wise Grad-CAM and KPCA-CAM read only the shared pass's activation (and
gradient). Finer-CAM and ShapleyCAM explain another scalar than the target logit (Finer-CAM a
contrast with similar classes, ShapleyCAM a second-order expansion), so they run the part of the
network *after* the layer on the shared activation, made a leaf (:func:`tail_logits`: the
``torch.fx`` tail of :mod:`.tail`, checked against the real logits, or a forward with the layer's
output replaced), and back-propagate from there: no forward of the layers before the CAM layer is
repeated. This happens under the model's lock; the model's parameters stay frozen.

Raw maps follow :mod:`.cam`: ReLU'd at layer resolution, upsampled bilinearly, in the method's units
(the projections: in the units of their first principal component's scores).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Optional, Union, get_args

import torch

from ..errors import MethodUnavailableError, ParameterError
from .cam import (CAM_NEEDS_GRAD, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, WeightedCAM, XGradCAM,
                  anticorrelated)
from .passes import PassContext
from ..typed_params import real
from .registry import CAMParams, Paper, Params, Product, register
from .tail import is_piecewise_linear, layer_tail, replaced_output

P = Product
PGC = Paper("Gildenblat & contributors", 2021, "PyTorch library for CAM methods",
            "https://github.com/jacobgil/pytorch-grad-cam")


# ---- shared helpers --------------------------------------------------------------------------------
def centred_positions(maps: torch.Tensor) -> torch.Tensor:
    """``(C, h, w)`` float64, NaN set to 0, each channel minus its mean over the ``hw`` positions."""
    centred = torch.nan_to_num(maps.double(), nan=0.0)
    return centred - centred.mean(dim=(1, 2), keepdim=True)


def principal_axis(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(C, h, w)`` -> ``(v, centred)``: the first principal direction ``v`` ``(C,)`` of the ``hw``
    positions (mean-centred over positions, NaN set to 0, float64) and the centred maps. ``v`` is
    oriented so the scores ``sum_k v_k centred_k`` correlate non-negatively with ``maps.sum(0)``."""
    c, h, w = maps.shape
    centred = centred_positions(maps)
    o = centred.reshape(c, h * w).T
    v = top_right_singular_vector(o)
    return (-v if anticorrelated(o @ v, o.sum(dim=1)) else v), centred


def top_right_singular_vector(o: torch.Tensor) -> torch.Tensor:
    """``(c,)`` unit vector: the first right singular vector of ``o`` ``(n, c)`` (sign arbitrary),
    from the eigenvectors of the smaller Gram matrix (``o o^T`` when ``n < c``: a 49 x 49 problem
    for a 7 x 7 layer of 2048 channels instead of an SVD of 49 x 2048). Zero for a zero ``o``."""
    n, c = o.shape
    if n < c:
        _, u = torch.linalg.eigh(o @ o.T)
        v = o.T @ u[:, -1]
    else:
        _, vecs = torch.linalg.eigh(o.T @ o)
        v = vecs[:, -1]
    norm = v.norm()
    return v / norm if norm > 0 else v


def tail_logits(ctx: PassContext, leaf: torch.Tensor, logits: torch.Tensor) -> tuple[torch.Tensor, str]:
    """``(1, K)`` logits as a differentiable function of ``leaf`` (the layer's output ``(1, C, h, w)``)
    and how they were computed. Uses the ``torch.fx`` tail when it reproduces ``logits`` (the main
    pass's), else a full forward with the layer's output replaced by ``leaf``. Call under the model's
    lock with grad enabled. The tail gets a clone, so in-place ops after the layer never touch ``leaf``."""
    tail = layer_tail(ctx.model, ctx.layer)
    if tail is not None:
        out = tail(leaf.clone())
        scale = float(logits.abs().max())
        if torch.allclose(out.detach(), logits, rtol=1e-3, atol=1e-5 * scale + 1e-30):
            return out, "tail"
    with replaced_output(ctx.handle.module(ctx.layer), leaf.clone()):
        return ctx.model(ctx.x), "full forward (no split tail reproduces the logits)"


class _WithGradient:
    """``ctx`` seen by a base CAM method with its ``LAYER_GRAD`` product replaced (Finer-CAM's)."""

    def __init__(self, ctx: PassContext, grad: torch.Tensor) -> None:
        self._ctx, self._grad = ctx, grad

    def product(self, name: Union[Product, str]) -> torch.Tensor:
        return self._grad if P(name) is P.LAYER_GRAD else self._ctx.product(name)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    v = str(value).strip().lower() if isinstance(value, str) else value
    if v not in choices:
        raise ParameterError(f"unknown {name} {value!r}; choose from {', '.join(choices)}")
    return v


def _finite(name: str, value: Any, *, positive: bool = False, allow_none: bool = False) -> Optional[float]:
    """A finite number ``>= 0`` (``> 0`` when ``positive``); ``None`` or ``"none"`` when ``allow_none``."""
    if allow_none and (value is None or (isinstance(value, str) and value.strip().lower() in ("", "none"))):
        return None
    return real(name, value, low=0.0, low_open=positive, high=math.inf, high_open=True)


# ---- EigenGrad-CAM, element-wise Grad-CAM ---------------------------------------------------------
@register("eigengradcam", display_name="EigenGrad-CAM", paper=PGC, family="cam", passes=CAM_NEEDS_GRAD,
          needs=("gradients",), cost="1 (shared pass) + SVD", class_discriminative=True, params=CAMParams,
          reference="pytorch-grad-cam")
class EigenGradCAM(WeightedCAM):
    """EigenGrad-CAM (pytorch-grad-cam's variant of Eigen-CAM, Muhammad & Yeasin 2020,
    https://arxiv.org/abs/2008.00299; it has no paper of its own, so pgc's code defines it): the
    ``hw`` positions of ``A * G`` (element-wise), mean-centred over positions, projected on their
    first principal component, then ReLU. Unlike our :class:`~.cam.EigenCAM` (which follows the
    Eigen-CAM paper and does not centre) this centres, as pgc does. The component's sign is
    arbitrary; it is oriented so the map correlates non-negatively with ``sum_k A_k G_k``
    (HiResCAM before its ReLU). ``eigen_smooth`` is ignored (already a projection), as in pgc.
    Output ``(H, W)`` >= 0 in projection units."""

    projection = True

    def weights(self, ctx: PassContext, a: torch.Tensor, p: Params, info: dict[str, Any]) -> torch.Tensor:
        return principal_axis(ctx.product(P.LAYER_GRAD)[0] * a)[0]

    def features(self, ctx: PassContext, a: torch.Tensor, info: dict[str, Any]) -> torch.Tensor:
        return centred_positions(ctx.product(P.LAYER_GRAD)[0] * a)


@register("gradcam_elementwise", display_name="Grad-CAM element-wise", paper=PGC, family="cam",
          passes=CAM_NEEDS_GRAD, needs=("gradients",), cost="1 (shared pass)", class_discriminative=True,
          params=CAMParams,
          reference="pytorch-grad-cam")
class GradCAMElementWise(WeightedCAM):
    """Grad-CAM element-wise (pytorch-grad-cam's ``GradCAMElementWise``, a variant of HiResCAM,
    Draelos & Carin 2020, https://arxiv.org/abs/2011.08891): ``sum_k ReLU(G_k * A_k)`` - the ReLU is
    applied to each channel's element-wise product before the channel sum (HiResCAM applies it after).
    Weights 1 on the features ``ReLU(G * A)``; with ``eigen_smooth`` their first principal component.
    Output ``(H, W)`` >= 0 in logit units."""

    def weights(self, ctx: PassContext, a: torch.Tensor, p: Params, info: dict[str, Any]) -> torch.Tensor:
        return torch.ones(a.shape[0], dtype=a.dtype, device=a.device)

    def features(self, ctx: PassContext, a: torch.Tensor, info: dict[str, Any]) -> torch.Tensor:
        return (ctx.product(P.LAYER_GRAD)[0] * a).clamp(min=0)


# ---- KPCA-CAM ---------------------------------------------------------------------------------------
Kernel = Literal["sigmoid", "rbf", "poly", "linear", "cosine"]
KERNELS: tuple[str, ...] = get_args(Kernel)


@dataclass(frozen=True)
class KPCACAMParams(CAMParams):
    """``kpca_kernel``: the kernel of the kernel PCA (scikit-learn's definitions: ``sigmoid``
    ``tanh(g <x, y> + 1)``, ``rbf`` ``exp(-g |x - y|^2)``, ``poly`` ``(g <x, y> + 1)^3``, ``linear``,
    ``cosine``); ``kpca_gamma``: ``g`` (``None``: 1 / number of channels), > 0. pgc's ``kernel`` and
    ``gamma``, renamed because parameters are shared by name across methods (LRP has a gamma)."""

    kpca_kernel: Kernel = "sigmoid"
    kpca_gamma: Optional[float] = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self._set("kpca_kernel", _choice("kpca_kernel", self.kpca_kernel, KERNELS))
        self._set("kpca_gamma", _finite("kpca_gamma", self.kpca_gamma, positive=True, allow_none=True))


def centred_kernel(a: torch.Tensor, kernel: str, gamma: Optional[float]) -> torch.Tensor:
    """``(n, n)`` kernel matrix of the ``n = hw`` positions of ``a`` ``(C, h, w)`` (features mean-centred
    over positions first, as pgc does), centred in feature space (``K - 1K - K1 + 1K1``), float64."""
    return _kernel(a, kernel, gamma)[0]


def _kernel(a: torch.Tensor, kernel: str, gamma: Optional[float]) -> tuple[torch.Tensor, float]:
    """The centred kernel matrix and the largest magnitude of the uncentred one."""
    c = a.shape[0]
    x = torch.nan_to_num(a.double().reshape(c, -1).T, nan=0.0)
    x = x - x.mean(dim=0, keepdim=True)
    g = 1.0 / c if gamma is None else gamma
    if kernel == "linear":
        k = x @ x.T
    elif kernel == "poly":
        k = (g * (x @ x.T) + 1.0) ** 3
    elif kernel == "sigmoid":
        k = torch.tanh(g * (x @ x.T) + 1.0)
    elif kernel == "rbf":
        k = torch.exp(-g * torch.cdist(x, x).square())
    else:  # cosine; all-zero rows stay zero
        xn = x / x.norm(dim=1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
        k = xn @ xn.T
    return k - k.mean(dim=0, keepdim=True) - k.mean(dim=1, keepdim=True) + k.mean(), float(k.abs().max())


@register("kpcacam", display_name="KPCA-CAM",
          paper=Paper("Karmani et al.", 2024, "KPCA-CAM: Visual Explainability of Deep Computer Vision Models "
                      "using Kernel PCA", "https://arxiv.org/abs/2410.00267"),
          family="cam", passes=(P.ACTIVATION,), needs=(), cost="1 forward + (hw x hw) eigendecomposition",
          class_discriminative=False, params=KPCACAMParams,
          reference="pytorch-grad-cam")
class KPCACAM(WeightedCAM):
    """KPCA-CAM (Karmani et al. 2024): the first kernel principal component of the activations' ``hw``
    positions (``C`` features each, mean-centred; kernel and gamma from :class:`KPCACAMParams`), i.e.
    ``sqrt(l_1) alpha_1`` with ``(l_1, alpha_1)`` the top eigenpair of the centred kernel matrix
    ``K_c`` (scikit-learn's ``KernelPCA.fit_transform``, which pgc calls). Written as a weighted CAM:
    the features are the columns of ``K_c`` (one map per position), the weights ``alpha_1 / sqrt(l_1)``.
    The sign is oriented so the map correlates non-negatively with ``sum_k A_k`` (scikit-learn fixes it
    by its largest entry instead). Class-agnostic; ``eigen_smooth`` is ignored. Output ``(H, W)`` >= 0."""

    projection = True

    def weights(self, ctx: PassContext, a: torch.Tensor, p: KPCACAMParams, info: dict[str, Any]) -> torch.Tensor:
        kc, scale = _kernel(a, p.kpca_kernel, p.kpca_gamma)
        values, vectors = torch.linalg.eigh(kc)
        top, alpha = float(values[-1]), vectors[:, -1]
        info.update(kpca_kernel=p.kpca_kernel, kpca_gamma=p.kpca_gamma)
        # no variation above the float64 rounding of the kernel's entries (bounded by n * eps * max|K|,
        # e.g. all positions alike): an all-zero map rather than an eigenvector of rounding noise
        if not top > 10 * kc.shape[0] * torch.finfo(torch.float64).eps * scale:
            info["kpca"] = "no variation across positions in this kernel: all-zero map"
            return torch.zeros_like(alpha)
        return (-alpha if anticorrelated(alpha, a.double().sum(dim=0).flatten()) else alpha) / math.sqrt(top)

    def features(self, ctx: PassContext, a: torch.Tensor, info: dict[str, Any]) -> torch.Tensor:
        kc = centred_kernel(a, info["kpca_kernel"], info["kpca_gamma"])
        return kc.reshape(kc.shape[0], *a.shape[1:])


# ---- Finer-CAM ---------------------------------------------------------------------------------------
#: The CAM methods Finer-CAM can weight with its contrast gradient (pgc's ``base_method``).
FinerBase = Literal["gradcam", "gradcam++", "xgradcam", "layercam", "hirescam"]
FINER_BASES: dict[str, WeightedCAM] = {"gradcam": GradCAM(), "gradcam++": GradCAMPlusPlus(),
                                       "xgradcam": XGradCAM(), "layercam": LayerCAM(), "hirescam": HiResCAM()}
assert tuple(FINER_BASES) == get_args(FinerBase)


def _ranks(value: Any) -> tuple[int, ...]:
    if isinstance(value, str):
        value = [v for v in value.replace(" ", "").split(",") if v]
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    try:
        ranks = []
        for v in value:
            if isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()):
                raise ValueError(v)
            ranks.append(int(v))
    except (TypeError, ValueError):
        raise ParameterError(f"comparison_categories must be similarity ranks >= 1 (e.g. 1,2,3), got {value!r}") from None
    if not ranks or min(ranks) < 1 or len(set(ranks)) != len(ranks):
        raise ParameterError(f"comparison_categories must be distinct similarity ranks >= 1 (e.g. 1,2,3), got {value!r}")
    return tuple(ranks)


@dataclass(frozen=True)
class FinerCAMParams(CAMParams):
    """``comparison_strength``: the contrast's strength (pgc's ``alpha``, the paper's gamma), >= 0;
    ``comparison_categories``: which similar classes to compare with, as ranks of similarity
    (1 = the class whose logit is closest to the target's; pgc's default 1, 2, 3);
    ``base_method``: the CAM method weighting the contrast's gradient (pgc's ``base_method``)."""

    comparison_strength: float = 1.0
    comparison_categories: tuple[int, ...] = (1, 2, 3)
    base_method: FinerBase = "gradcam"

    def __post_init__(self) -> None:
        super().__post_init__()
        self._set("comparison_strength", _finite("comparison_strength", self.comparison_strength))
        self._set("comparison_categories", _ranks(self.comparison_categories))
        self._set("base_method", _choice("base_method", self.base_method, tuple(FINER_BASES)))


@register("finercam", display_name="Finer-CAM",
          paper=Paper("Zhang et al.", 2025, "Finer-CAM: Spotting the Difference Reveals Finer Details for "
                      "Visual Explanation", "https://arxiv.org/abs/2501.11309"),
          family="cam", passes=(P.ACTIVATION,), needs=("gradients",), cost="1 forward + 1 backward of the tail",
          class_discriminative=True, params=FinerCAMParams,
          reference="pytorch-grad-cam")
class FinerCAM(WeightedCAM):
    """Finer-CAM (Zhang et al. 2025, as in the authors' code, which pgc ships): explain the contrast
    ``S = sum_d p_d (y_c - gamma y_d) / sum_d p_d`` of the target logit ``y_c`` with the classes ``d``
    whose logits are closest to it (``comparison_categories`` ranks of ``|y_d - y_c|``), weighted by
    their softmax probabilities ``p_d`` (differentiated too, as in the authors' code; their ``1e-9``
    in the denominator is left out), with the base method's weights computed from ``dS/dA`` instead of
    ``dy_c/dA``. Ranks beyond the number of other classes are dropped (as pgc does).
    Output ``(H, W)`` >= 0 in the base method's units."""

    def weights(self, ctx: PassContext, a: torch.Tensor, p: FinerCAMParams, info: dict[str, Any]) -> torch.Tensor:
        target, logits = ctx.resolved_target(), ctx.product(P.LOGITS)
        y0 = logits[0]
        order = torch.argsort((y0 - y0[target]).abs(), stable=True)
        order = order[order != target]
        ranks = [r for r in p.comparison_categories if r <= order.numel()]
        if not ranks:
            raise MethodUnavailableError("Finer-CAM compares the target with other classes; this model has only one")
        similar = order[torch.tensor([r - 1 for r in ranks], device=order.device)]
        with ctx.handle.lock, torch.enable_grad():
            leaf = a[None].detach().clone().requires_grad_(True)
            out, mode = tail_logits(ctx, leaf, logits)
            y = out[0]
            w = torch.softmax(y, dim=0)[similar]
            score = (w * (y[target] - p.comparison_strength * y[similar])).sum() / w.sum()
            (grad,) = torch.autograd.grad(score, leaf, allow_unused=True)
        grad = torch.zeros_like(leaf) if grad is None else grad.detach()
        info.update(compared_with=[ctx.handle.class_name(int(d)) for d in similar], base_method=p.base_method,
                    backward=mode)
        return FINER_BASES[p.base_method].weights(_WithGradient(ctx, grad), a, p, info)  # type: ignore[arg-type]


# ---- ShapleyCAM --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ShapleyCAMParams(CAMParams):
    """``utility``: the scalar explained - ``logit`` (the target's pre-softmax score, as every CAM here
    and pgc's default target) or ``rest`` (the paper's Residual Softmax Target-class utility
    ``y_c - CE(y, c) = 2 y_c - logsumexp(y)``, pgc's ``ClassifierOutputReST``)."""

    utility: Literal["logit", "rest"] = "logit"

    def __post_init__(self) -> None:
        super().__post_init__()
        self._set("utility", _choice("utility", self.utility, ("logit", "rest")))


@register("shapleycam", display_name="ShapleyCAM",
          paper=Paper("Cai", 2025, "CAMs as Shapley Value-based Explainers", "https://arxiv.org/abs/2501.06261"),
          family="cam", passes=CAM_NEEDS_GRAD, needs=("gradients",),
          cost="1 (shared pass) where the network after the layer is piecewise linear, else 1 forward + "
               "double backward of the tail", class_discriminative=True, params=ShapleyCAMParams,
          reference="pytorch-grad-cam")
class ShapleyCAM(WeightedCAM):
    """ShapleyCAM (Cai 2025; pgc's implementation is the author's): a second-order Taylor expansion of
    the utility ``u`` gives the weights ``w_k = mean_ij (G - 1/2 H A)_kij`` with ``G = du/dA`` and
    ``H A`` the Hessian-vector product with the activation (one double backward through the part of
    the network after the layer, from the shared activation made a leaf, ``create_graph``). Map
    ``ReLU(sum_k w_k A_k)``. Where the network after the layer is piecewise linear (ReLU, max-pool,
    linear) and ``utility="logit"``, ``H A = 0`` and ShapleyCAM equals Grad-CAM: the tail's operations
    are then checked (:func:`~.tail.is_piecewise_linear`) and the shared pass's gradient is used with
    no tail pass at all (pgc runs the double backward anyway and gets ``H A`` = 0 up to rounding).
    ``utility="rest"`` adds the softmax's curvature. Output ``(H, W)`` >= 0 in utility units."""

    def weights(self, ctx: PassContext, a: torch.Tensor, p: ShapleyCAMParams, info: dict[str, Any]) -> torch.Tensor:
        target, logits = ctx.resolved_target(), ctx.product(P.LOGITS)
        if p.utility == "logit":
            with ctx.handle.lock:
                tail = layer_tail(ctx.model, ctx.layer)
            if tail is not None and is_piecewise_linear(tail):  # H = 0: the shared pass's gradient is exact
                info.update(utility=p.utility, hvp_norm=0.0,
                            backward="none: the network after the layer is piecewise linear, so H A = 0 "
                                     "and G is the shared pass's gradient")
                return ctx.product(P.LAYER_GRAD)[0].mean(dim=(1, 2))
        with ctx.handle.lock, torch.enable_grad():
            leaf = a[None].detach().clone().requires_grad_(True)
            out, mode = tail_logits(ctx, leaf, logits)
            y = out[0]
            u = y[target] if p.utility == "logit" else 2 * y[target] - torch.logsumexp(y, dim=0)
            (g,) = torch.autograd.grad(u, leaf, create_graph=True, allow_unused=True)
            hvp = None
            if g is not None and g.requires_grad:
                (hvp,) = torch.autograd.grad(g, leaf, grad_outputs=leaf.detach(), allow_unused=True)
        g = torch.zeros_like(leaf) if g is None else g.detach()
        hvp = torch.zeros_like(leaf) if hvp is None else hvp.detach()
        info.update(utility=p.utility, backward=mode, hvp_norm=float(hvp.norm()))
        return (g - 0.5 * hvp)[0].mean(dim=(1, 2))
