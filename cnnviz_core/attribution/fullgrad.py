"""FullGrad (Srinivas & Fleuret 2019, "Full-Gradient Representation for Neural Network Visualization").

For a network with biases, the output decomposes exactly (for piecewise-linear networks: ReLU,
max/avg pooling, convolutions, BatchNorm in eval mode, linear layers) into the input-gradient term
and one bias-gradient term per bias (the paper's *completeness*, Eq. 2):

    f(x) = sum_i (grad_x f * x)_i + sum_layers sum_(c, y, x) b_c * (d f / d z_cyx),

with ``z`` the layer's output. FullGrad (Eq. 4) turns the terms into one saliency map:

    S(x) = psi(grad_x f * x) + sum_(conv/BN layers l) sum_(channels c) psi(f^b_l(x)_c),
    f^b_l(x)_c = b_c * d f / d z_l,c   (a (h, w) map per channel),

``psi`` = absolute value, min-max rescaling to [0, 1], bilinear upsampling to the input. Every conv
layer with a bias and every BatchNorm2d counts; a BatchNorm's bias is its *effective* bias in eval
mode, ``beta - gamma * running_mean / sqrt(running_var + eps)`` (it computes
``gamma / sqrt(var + eps) * z + that``), as in the paper's code and pytorch-grad-cam. Linear layers'
biases have no spatial extent and are left out (as in the paper and pgc); implicit biases of
non-piecewise-linear activations (Hardswish, SiLU, GELU) are not modelled (neither are they there).

Speed: ONE forward and ONE backward. The gradient at every conv/BN output comes from the same plain
``autograd.grad`` call as the input gradient (the layers are planned on the shared pass,
:meth:`~.passes.PassContext.plan_layers`), so FullGrad also shares the pass of Grad-CAM, saliency etc.
in the same request. pgc's ``FullGrad`` registers one tensor hook per layer during its own pass.

Output: raw ``(H, W)`` ``>= 0``, the sum of the rescaled terms (so in "number of channels" units),
min-max scaled by :mod:`.api`. Options (:class:`FullGradParams`, pgc's): ``aug_smooth`` (the six
test-time augmentations of :mod:`.cam`, each map min-max scaled, averaged) and ``eigen_smooth``
(pgc's: the first principal component of the stacked term maps, at 1/8 of the input resolution).

Where we follow the paper rather than pytorch-grad-cam: pgc rescales the input term per colour
channel and sums the three; the paper applies ``psi`` to the input-gradient term as a whole (and its
authors' code rescales the (3, H, W) tensor at once, then sums the colour channels), which we do.
The bias terms are rescaled per channel in both (the paper's ``sum_c psi(f^b_c)``). Measured against
pgc on random-weight ResNet-18 / VGG-11 / DenseNet-121: r >= 0.99 (see the tests).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import MethodUnavailableError
from ..progress import check_cancel
from .cam import augmented_contexts, principal_projection, upsample
from .passes import LayerPlan, PassContext, layer_planner
from .registry import CAMParams, Computed, Paper, Product, register

P = Product


@dataclass(frozen=True)
class FullGradParams(CAMParams):
    """FullGrad has no parameters of its own; it takes the CAM family's ``aug_smooth`` and
    ``eigen_smooth`` (see the module doc for what they mean here)."""


def bias_layers(model: nn.Module) -> tuple[list[tuple[str, nn.Module]], list[str]]:
    """``([(path, module)], skipped)``: every ``nn.Conv2d`` with a bias and every ``nn.BatchNorm2d``
    that normalizes with running statistics, in definition order; ``skipped``: BatchNorm layers
    without running statistics (their bias depends on the batch, so it has no fixed value)."""
    found, skipped = [], []
    for path, m in model.named_modules():
        if isinstance(m, nn.Conv2d) and m.bias is not None:
            found.append((path, m))
        elif isinstance(m, nn.BatchNorm2d):
            if m.running_mean is None or m.running_var is None:
                skipped.append(path)
            else:
                found.append((path, m))
    return found, skipped


def effective_bias(module: nn.Module) -> torch.Tensor:
    """``(C,)`` the bias a layer adds to each output channel in eval mode: a conv's bias; for a
    BatchNorm ``beta - gamma * mean / sqrt(var + eps)`` (``gamma = 1``, ``beta = 0`` when not affine)."""
    if isinstance(module, nn.BatchNorm2d):
        assert module.running_mean is not None and module.running_var is not None
        scale = torch.rsqrt(module.running_var + module.eps)
        gamma = module.weight if module.weight is not None else torch.ones_like(scale)
        beta = module.bias if module.bias is not None else torch.zeros_like(scale)
        return (beta - gamma * module.running_mean * scale).detach()
    assert isinstance(module, nn.Conv2d) and module.bias is not None
    return module.bias.detach()


def _require_hooks(ctx: PassContext) -> None:
    if not getattr(ctx.handle, "hookable", True):
        raise MethodUnavailableError("FullGrad needs the gradient at every conv/BatchNorm layer, and this "
                                     "model's layers cannot be hooked (TorchScript)")


@layer_planner("fullgrad")
def _plan(ctx: PassContext, p: FullGradParams) -> LayerPlan:
    _require_hooks(ctx)
    return {path: (P.LAYER_GRAD,) for path, _ in bias_layers(ctx.model)[0]}


def bias_gradients(ctx: PassContext) -> dict[str, torch.Tensor]:
    """``{layer: f^b (C, h, w)}``: the bias-gradient maps ``b_c * d y / d z_l,c`` of every bias
    layer the forward runs (layers it never runs, e.g. GoogLeNet's auxiliary heads in eval mode,
    are left out), from the request's one pass."""
    _require_hooks(ctx)
    out = {}
    for path, module in bias_layers(ctx.model)[0]:
        g = ctx.layer_product(path, P.LAYER_GRAD, missing_ok=True)
        if g is not None:
            out[path] = g[0] * effective_bias(module).to(g.dtype)[:, None, None]
    return out


def input_gradient_term(ctx: PassContext) -> torch.Tensor:
    """``(3, H, W)`` ``grad_x y * x``, the input part of the full-gradient decomposition."""
    return ctx.product(P.INPUT_GRAD)[0] * ctx.x[0]


def _unit_range(m: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """Min-max rescale to [0, 1] over ``dims`` (constant slices become 0)."""
    lo, hi = m.amin(dim=dims, keepdim=True), m.amax(dim=dims, keepdim=True)
    span = hi - lo
    return torch.where(span > 0, (m - lo) / torch.where(span > 0, span, torch.ones_like(span)), torch.zeros_like(m))


def term_maps(ctx: PassContext) -> tuple[list[str], torch.Tensor, list[str]]:
    """``(names, maps (1 + L, H, W), unused)``: ``psi`` of the input term (rescaled as a whole,
    colour channels summed) and, per bias layer, ``sum_c psi(f^b_c)`` (each channel rescaled at
    layer resolution, summed, upsampled: upsampling is linear, so this equals upsampling each
    channel first). ``unused``: bias layers the forward never ran."""
    size = ctx.input_size
    names = ["input x gradient"]
    maps = [_unit_range(input_gradient_term(ctx).abs(), (0, 1, 2)).sum(dim=0)]
    grads = bias_gradients(ctx)
    for path, fb in grads.items():
        names.append(path)
        maps.append(upsample(_unit_range(fb.abs(), (1, 2)).sum(dim=0), size))
    unused = [path for path, _ in bias_layers(ctx.model)[0] if path not in grads]
    return names, torch.stack(maps), unused


def rescaled_bias_sums(grads: list[torch.Tensor], biases: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per layer, ``(h, w)`` ``sum_c psi(f^b_c)`` at layer resolution (before upsampling) for
    ``f^b = bias * g``, ``g`` ``(C, h, w)`` the gradient at the layer's output, without building
    ``f^b``: ``|f^b_c| = |b_c| |g_c|``, so its min-max rescaling is ``(|g_c| - lo_c) / (hi_c - lo_c)``
    with ``lo``/``hi`` the extremes of ``|g_c|`` (0 where ``b_c = 0`` or the channel is constant), and
    the channel sum is one contraction ``sum_c s_c |g_c| - sum_c s_c lo_c``, ``s_c = 1 / (hi_c - lo_c)``.
    The per-channel scales of all layers are computed in one go (53 layers for a ResNet-50)."""
    magnitudes = [g.abs() for g in grads]
    lo = torch.cat([m.amin(dim=(1, 2)) for m in magnitudes])
    hi = torch.cat([m.amax(dim=(1, 2)) for m in magnitudes])
    span = hi - lo
    live = (span > 0) & (torch.cat(biases).to(span.dtype) != 0)
    scale = torch.where(live, 1.0 / torch.where(live, span, torch.ones_like(span)), torch.zeros_like(span))
    counts = [int(m.shape[0]) for m in magnitudes]
    offsets = torch.cat([(scale * lo).new_zeros(1), (scale * lo).cumsum(0)])
    ends = torch.tensor(counts).cumsum(0).tolist()
    out, start = [], 0
    for m, s, end in zip(magnitudes, scale.split(counts), ends):
        out.append(torch.einsum("chw,c->hw", m, s) - (offsets[end] - offsets[start]))
        start = end
    return out


def summed_terms(ctx: PassContext) -> tuple[torch.Tensor, int, list[str]]:
    """``(S (H, W), layers, unused)``: Eq. 4's sum of the rescaled terms, equal to
    ``term_maps(ctx)[1].sum(0)`` but faster: the bias layers' rescaled channel sums
    (:func:`rescaled_bias_sums`) are added up per layer resolution and upsampled once per
    resolution (upsampling is linear). ``layers``: bias layers the forward ran."""
    total = _unit_range(input_gradient_term(ctx).abs(), (0, 1, 2)).sum(dim=0)
    grads, biases, unused = [], [], []
    for path, module in bias_layers(ctx.model)[0]:
        g = ctx.layer_product(path, P.LAYER_GRAD, missing_ok=True)
        if g is None:
            unused.append(path)
        else:
            grads.append(g[0])
            biases.append(effective_bias(module))
    by_size: dict[tuple[int, int], torch.Tensor] = {}
    for m in (rescaled_bias_sums(grads, biases) if grads else []):
        key = (int(m.shape[0]), int(m.shape[1]))
        by_size[key] = m if key not in by_size else by_size[key] + m
    for m in by_size.values():
        total = total + upsample(m, ctx.input_size).to(total.dtype)
    return total, len(grads), unused


def _eigen(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """pgc's FullGrad ``eigen_smooth``: every term map rescaled and resized to 1/8 of the input,
    projected on the first principal component (:func:`~.cam.principal_projection`, centred and
    oriented), rescaled and upsampled."""
    small = (max(1, size[0] // 8), max(1, size[1] // 8))
    down = F.interpolate(_unit_range(maps, (1, 2))[None], size=small, mode="bilinear", align_corners=False)[0]
    proj = principal_projection(_unit_range(down, (1, 2))).to(maps.dtype)
    return upsample(_unit_range(proj, (0, 1)), size)


def fullgrad_map(ctx: PassContext, p: FullGradParams, info: dict[str, Any]) -> torch.Tensor:
    """FullGrad's ``(H, W)`` map on one context (no test-time augmentation)."""
    if p.eigen_smooth:  # needs every term map on its own
        names, maps, unused = term_maps(ctx)
        layers = len(names) - 1
        info["eigen_smooth"] = "first principal component of the stacked term maps (at 1/8 resolution)"
        result = _eigen(maps, ctx.input_size)
    else:
        result, layers, unused = summed_terms(ctx)
    info["bias_layers"] = layers
    if unused:
        info["unused_bias_layers"] = len(unused)
    return result


@register("fullgrad", display_name="FullGrad",
          paper=Paper("Srinivas & Fleuret", 2019, "Full-Gradient Representation for Neural Network Visualization",
                      "https://arxiv.org/abs/1905.00780"),
          family="cam", passes=(P.INPUT_GRAD,), needs=("gradients",),
          cost="1 forward + 1 backward (gradients at every conv/BN output)", class_discriminative=True,
          params=FullGradParams)
def fullgrad(ctx: PassContext, p: FullGradParams) -> Computed:
    """FullGrad (Srinivas & Fleuret 2019): |input-gradient x input| plus the per-channel rescaled
    |bias-gradients| of every conv/BatchNorm layer, from one forward and one backward. ``(H, W)``
    ``>= 0`` (sum of [0, 1] terms); scaled to [0, 1] by the engine. Independent of the chosen layer."""
    _require_hooks(ctx)
    info: dict[str, Any] = {}
    skipped = bias_layers(ctx.model)[1]
    if skipped:
        info["skipped_batchnorm"] = f"{len(skipped)} BatchNorm layers without running statistics"
    if not p.aug_smooth:
        return Computed(raw=fullgrad_map(ctx, p, info), info=info)
    plain = FullGradParams(eigen_smooth=p.eigen_smooth)
    # every layer the request planned (other fusions' too), so each augmentation runs one pass
    plan = {**ctx.planned_layers, **{k: set(v) for k, v in _plan(ctx, p).items()}}
    contexts = augmented_contexts(ctx)
    total: Optional[torch.Tensor] = None
    for sub, flipped in contexts:
        check_cancel(ctx.cancel)
        sub.plan({P.INPUT_GRAD})
        sub.plan_layers(plan)  # no effect on a context whose pass already ran: it then runs one more
        part: dict[str, Any] = {}
        m = _unit_range(fullgrad_map(sub, plain, part), (0, 1))
        m = m.flip(-1) if flipped else m
        total = m if total is None else total + m
        if sub is ctx:
            info.update(part)
    assert total is not None
    info["aug_smooth"] = (f"mean of {len(contexts)} test-time augmentations (horizontal flip x intensity "
                          "0.9/1/1.1), each min-max scaled")
    return Computed(raw=total / len(contexts), info=info)
