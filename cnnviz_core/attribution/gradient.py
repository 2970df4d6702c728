"""Gradient family: maps per input pixel and channel, ``(3, H, W)`` float32, the raw attribution
w.r.t. the *normalized* input tensor (never rescaled; show them with a symmetric colour scale or
take ``abs().max(0)`` for a Simonyan-style saliency image).

Saliency, deconvnet and guided backprop come from the shared pass (one backward each, with the ReLU
rule of :func:`~cnnviz_core.hooks.relu_backward_rule`: no model mutation, functional ReLUs
included). SmoothGrad and Integrated Gradients run their own batched forward/backward passes.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..errors import MethodUnavailableError, ParameterError
from ..progress import check_cancel, report
from .cam import gradcam_layer_map, upsample
from .passes import PassContext
from .registry import Computed, Paper, register


def _relu_rule_map(ctx: PassContext, product: str, name: str) -> Computed:
    grad = ctx.product(product)[0]
    if not ctx.relu_calls:
        raise MethodUnavailableError(f"{name} needs ReLU activations; {ctx.handle.name!r} has none "
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
          passes=("input_grad",), needs=("gradients",), cost="1 (shared pass)", class_discriminative=True)
def saliency(ctx: PassContext, p: dict) -> Computed:
    """Vanilla gradient (Simonyan et al. 2014): ``dy_c/dx`` of the target logit."""
    return Computed(raw=ctx.product("input_grad")[0])


@register("deconvnet", display_name="Deconvnet",
          paper=Paper("Zeiler & Fergus", 2014, "Visualizing and Understanding Convolutional Networks",
                      "https://arxiv.org/abs/1311.2901"),
          family="gradient", passes=("deconvnet",), needs=("gradients", "relu"), cost="1 extra backward",
          class_discriminative=False)
def deconvnet(ctx: PassContext, p: dict) -> Computed:
    """Deconvnet (Zeiler & Fergus 2014): back-propagation where each ReLU passes ``ReLU(signal)``."""
    return _relu_rule_map(ctx, "deconvnet", "deconvnet")


@register("guided_backprop", display_name="Guided backpropagation",
          paper=Paper("Springenberg et al.", 2015, "Striving for Simplicity: The All Convolutional Net",
                      "https://arxiv.org/abs/1412.6806"),
          family="gradient", passes=("guided",), needs=("gradients", "relu"), cost="1 extra backward",
          class_discriminative=False)
def guided_backprop(ctx: PassContext, p: dict) -> Computed:
    """Guided backprop (Springenberg et al. 2015): ReLUs pass ``ReLU(signal) * [input > 0]``."""
    return _relu_rule_map(ctx, "guided", "guided backprop")


@register("guided_gradcam", display_name="Guided Grad-CAM",
          paper=Paper("Selvaraju et al.", 2017, "Grad-CAM: Visual Explanations from Deep Networks via "
                      "Gradient-based Localization", "https://arxiv.org/abs/1610.02391"),
          family="gradient", passes=("guided", "activation", "layer_grad"), needs=("gradients", "relu"),
          cost="reuses Grad-CAM + guided backprop", class_discriminative=True)
def guided_gradcam(ctx: PassContext, p: dict) -> Computed:
    """Guided Grad-CAM (Selvaraju et al. 2017): guided backprop times the (ReLU'd, bilinearly
    upsampled, not rescaled) Grad-CAM map, broadcast over the 3 channels."""
    guided = _relu_rule_map(ctx, "guided", "guided Grad-CAM")
    cam = upsample(gradcam_layer_map(ctx).clamp(min=0), ctx.input_size)
    return Computed(raw=guided.raw * cam, info=guided.info)


def _mean_input_grad(ctx: PassContext, total: int, batch_size: int,
                     make_batch: Callable[[int, int], torch.Tensor], label: str) -> torch.Tensor:
    """Mean over ``total`` inputs (built ``batch_size`` at a time) of ``dy_c/dx``; progress + cancel."""
    if batch_size < 1:
        raise ParameterError(f"batch_size must be >= 1, got {batch_size}")
    target = ctx.resolved_target()
    acc = torch.zeros_like(ctx.x[0])
    for start in range(0, total, batch_size):
        check_cancel(ctx.cancel)
        stop = min(total, start + batch_size)
        xb = make_batch(start, stop).detach().requires_grad_(True)
        with ctx.handle.lock, torch.enable_grad():
            logits = ctx.model(xb)
            (grad,) = torch.autograd.grad(logits[:, target].sum(), xb)
        acc += grad.sum(dim=0)
        report(ctx.progress, stop, total, label)
    return acc / total


@register("smoothgrad", display_name="SmoothGrad",
          paper=Paper("Smilkov et al.", 2017, "SmoothGrad: removing noise by adding noise",
                      "https://arxiv.org/abs/1706.03825"),
          family="gradient", passes=("logits",), needs=("gradients", "extra_forwards"), cost="samples",
          class_discriminative=True, params={"samples": 50, "noise": 0.15, "batch_size": 16, "seed": 0},
          long_running=True)
def smoothgrad(ctx: PassContext, p: dict) -> Computed:
    """SmoothGrad (Smilkov et al. 2017): mean of ``dy_c/dx`` over ``samples`` copies of ``x`` plus
    Gaussian noise of std ``noise * (max(x) - min(x))`` (paper: 10-20 %, n = 50). Seeded by ``seed``."""
    samples, noise = int(p["samples"]), float(p["noise"])
    if samples < 1 or noise < 0:
        raise ParameterError(f"smoothgrad needs samples >= 1 and noise >= 0, got {samples}, {noise}")
    sigma = noise * float(ctx.x.max() - ctx.x.min())
    gen = torch.Generator(device=ctx.x.device).manual_seed(int(p["seed"]))

    def batch(start: int, stop: int) -> torch.Tensor:
        eps = torch.randn((stop - start, *ctx.x.shape[1:]), generator=gen, device=ctx.x.device)
        return ctx.x + sigma * eps

    grad = _mean_input_grad(ctx, samples, int(p["batch_size"]), batch, "SmoothGrad samples")
    return Computed(raw=grad, info={"sigma": sigma, "samples": samples})


@register("integrated_gradients", display_name="Integrated Gradients",
          paper=Paper("Sundararajan, Taly & Yan", 2017, "Axiomatic Attribution for Deep Networks",
                      "https://arxiv.org/abs/1703.01365"),
          family="gradient", passes=("logits",), needs=("gradients", "extra_forwards"), cost="steps",
          class_discriminative=True, params={"steps": 50, "baseline": "black", "batch_size": 16},
          long_running=True)
def integrated_gradients(ctx: PassContext, p: dict) -> Computed:
    """Integrated Gradients (Sundararajan et al. 2017), right Riemann sum of the paper's Eq. 3:
    ``(x - x') * mean_{k=1..m} dy_c/dx (x' + k/m (x - x'))``. Baseline ``x'``: ``"black"`` (the
    paper's black image, normalized) or ``"zero"`` (the all-zero normalized tensor = mean colour)."""
    steps, kind = int(p["steps"]), str(p["baseline"])
    if steps < 1:
        raise ParameterError(f"integrated_gradients needs steps >= 1, got {steps}")
    if kind == "black":
        baseline = ctx.handle.normalize(torch.zeros_like(ctx.x))
    elif kind == "zero":
        baseline = torch.zeros_like(ctx.x)
    else:
        raise ParameterError(f"unknown baseline {kind!r}; choose black or zero")
    delta = ctx.x - baseline

    def batch(start: int, stop: int) -> torch.Tensor:
        alphas = torch.arange(start + 1, stop + 1, device=ctx.x.device, dtype=ctx.x.dtype) / steps
        return baseline + alphas.view(-1, 1, 1, 1) * delta

    grad = _mean_input_grad(ctx, steps, int(p["batch_size"]), batch, "Integrated Gradients steps")
    return Computed(raw=delta[0] * grad, info={"baseline": kind, "steps": steps})
