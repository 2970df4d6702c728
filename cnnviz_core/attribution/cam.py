"""CAM family from the shared pass: CAM, Grad-CAM, Grad-CAM++, XGrad-CAM, LayerCAM, HiResCAM, Eigen-CAM.

Notation: ``A`` the layer's activation ``(C, h, w)`` for the single input, ``G = dy_c/dA`` the
gradient of the target class's *logit* ``y_c`` (pre-softmax, as in the Grad-CAM paper).

Every method here (and Score-CAM / Ablation-CAM in :mod:`.perturbation`) is a small subclass of
:class:`WeightedCAM` that supplies only its channel weights ``w`` - ``(C,)``, or ``(C, h, w)`` for
element-wise weights (pytorch-grad-cam's ``BaseCAM.get_cam_weights`` template). The base computes
``sum_k w_k * A_k`` at layer resolution, applies the ReLU there (as the papers do), then upsamples
to the input size with bilinear interpolation (``align_corners=False``). The raw map is that
upsampled map (``>= 0``, in the method's own units); :mod:`.api` min-max scales it to [0, 1] unless
``scale="none"``.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import MethodUnavailableError
from .passes import PassContext
from .registry import Computed, NoParams, Paper, Params, Product, register

P = Product
CAM_NEEDS_GRAD = (P.ACTIVATION, P.LAYER_GRAD)


def upsample(map2d: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(h, w)`` -> ``(H, W)`` bilinear, ``align_corners=False`` (half-pixel centres)."""
    return F.interpolate(map2d[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]


class WeightedCAM:
    """A CAM-family method: ``ReLU(sum_k w_k A_k)`` at layer resolution, upsampled to the input.

    Subclasses implement :meth:`weights` only (and :meth:`features` where the map weights a
    transform of ``A``, as CAM does for ``GAP(ReLU(A))`` heads). Per-call state lives in ``ctx`` and
    ``info``, never on the (shared, registered) method object."""

    def weights(self, ctx: PassContext, a: torch.Tensor, p: Params, info: dict[str, Any]) -> torch.Tensor:
        """Channel weights for activation ``a`` ``(C, h, w)``: ``(C,)`` or element-wise ``(C, h, w)``."""
        raise NotImplementedError(f"{type(self).__name__}.weights")

    def features(self, ctx: PassContext, a: torch.Tensor, info: dict[str, Any]) -> torch.Tensor:
        """The maps the weights apply to (default: the activation itself)."""
        return a

    def layer_map(self, ctx: PassContext, p: Params, info: dict[str, Any]) -> torch.Tensor:
        """``sum_k w_k F_k`` at layer resolution, before the ReLU."""
        a = ctx.product(P.ACTIVATION)[0]
        w = self.weights(ctx, a, p, info)
        feats = self.features(ctx, a, info)
        dtype = torch.promote_types(w.dtype, feats.dtype)  # Eigen-CAM's float64 singular vector
        w, feats = w.to(dtype), feats.to(dtype)
        cam = (w * feats).sum(dim=0) if w.ndim == 3 else torch.einsum("k,khw->hw", w, feats)
        return cam.to(a.dtype)

    def compute(self, ctx: PassContext, p: Params) -> Computed:
        info: dict[str, Any] = {}
        cam = self.layer_map(ctx, p, info).clamp(min=0)
        return Computed(raw=upsample(cam, ctx.input_size), layer_map=cam, info=info)


def activation_and_grad(ctx: PassContext) -> tuple[torch.Tensor, torch.Tensor]:
    return ctx.product(P.ACTIVATION)[0], ctx.product(P.LAYER_GRAD)[0]


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    return torch.where(den != 0, num / torch.where(den != 0, den, torch.ones_like(den)), torch.zeros_like(num))


_COMMON = dict(family="cam", passes=CAM_NEEDS_GRAD, needs=("gradients",), cost="1 (shared pass)",
               class_discriminative=True)


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
          family="cam", passes=(P.ACTIVATION,), needs=("gap_head",), cost="1 forward", class_discriminative=True)
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
    return GradCAM().layer_map(ctx, NoParams(), {})


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
          family="cam", passes=(P.ACTIVATION,), needs=(), cost="1 forward + SVD", class_discriminative=False)
class EigenCAM(WeightedCAM):
    """Eigen-CAM (Muhammad & Yeasin 2020): the projection ``O V_1`` of the activations
    ``O`` (``hw x C``) on their first right singular vector, as in the paper (no mean-centring;
    pytorch-grad-cam centres first): ``sum_k V_1k A_k``, so the weights are ``V_1``. The singular
    vector's sign is arbitrary; we choose it so the projection has a non-negative sum.
    Class-agnostic: the same map for every target."""

    def weights(self, ctx: PassContext, a: torch.Tensor, p: Params, info: dict[str, Any]) -> torch.Tensor:
        c, h, w = a.shape
        o = a.reshape(c, h * w).T.double()
        _, _, vh = torch.linalg.svd(o, full_matrices=False)
        v = vh[0]
        return -v if float((o @ v).sum()) < 0 else v

