"""Gradient family: maps per input pixel and channel, ``(3, H, W)`` float32, the raw attribution
w.r.t. the *normalized* input tensor (never rescaled; show them with a symmetric colour scale or
take ``abs().max(0)`` for a Simonyan-style saliency image).

Saliency, deconvnet and guided backprop come from the shared pass (one backward each, with the ReLU
rule of :func:`~cnnviz_core.hooks.relu_backward_rule`: no model mutation, functional ReLUs
included). SmoothGrad and Integrated Gradients run their own batched forward/backward passes.

All six except guided Grad-CAM accept unit targets (:mod:`.targets`): the score is then the
unit's activation, read from a forward truncated right after the unit's layer. Deconvnet on a
neuron is Zeiler & Fergus's projection of one activation back to the image.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..errors import MethodUnavailableError
from ..progress import check_cancel, report
from .cam import gradcam_layer_map, upsample
from .passes import PassContext
from .registry import (Computed, IntegratedGradientsParams, NoParams, Paper, Product, SmoothGradParams,
                       register)

P = Product


def _relu_rule_map(ctx: PassContext, product: Product, name: str) -> Computed:
    if not ctx.handle.hookable:
        raise MethodUnavailableError(f"{name} cannot run on a TorchScript program: its ReLUs run outside Python "
                                     "and cannot take the modified backward rule; load a state_dict or a .pt2")
    grad = ctx.product(product)[0]
    if not ctx.relu_calls and ctx.is_unit and not ctx.non_relu_activations():
        # a unit with no activation before it (a first conv): every rule is the plain gradient
        return Computed(raw=grad, info={"relu_calls": 0, "note": "no ReLU before the unit: equals the gradient"})
    if not ctx.relu_calls:
        raise MethodUnavailableError(f"{name} needs ReLU activations; {ctx.handle.name!r} has none"
                                     f"{' before the unit' if ctx.is_unit else ''} "
                                     f"(activations: {', '.join(ctx.non_relu_activations()) or 'unknown'})")
    return Computed(raw=grad, info=_relu_info(ctx))


def _relu_info(ctx: PassContext) -> dict:
    info: dict = {"relu_calls": ctx.relu_calls}
    others = ctx.non_relu_activations()
    if others:
        info["warning"] = f"only ReLUs get the modified backward rule; {', '.join(others)} back-propagate plainly"
    return info


_SALIENCY_PAPER = Paper("Simonyan, Vedaldi & Zisserman", 2014, "Deep Inside Convolutional Networks: "
                        "Visualising Image Classification Models and Saliency Maps", "https://arxiv.org/abs/1312.6034")


@register("saliency", display_name="Saliency (vanilla gradient)", paper=_SALIENCY_PAPER, family="gradient",
          passes=(P.INPUT_GRAD,), needs=("gradients",), cost="1 (shared pass)", class_discriminative=True,
          unit_targets=True)
def saliency(ctx: PassContext, p: NoParams) -> Computed:
    """Vanilla gradient (Simonyan et al. 2014): ``dy_c/dx`` of the target logit (or of the unit)."""
    return Computed(raw=ctx.product(P.INPUT_GRAD)[0])


@register("deconvnet", display_name="Deconvnet",
          paper=Paper("Zeiler & Fergus", 2014, "Visualizing and Understanding Convolutional Networks",
                      "https://arxiv.org/abs/1311.2901"),
          family="gradient", passes=(P.DECONVNET,), needs=("gradients", "relu"), cost="1 extra backward",
          class_discriminative=False, unit_targets=True)
def deconvnet(ctx: PassContext, p: NoParams) -> Computed:
    """Deconvnet (Zeiler & Fergus 2014): back-propagation where each ReLU passes ``ReLU(signal)``."""
    return _relu_rule_map(ctx, P.DECONVNET, "deconvnet")


@register("guided_backprop", display_name="Guided backpropagation",
          paper=Paper("Springenberg et al.", 2015, "Striving for Simplicity: The All Convolutional Net",
                      "https://arxiv.org/abs/1412.6806"),
          family="gradient", passes=(P.GUIDED,), needs=("gradients", "relu"), cost="1 extra backward",
          class_discriminative=False, unit_targets=True)
def guided_backprop(ctx: PassContext, p: NoParams) -> Computed:
    """Guided backprop (Springenberg et al. 2015): ReLUs pass ``ReLU(signal) * [input > 0]``."""
    return _relu_rule_map(ctx, P.GUIDED, "guided backprop")


@register("guided_gradcam", display_name="Guided Grad-CAM",
          paper=Paper("Selvaraju et al.", 2017, "Grad-CAM: Visual Explanations from Deep Networks via "
                      "Gradient-based Localization", "https://arxiv.org/abs/1610.02391"),
          family="gradient", passes=(P.GUIDED, P.ACTIVATION, P.LAYER_GRAD), needs=("gradients", "relu"),
          cost="reuses Grad-CAM + guided backprop", class_discriminative=True)
def guided_gradcam(ctx: PassContext, p: NoParams) -> Computed:
    """Guided Grad-CAM (Selvaraju et al. 2017): guided backprop times the (ReLU'd, bilinearly
    upsampled, not rescaled) Grad-CAM map, broadcast over the 3 channels."""
    ctx.resolved_target()  # a class method: refuses unit targets before any pass
    guided = _relu_rule_map(ctx, P.GUIDED, "guided Grad-CAM")
    cam = upsample(gradcam_layer_map(ctx).clamp(min=0), ctx.input_size)
    return Computed(raw=guided.raw * cam, info=guided.info)


def _mean_input_grad(ctx: PassContext, total: int, batch_size: int,
                     make_batch: Callable[[int, int], torch.Tensor], label: str) -> torch.Tensor:
    """Mean over ``total`` inputs (built ``batch_size`` at a time) of the gradient of the target's
    score (class logit, or the unit's activation on a truncated forward); progress + cancel."""
    target = None if ctx.is_unit else ctx.resolved_target()
    if ctx.is_unit:
        ctx.resolved_unit()  # the neuron's position comes from the clean image, for every sample
    acc = torch.zeros_like(ctx.x[0])
    for start in range(0, total, batch_size):
        check_cancel(ctx.cancel)
        stop = min(total, start + batch_size)
        xb = make_batch(start, stop).detach().requires_grad_(True)
        with ctx.handle.lock, torch.enable_grad():
            scores = ctx.unit_scores(xb) if target is None else ctx.model(xb)[:, target]
            (grad,) = torch.autograd.grad(scores.sum(), xb)
        acc += grad.sum(dim=0)
        report(ctx.progress, stop, total, label)
    return acc / total


@register("smoothgrad", display_name="SmoothGrad",
          paper=Paper("Smilkov et al.", 2017, "SmoothGrad: removing noise by adding noise",
                      "https://arxiv.org/abs/1706.03825"),
          family="gradient", passes=(P.LOGITS,), needs=("gradients", "extra_forwards"), cost="samples",
          class_discriminative=True, params=SmoothGradParams, long_running=True, unit_targets=True)
def smoothgrad(ctx: PassContext, p: SmoothGradParams) -> Computed:
    """SmoothGrad (Smilkov et al. 2017): mean of ``dy_c/dx`` over ``samples`` copies of ``x`` plus
    Gaussian noise of std ``noise * (max(x) - min(x))`` (paper: 10-20 %, n = 50). Seeded by ``seed``."""
    sigma = p.noise * float(ctx.x.max() - ctx.x.min())
    gen = torch.Generator(device=ctx.x.device).manual_seed(p.seed)

    def batch(start: int, stop: int) -> torch.Tensor:
        eps = torch.randn((stop - start, *ctx.x.shape[1:]), generator=gen, device=ctx.x.device)
        return ctx.x + sigma * eps

    grad = _mean_input_grad(ctx, p.samples, p.batch_size, batch, "SmoothGrad samples")
    return Computed(raw=grad, info={"sigma": sigma, "samples": p.samples})


@register("integrated_gradients", display_name="Integrated Gradients",
          paper=Paper("Sundararajan, Taly & Yan", 2017, "Axiomatic Attribution for Deep Networks",
                      "https://arxiv.org/abs/1703.01365"),
          family="gradient", passes=(P.LOGITS,), needs=("gradients", "extra_forwards"), cost="steps",
          class_discriminative=True, params=IntegratedGradientsParams, long_running=True, unit_targets=True)
def integrated_gradients(ctx: PassContext, p: IntegratedGradientsParams) -> Computed:
    """Integrated Gradients (Sundararajan et al. 2017), right Riemann sum of the paper's Eq. 3:
    ``(x - x') * mean_{k=1..m} dy_c/dx (x' + k/m (x - x'))``. Baseline ``x'``: ``"black"`` (the
    paper's black image, normalized) or ``"zero"`` (the all-zero normalized tensor = mean colour)."""
    if p.baseline == "black":
        baseline = ctx.handle.normalize(torch.zeros_like(ctx.x))
    else:
        baseline = torch.zeros_like(ctx.x)
    delta = ctx.x - baseline

    def batch(start: int, stop: int) -> torch.Tensor:
        alphas = torch.arange(start + 1, stop + 1, device=ctx.x.device, dtype=ctx.x.dtype) / p.steps
        return baseline + alphas.view(-1, 1, 1, 1) * delta

    grad = _mean_input_grad(ctx, p.steps, p.batch_size, batch, "Integrated Gradients steps")
    return Computed(raw=delta[0] * grad, info={"baseline": p.baseline, "steps": p.steps})
