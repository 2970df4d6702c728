"""CAM family from the shared pass: CAM, Grad-CAM, Grad-CAM++, XGrad-CAM, LayerCAM, HiResCAM, Eigen-CAM.

Notation: ``A`` the layer's activation ``(C, h, w)`` for the single input, ``G = dy_c/dA`` the
gradient of the target class's *logit* ``y_c`` (pre-softmax, as in the Grad-CAM paper).

Every method here (and Score-CAM / Ablation-CAM in :mod:`.perturbation`, the gradient variants in
:mod:`.cam_variants`) is a small subclass of :class:`WeightedCAM` that supplies only its channel
weights ``w`` - ``(C,)``, or ``(C, h, w)`` for element-wise weights (pytorch-grad-cam's
``BaseCAM.get_cam_weights`` template). The base computes ``sum_k w_k * A_k`` at layer resolution,
applies the ReLU there (as the papers do), then upsamples to the input size with bilinear
interpolation (``align_corners=False``). The raw map is that upsampled map (``>= 0``, in the
method's own units); :mod:`.api` min-max scales it to [0, 1] unless ``scale="none"``.

Every CAM-family map takes the two options of :class:`~.registry.CAMParams` (pytorch-grad-cam's
names and definitions, implemented in the base so each method gets them):

* ``eigen_smooth``: the map is the projection of the weighted activations ``w_k A_k`` (``hw``
  samples of ``C`` features, mean-centred over positions) on their first principal component
  (:func:`principal_projection`, pgc's ``get_2d_projection``), instead of their sum over ``k``.
  The component's sign is arbitrary (pgc keeps whatever LAPACK returns); we orient it so the
  projection correlates non-negatively with the un-smoothed map ``sum_k w_k A_k`` (equivalently,
  the component's entries have a non-negative sum; the centred projection itself always sums to 0).
  Methods whose map already is such a projection (Eigen-CAM, EigenGrad-CAM, KPCA-CAM) ignore it,
  as pgc does, and say so in ``info``.
* ``aug_smooth``: test-time augmentation as pgc does it (ttach ``HorizontalFlip() x Multiply([0.9,
  1, 1.1])``): the six inputs ``flip?(f * x)`` (``x`` the normalized input tensor, ``f`` an
  intensity factor) are each explained through their own :class:`~.passes.PassContext` and main
  pass (the un-augmented one is the request's own context; the others are shared by all CAM
  methods of the request), for the same class. Each augmentation's ReLU'd layer map is min-max
  scaled to [0, 1] at layer resolution, upsampled, flipped back, and the six maps are averaged. So
  the raw map is in [0, 1] (not the method's units) and there is no single layer-resolution map
  (``layer_map`` is None). Costs 6x the method.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import MethodUnavailableError
from ..progress import Progress, ProgressFn, check_cancel
from .passes import PassContext
from .registry import CAMParams, Computed, Paper, Params, Product, register

P = Product
CAM_NEEDS_GRAD = (P.ACTIVATION, P.LAYER_GRAD)


def upsample(map2d: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(h, w)`` -> ``(H, W)`` bilinear, ``align_corners=False`` (half-pixel centres)."""
    return F.interpolate(map2d[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]


#: pgc's test-time augmentations (ttach ``HorizontalFlip() x Multiply([0.9, 1, 1.1])``, in its
#: order): ``(horizontal flip, intensity factor of the normalized input)``.
AUGMENTATIONS: tuple[tuple[bool, float], ...] = tuple((flip, f) for flip in (False, True) for f in (0.9, 1.0, 1.1))


def principal_projection(maps: torch.Tensor) -> torch.Tensor:
    """``(C, h, w)`` -> ``(h, w)``: the ``hw`` positions (samples of ``C`` features, mean-centred
    over positions, NaN set to 0) projected on their first principal component, in float64
    (pgc's ``get_2d_projection``). Oriented so the projection correlates non-negatively with
    ``maps.sum(0)`` (pgc leaves the sign to the SVD)."""
    c, h, w = maps.shape
    o = torch.nan_to_num(maps.double().reshape(c, h * w).T, nan=0.0)
    o = o - o.mean(dim=0, keepdim=True)
    _, _, vh = torch.linalg.svd(o, full_matrices=False)
    return orient(o @ vh[0], o.sum(dim=1)).reshape(h, w)


def orient(projection: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Flip ``projection`` (a principal component's scores, sign arbitrary) when it correlates
    negatively with ``reference`` (same number of elements)."""
    return -projection if anticorrelated(projection, reference) else projection


def anticorrelated(p: torch.Tensor, reference: torch.Tensor) -> bool:
    """Whether ``p`` correlates negatively with ``reference`` (same number of elements)."""
    p, r = p.flatten(), reference.flatten().to(p.dtype)
    return float(((p - p.mean()) * (r - r.mean())).sum()) < 0


def _unit_range(m: torch.Tensor) -> torch.Tensor:
    lo, hi = m.min(), m.max()
    return (m - lo) / (hi - lo) if hi > lo else torch.zeros_like(m)


def _relabelled(progress: Optional[ProgressFn], label: str) -> Optional[ProgressFn]:
    if progress is None:
        return None

    def relay(p: Progress) -> None:
        progress(Progress(p.step, p.total, f"{p.message} ({label})".strip(), p.losses, p.preview))

    return relay


def augmented_contexts(ctx: PassContext) -> list[tuple[PassContext, bool]]:
    """``aug_smooth``'s six ``(context, flipped)`` pairs for this request, in :data:`AUGMENTATIONS`
    order: the un-augmented one is ``ctx`` itself, the five others are new :class:`PassContext`
    objects on ``flip?(f * ctx.x)`` for the same layer and class, created once per request (kept on
    ``ctx``) so that every CAM method of the request shares their passes. Each plans the layer
    products ``ctx`` planned, so one main pass serves them all."""
    made: Optional[list[tuple[PassContext, bool]]] = getattr(ctx, "_cam_augmentations", None)
    if made is None:
        target = ctx.resolved_target()
        planned = {P.ACTIVATION} | (set(getattr(ctx, "_planned", ())) & {P.ACTIVATION, P.LAYER_GRAD})
        made = []
        for i, (flip, factor) in enumerate(AUGMENTATIONS):
            if not flip and factor == 1.0:
                made.append((ctx, False))
                continue
            x = ctx.x * factor
            sub = PassContext(ctx.handle, x.flip(-1) if flip else x, ctx.layer, target,
                              progress=_relabelled(ctx.progress, f"augmentation {i + 1}/{len(AUGMENTATIONS)}"),
                              cancel=ctx.cancel)
            sub.plan(planned)
            made.append((sub, flip))
        ctx._cam_augmentations = made  # type: ignore[attr-defined]  # per-request state, on the request
    return made


class WeightedCAM:
    """A CAM-family method: ``ReLU(sum_k w_k A_k)`` at layer resolution, upsampled to the input.

    Subclasses implement :meth:`weights` only (and :meth:`features` where the map weights a
    transform of ``A``, as CAM does for ``GAP(ReLU(A))`` heads). The base applies the
    ``eigen_smooth`` and ``aug_smooth`` options (module doc) for every subclass. Per-call state
    lives in ``ctx`` and ``info``, never on the (shared, registered) method object."""

    #: The map already is a principal-component projection (``eigen_smooth`` does not apply).
    projection: bool = False

    def weights(self, ctx: PassContext, a: torch.Tensor, p: Params, info: dict[str, Any]) -> torch.Tensor:
        """Channel weights for activation ``a`` ``(C, h, w)``: ``(C,)`` or element-wise ``(C, h, w)``."""
        raise NotImplementedError(f"{type(self).__name__}.weights")

    def features(self, ctx: PassContext, a: torch.Tensor, info: dict[str, Any]) -> torch.Tensor:
        """The maps the weights apply to (default: the activation itself)."""
        return a

    def layer_map(self, ctx: PassContext, p: Params, info: dict[str, Any]) -> torch.Tensor:
        """``sum_k w_k F_k`` at layer resolution, before the ReLU (with ``eigen_smooth``: the first
        principal component's projection of the ``w_k F_k``)."""
        a = ctx.product(P.ACTIVATION)[0]
        w = self.weights(ctx, a, p, info)
        feats = self.features(ctx, a, info)
        dtype = torch.promote_types(w.dtype, feats.dtype)  # Eigen-CAM's float64 singular vector
        w, feats = w.to(dtype), feats.to(dtype)
        if getattr(p, "eigen_smooth", False):
            if self.projection:
                info["eigen_smooth"] = "ignored: the map already is a principal-component projection"
            else:
                info["eigen_smooth"] = "first principal component of the weighted activations"
                return principal_projection(w[:, None, None] * feats if w.ndim == 1 else w * feats).to(a.dtype)
        cam = (w * feats).sum(dim=0) if w.ndim == 3 else torch.einsum("k,khw->hw", w, feats)
        return cam.to(a.dtype)

    def compute(self, ctx: PassContext, p: Params) -> Computed:
        if getattr(p, "aug_smooth", False):
            return self._augmented(ctx, p)
        info: dict[str, Any] = {}
        cam = self.layer_map(ctx, p, info).clamp(min=0)
        return Computed(raw=upsample(cam, ctx.input_size), layer_map=cam, info=info)

    def _augmented(self, ctx: PassContext, p: Params) -> Computed:
        info: dict[str, Any] = {}
        total: Optional[torch.Tensor] = None
        contexts = augmented_contexts(ctx)
        for sub, flipped in contexts:
            check_cancel(ctx.cancel)
            part: dict[str, Any] = {}
            cam = upsample(_unit_range(self.layer_map(sub, p, part).clamp(min=0)), ctx.input_size)
            cam = cam.flip(-1) if flipped else cam
            total = cam if total is None else total + cam
            if sub is ctx:
                info.update(part)
        assert total is not None
        info["aug_smooth"] = (f"mean of {len(contexts)} test-time augmentations (horizontal flip x intensity "
                              "0.9/1/1.1), each min-max scaled")
        return Computed(raw=total / len(contexts), layer_map=None, info=info)


def activation_and_grad(ctx: PassContext) -> tuple[torch.Tensor, torch.Tensor]:
    return ctx.product(P.ACTIVATION)[0], ctx.product(P.LAYER_GRAD)[0]


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    return torch.where(den != 0, num / torch.where(den != 0, den, torch.ones_like(den)), torch.zeros_like(num))


_COMMON = dict(family="cam", passes=CAM_NEEDS_GRAD, needs=("gradients",), cost="1 (shared pass)",
               class_discriminative=True, params=CAMParams, reference="pytorch-grad-cam")


def gap_linear_head(ctx: PassContext) -> tuple[nn.Linear, bool]:
    """Find ``fc`` with ``logits == fc(mean_ij F)`` where ``F`` is the layer output or its ReLU
    (DenseNet applies a functional ReLU before pooling), checked numerically on this input.
    Returns ``(fc, relu_applied)``; :class:`MethodUnavailableError` when no such head exists."""
    a, logits = ctx.product(P.ACTIVATION), ctx.product(P.LOGITS)
    channels, classes = a.shape[1], logits.shape[1]
    candidates = [m for m in ctx.model.modules()
                  if isinstance(m, nn.Linear) and m.in_features == channels and m.out_features == classes]
    tol = 1e-4 * (1.0 + float(logits.abs().max()))
    for fc in reversed(candidates):
        for relu in (False, True):
            feats = a.clamp(min=0) if relu else a
            if torch.allclose(F.linear(feats.mean(dim=(2, 3)), fc.weight, fc.bias), logits, rtol=1e-4, atol=tol):
                return fc, relu
    raise MethodUnavailableError(
        f"CAM needs the layer output to feed global average pooling and one linear layer; "
        f"{ctx.handle.name!r} at layer {ctx.layer!r} does not (use gradcam, equal to CAM on such heads)")


@register("cam", display_name="CAM",
          paper=Paper("Zhou et al.", 2016, "Learning Deep Features for Discriminative Localization",
                      "https://arxiv.org/abs/1512.04150"),
          family="cam", passes=(P.ACTIVATION,), needs=("gap_head",), cost="1 forward", class_discriminative=True,
          params=CAMParams)
class CAM(WeightedCAM):
    """CAM (Zhou et al. 2016): ``M_c = sum_k w_ck F_k`` with ``w`` the weights of the linear layer
    after global average pooling (bias excluded). Only for GAP -> linear heads, verified numerically."""

    def weights(self, ctx: PassContext, a: torch.Tensor, p: Params, info: dict[str, Any]) -> torch.Tensor:
        fc, relu = gap_linear_head(ctx)
        info["head"] = "GAP -> ReLU -> linear" if relu else "GAP -> linear"
        return fc.weight[ctx.resolved_target()]

    def features(self, ctx: PassContext, a: torch.Tensor, info: dict[str, Any]) -> torch.Tensor:
        return a.clamp(min=0) if info["head"].startswith("GAP -> ReLU") else a


@register("gradcam", display_name="Grad-CAM",
          paper=Paper("Selvaraju et al.", 2017, "Grad-CAM: Visual Explanations from Deep Networks via "
                      "Gradient-based Localization", "https://arxiv.org/abs/1610.02391"), **_COMMON)
class GradCAM(WeightedCAM):
    """Grad-CAM (Selvaraju et al. 2017): ``ReLU(sum_k alpha_k A_k)``, ``alpha_k = mean_ij G_kij``."""

    def weights(self, ctx: PassContext, a: torch.Tensor, p: Params, info: dict[str, Any]) -> torch.Tensor:
        return ctx.product(P.LAYER_GRAD)[0].mean(dim=(1, 2))


def gradcam_layer_map(ctx: PassContext) -> torch.Tensor:
    """Grad-CAM before its ReLU: ``sum_k mean_ij(G_k) * A_k`` at layer resolution."""
    return GradCAM().layer_map(ctx, CAMParams(), {})


@register("gradcam++", display_name="Grad-CAM++",
          paper=Paper("Chattopadhyay et al.", 2018, "Grad-CAM++: Improved Visual Explanations for Deep "
                      "Convolutional Networks", "https://arxiv.org/abs/1710.11063"), **_COMMON)
class GradCAMPlusPlus(WeightedCAM):
    """Grad-CAM++ (Chattopadhyay et al. 2018, Eq. 19 with ``Y_c = exp(y_c)``):
    ``alpha_kij = G^2 / (2 G^2 + sum_ab A_kab G^3)`` (0 where the denominator is 0),
    ``w_k = sum_ij alpha_kij ReLU(G_kij)``. The paper's common factor ``exp(y_c)`` is left out of the
    weights (it is the same positive constant for every channel and would overflow float32 for large
    logits), so raw maps are in logit-gradient units like Grad-CAM; scaled maps are unaffected."""

    def weights(self, ctx: PassContext, a: torch.Tensor, p: Params, info: dict[str, Any]) -> torch.Tensor:
        g = ctx.product(P.LAYER_GRAD)[0]
        g2 = g * g
        alpha = _safe_div(g2, 2 * g2 + a.sum(dim=(1, 2), keepdim=True) * g2 * g)
        return (alpha * g.clamp(min=0)).sum(dim=(1, 2))


@register("xgradcam", display_name="XGrad-CAM",
          paper=Paper("Fu et al.", 2020, "Axiom-based Grad-CAM: Towards Accurate Visualization and "
                      "Explanation of CNNs", "https://arxiv.org/abs/2008.02312"), **_COMMON)
class XGradCAM(WeightedCAM):
    """XGrad-CAM (Fu et al. 2020): ``w_k = sum_ij (A_kij / sum_ab A_kab) G_kij`` (0 if the sum is 0)."""

    def weights(self, ctx: PassContext, a: torch.Tensor, p: Params, info: dict[str, Any]) -> torch.Tensor:
        g = ctx.product(P.LAYER_GRAD)[0]
        return _safe_div((a * g).sum(dim=(1, 2)), a.sum(dim=(1, 2)))


@register("layercam", display_name="LayerCAM",
          paper=Paper("Jiang et al.", 2021, "LayerCAM: Exploring Hierarchical Class Activation Maps for "
                      "Localization", "https://doi.org/10.1109/TIP.2021.3089943"), **_COMMON)
class LayerCAM(WeightedCAM):
    """LayerCAM (Jiang et al. 2021): ``ReLU(sum_k ReLU(G_k) * A_k)`` (element-wise weights)."""

    def weights(self, ctx: PassContext, a: torch.Tensor, p: Params, info: dict[str, Any]) -> torch.Tensor:
        return ctx.product(P.LAYER_GRAD)[0].clamp(min=0)


@register("hirescam", display_name="HiResCAM",
          paper=Paper("Draelos & Carin", 2020, "Use HiResCAM instead of Grad-CAM for faithful explanations "
                      "of convolutional neural networks", "https://arxiv.org/abs/2011.08891"), **_COMMON)
class HiResCAM(WeightedCAM):
    """HiResCAM (Draelos & Carin 2020): ``ReLU(sum_k G_k * A_k)`` (gradient not averaged)."""

    def weights(self, ctx: PassContext, a: torch.Tensor, p: Params, info: dict[str, Any]) -> torch.Tensor:
        return ctx.product(P.LAYER_GRAD)[0]


@register("eigencam", display_name="Eigen-CAM",
          paper=Paper("Muhammad & Yeasin", 2020, "Eigen-CAM: Class Activation Map using Principal "
                      "Components", "https://arxiv.org/abs/2008.00299"),
          family="cam", passes=(P.ACTIVATION,), needs=(), cost="1 forward + SVD", class_discriminative=False,
          params=CAMParams)
class EigenCAM(WeightedCAM):
    """Eigen-CAM (Muhammad & Yeasin 2020): the projection ``O V_1`` of the activations
    ``O`` (``hw x C``) on their first right singular vector, as in the paper (no mean-centring;
    pytorch-grad-cam centres first): ``sum_k V_1k A_k``, so the weights are ``V_1``. The singular
    vector's sign is arbitrary; we choose it so the projection has a non-negative sum.
    Class-agnostic: the same map for every target. ``eigen_smooth`` is ignored (already a projection)."""

    projection = True

    def weights(self, ctx: PassContext, a: torch.Tensor, p: Params, info: dict[str, Any]) -> torch.Tensor:
        c, h, w = a.shape
        o = a.reshape(c, h * w).T.double()
        _, _, vh = torch.linalg.svd(o, full_matrices=False)
        v = vh[0]
        return -v if float((o @ v).sum()) < 0 else v

