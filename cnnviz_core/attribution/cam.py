"""CAM family from the shared pass: CAM, Grad-CAM, Grad-CAM++, XGrad-CAM, LayerCAM, HiResCAM, Eigen-CAM.

Notation: ``A`` the layer's activation ``(C, h, w)`` for the single input, ``G = dy_c/dA`` the
gradient of the target class's *logit* ``y_c`` (pre-softmax, as in the Grad-CAM paper). Each method
builds a map at layer resolution, applies the ReLU there (as the papers do), then upsamples it to
the input size with bilinear interpolation (``align_corners=False``). The raw map is that upsampled
map (``>= 0``, in the method's own units); :mod:`.api` min-max scales it to [0, 1] unless
``scale="none"``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import MethodUnavailableError
from .passes import PassContext
from .registry import Computed, Paper, register

CAM_NEEDS_GRAD = ("activation", "layer_grad")


def upsample(map2d: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(h, w)`` -> ``(H, W)`` bilinear, ``align_corners=False`` (half-pixel centres)."""
    return F.interpolate(map2d[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]


def finish_cam(ctx: PassContext, cam: torch.Tensor, **info: object) -> Computed:
    """ReLU at layer resolution, then upsample to the input size."""
    cam = cam.clamp(min=0)
    return Computed(raw=upsample(cam, ctx.input_size), layer_map=cam, info=dict(info))


def activation_and_grad(ctx: PassContext) -> tuple[torch.Tensor, torch.Tensor]:
    return ctx.product("activation")[0], ctx.product("layer_grad")[0]


def gradcam_layer_map(ctx: PassContext) -> torch.Tensor:
    """Grad-CAM before its ReLU: ``sum_k mean_ij(G_k) * A_k`` at layer resolution."""
    a, g = activation_and_grad(ctx)
    return torch.einsum("k,khw->hw", g.mean(dim=(1, 2)), a)


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    return torch.where(den != 0, num / torch.where(den != 0, den, torch.ones_like(den)), torch.zeros_like(num))


_COMMON = dict(family="cam", passes=CAM_NEEDS_GRAD, needs=("gradients",), cost="1 (shared pass)",
               class_discriminative=True)


@register("gradcam", display_name="Grad-CAM",
          paper=Paper("Selvaraju et al.", 2017, "Grad-CAM: Visual Explanations from Deep Networks via "
                      "Gradient-based Localization", "https://arxiv.org/abs/1610.02391"), **_COMMON)
def gradcam(ctx: PassContext, p: dict) -> Computed:
    """Grad-CAM (Selvaraju et al. 2017): ``ReLU(sum_k alpha_k A_k)``, ``alpha_k = mean_ij G_kij``."""
    return finish_cam(ctx, gradcam_layer_map(ctx))


@register("gradcam++", display_name="Grad-CAM++",
          paper=Paper("Chattopadhyay et al.", 2018, "Grad-CAM++: Improved Visual Explanations for Deep "
                      "Convolutional Networks", "https://arxiv.org/abs/1710.11063"), **_COMMON)
def gradcam_pp(ctx: PassContext, p: dict) -> Computed:
    """Grad-CAM++ (Chattopadhyay et al. 2018, Eq. 19 with ``Y_c = exp(y_c)``):
    ``alpha_kij = G^2 / (2 G^2 + sum_ab A_kab G^3)`` (0 where the denominator is 0),
    ``w_k = sum_ij alpha_kij ReLU(G_kij)``. The paper's common factor ``exp(y_c)`` is left out of the
    weights (it is the same positive constant for every channel and would overflow float32 for large
    logits), so raw maps are in logit-gradient units like Grad-CAM; scaled maps are unaffected."""
    a, g = activation_and_grad(ctx)
    g2 = g * g
    alpha = _safe_div(g2, 2 * g2 + a.sum(dim=(1, 2), keepdim=True) * g2 * g)
    weights = (alpha * g.clamp(min=0)).sum(dim=(1, 2))
    return finish_cam(ctx, torch.einsum("k,khw->hw", weights, a))


@register("xgradcam", display_name="XGrad-CAM",
          paper=Paper("Fu et al.", 2020, "Axiom-based Grad-CAM: Towards Accurate Visualization and "
                      "Explanation of CNNs", "https://arxiv.org/abs/2008.02312"), **_COMMON)
def xgradcam(ctx: PassContext, p: dict) -> Computed:
    """XGrad-CAM (Fu et al. 2020): ``w_k = sum_ij (A_kij / sum_ab A_kab) G_kij`` (0 if the sum is 0)."""
    a, g = activation_and_grad(ctx)
    weights = _safe_div((a * g).sum(dim=(1, 2)), a.sum(dim=(1, 2)))
    return finish_cam(ctx, torch.einsum("k,khw->hw", weights, a))


@register("layercam", display_name="LayerCAM",
          paper=Paper("Jiang et al.", 2021, "LayerCAM: Exploring Hierarchical Class Activation Maps for "
                      "Localization", "https://doi.org/10.1109/TIP.2021.3089943"), **_COMMON)
def layercam(ctx: PassContext, p: dict) -> Computed:
    """LayerCAM (Jiang et al. 2021): ``ReLU(sum_k ReLU(G_k) * A_k)`` (element-wise weights)."""
    a, g = activation_and_grad(ctx)
    return finish_cam(ctx, (g.clamp(min=0) * a).sum(dim=0))


@register("hirescam", display_name="HiResCAM",
          paper=Paper("Draelos & Carin", 2020, "Use HiResCAM instead of Grad-CAM for faithful explanations "
                      "of convolutional neural networks", "https://arxiv.org/abs/2011.08891"), **_COMMON)
def hirescam(ctx: PassContext, p: dict) -> Computed:
    """HiResCAM (Draelos & Carin 2020): ``ReLU(sum_k G_k * A_k)`` (gradient not averaged)."""
    a, g = activation_and_grad(ctx)
    return finish_cam(ctx, (g * a).sum(dim=0))


@register("eigencam", display_name="Eigen-CAM",
          paper=Paper("Muhammad & Yeasin", 2020, "Eigen-CAM: Class Activation Map using Principal "
                      "Components", "https://arxiv.org/abs/2008.00299"),
          family="cam", passes=("activation",), needs=(), cost="1 forward + SVD", class_discriminative=False)
def eigencam(ctx: PassContext, p: dict) -> Computed:
    """Eigen-CAM (Muhammad & Yeasin 2020): the projection ``O V_1`` of the activations
    ``O`` (``hw x C``) on their first right singular vector, as in the paper (no mean-centring;
    pytorch-grad-cam centres first). The singular vector's sign is arbitrary; we choose it so the
    projection has a non-negative sum. Class-agnostic: the same map for every target."""
    a = ctx.product("activation")[0]
    c, h, w = a.shape
    o = a.reshape(c, h * w).T.double()
    _, _, vh = torch.linalg.svd(o, full_matrices=False)
    proj = o @ vh[0]
    if proj.sum() < 0:
        proj = -proj
    return finish_cam(ctx, proj.reshape(h, w).to(a.dtype))


def gap_linear_head(ctx: PassContext) -> tuple[nn.Linear, bool]:
    """Find ``fc`` with ``logits == fc(mean_ij F)`` where ``F`` is the layer output or its ReLU
    (DenseNet applies a functional ReLU before pooling), checked numerically on this input.
    Returns ``(fc, relu_applied)``; :class:`MethodUnavailableError` when no such head exists."""
    a, logits = ctx.product("activation"), ctx.product("logits")
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
          family="cam", passes=("activation",), needs=("gap_head",), cost="1 forward", class_discriminative=True)
def cam(ctx: PassContext, p: dict) -> Computed:
    """CAM (Zhou et al. 2016): ``M_c = sum_k w_ck F_k`` with ``w`` the weights of the linear layer
    after global average pooling (bias excluded). Only for GAP -> linear heads, verified numerically."""
    fc, relu = gap_linear_head(ctx)
    a = ctx.product("activation")[0]
    feats = a.clamp(min=0) if relu else a
    weights = fc.weight[ctx.resolved_target()].to(a.dtype)
    return finish_cam(ctx, torch.einsum("k,khw->hw", weights, feats),
                      head="GAP -> ReLU -> linear" if relu else "GAP -> linear")
