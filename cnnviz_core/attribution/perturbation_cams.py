"""Score-CAM's smoothed and integrated variants and Smooth Grad-CAM++ (TorchCAM's extra CAM methods).

All three are :class:`~.cam.WeightedCAM` subclasses: they compute channel weights, and the base
applies them to the layer's activation ``A`` of the clean image, takes the ReLU at layer resolution
and upsamples bilinearly to the input. Raw maps are ``(H, W)``, ``>= 0``, in the units of ``A``;
:mod:`.api` min-max scales them to [0, 1].

* **SS-CAM** and **IS-CAM** weight each channel by the softmax, over channels, of the mean increase
  of the target *logit* over the masked inputs built from it (Algorithm 1 of both papers, which
  takes it from Score-CAM's Algorithm 1). The mask of channel ``k`` is ``M_k = s(Up(A_k))``:
  bilinear upsampling to the input size (``align_corners=False``), then min-max scaling to [0, 1]
  (a channel constant over space gives the all-zero mask). The masked input is ``x * M`` in the
  normalized input space. Their forwards are batched on
  :meth:`~cnnviz_core.models.ModelHandle.batch_logits` (BatchNorm folded, channels-last) under
  ``torch.inference_mode``, with progress after each batch, the cancel token checked between
  batches and the model lock taken per batch.
* **Smooth Grad-CAM++** averages the gradient powers of Grad-CAM++ over noisy copies of the input
  (forward + backward to the layer only, batched).

Our Score-CAM (:mod:`.perturbation`) weights by the class *probability* as its authors' code does;
SS-CAM and IS-CAM here follow their own papers' channel softmax of logit increases (as TorchCAM does).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

from ..errors import ParameterError
from ..hooks import capture
from ..progress import check_cancel, report
from .cam import WeightedCAM
from .passes import PassContext
from .perturbation import masked_channel_scores
from .registry import CAMParams, Paper, Product, integer, positive_int, register

P = Product


def _non_negative_float(name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be a number >= 0, got {value!r}") from None
    if not v >= 0 or v == float("inf"):
        raise ParameterError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


@dataclass(frozen=True)
class SSCAMParams(CAMParams):
    """``samples`` noisy copies of every channel's mask, Gaussian noise of std ``mask_noise`` added to
    the [0, 1] masks (paper and TorchCAM: 2.0), ``batch_size`` masked images per forward, ``seed``
    of the noise; ``channels=k``: only the k channels with the largest mean activation (an
    approximation, labelled in the result); ``None`` = all channels (exact)."""

    samples: int = 10
    mask_noise: float = 2.0
    batch_size: int = 16
    channels: Optional[int] = None
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        self._set("samples", positive_int("samples", self.samples))
        self._set("mask_noise", _non_negative_float("mask_noise", self.mask_noise))
        self._set("batch_size", positive_int("batch_size", self.batch_size))
        if self.channels is not None:
            self._set("channels", positive_int("channels", self.channels))
        self._set("seed", integer("seed", self.seed))


@dataclass(frozen=True)
class ISCAMParams(CAMParams):
    """``steps`` of the integration (paper and TorchCAM: 10), ``batch_size`` masked images per
    forward; ``channels`` as for SS-CAM."""

    steps: int = 10
    batch_size: int = 16
    channels: Optional[int] = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self._set("steps", positive_int("steps", self.steps))
        self._set("batch_size", positive_int("batch_size", self.batch_size))
        if self.channels is not None:
            self._set("channels", positive_int("channels", self.channels))


@dataclass(frozen=True)
class SmoothGradCAMppParams(CAMParams):
    """``samples`` noisy copies of the input, Gaussian noise of std ``noise * (max(x) - min(x))``
    (SmoothGrad's convention), ``batch_size`` copies per forward/backward, ``seed`` of the noise."""

    samples: int = 25
    noise: float = 0.15
    batch_size: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        self._set("samples", positive_int("samples", self.samples))
        self._set("noise", _non_negative_float("noise", self.noise))
        self._set("batch_size", positive_int("batch_size", self.batch_size))
        self._set("seed", integer("seed", self.seed))


# ---- channel scores (SS-CAM, IS-CAM) -------------------------------------------------------------
def _channels(a: torch.Tensor, channels: Optional[int], info: dict[str, Any]) -> torch.Tensor:
    """The channels that get a weight: all, or the ``channels`` largest by mean activation."""
    total = int(a.shape[0])
    if channels is None or channels >= total:
        order = torch.arange(total, device=a.device)
    else:
        order = a.mean(dim=(1, 2)).argsort(descending=True)[:channels]
        info["approximation"] = f"top-{channels} of {total} channels by mean activation"
    info.update(channels_used=int(order.numel()), channels_total=total)
    return order


def mean_logit_increase(ctx: PassContext, a: torch.Tensor, order: torch.Tensor, repeats: int, batch_size: int,
                        perturb: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], label: str) -> torch.Tensor:
    """``(len(order),)`` float64: for each channel ``k`` of ``order``, ``(1/repeats) sum_r
    y_c(x * perturb(M_k, r)) - y_c(x)`` with ``y_c`` the target logit (batched as
    :func:`~.perturbation.masked_channel_scores` describes)."""
    target = ctx.resolved_target()
    mean = masked_channel_scores(ctx, a, order, batch_size, lambda logits: logits[:, target], label,
                                 repeats=repeats, perturb=perturb)
    return mean - ctx.product(P.LOGITS)[0, target].to(mean.dtype)


def _softmax_weights(a: torch.Tensor, order: torch.Tensor, increase: torch.Tensor) -> torch.Tensor:
    """Channel weights: softmax over the scored channels, 0 for the others."""
    weights = torch.zeros(a.shape[0], dtype=torch.float64, device=a.device)
    weights[order] = torch.softmax(increase, dim=0)
    return weights


@register("sscam", display_name="SS-CAM",
          paper=Paper("Wang, Naidu, Michael & Kundu", 2020, "SS-CAM: Smoothed Score-CAM for Sharper Visual "
                      "Feature Localization", "https://arxiv.org/abs/2006.14255"),
          family="cam", passes=(P.ACTIVATION,), needs=("extra_forwards",), cost="C x samples forwards",
          class_discriminative=True, params=SSCAMParams, long_running=True)
class SSCAM(WeightedCAM):
    """SS-CAM (Wang et al. 2020), smoothing of the masks (the paper's SS-CAM(1), TorchCAM's choice):
    ``w = softmax_k((1/N) sum_i y_c(x * (M_k + delta_ik)) - y_c(x))``, ``delta_ik`` Gaussian of std
    ``mask_noise`` per pixel, ``N = samples``; map ``ReLU(sum_k w_k A_k)``. The masks are not clipped
    after the noise (as in the paper). Noise is drawn from a generator seeded with ``seed``, in
    repeat-major order, one ``(B, H, W)`` tensor per batch.

    TorchCAM min-max scales each channel at layer resolution and upsamples afterwards; we upsample
    first, as the paper (and Score-CAM) write ``s(Up(A_k))``."""

    def weights(self, ctx: PassContext, a: torch.Tensor, p: SSCAMParams, info: dict[str, Any]) -> torch.Tensor:
        order = _channels(a, p.channels, info)
        gen = torch.Generator(device=a.device).manual_seed(p.seed)

        def noisy(masks: torch.Tensor, rep: torch.Tensor) -> torch.Tensor:
            noise = torch.randn(masks.shape, generator=gen, device=masks.device, dtype=masks.dtype)
            return masks + p.mask_noise * noise

        increase = mean_logit_increase(ctx, a, order, p.samples, p.batch_size, noisy, "SS-CAM forwards")
        info.update(samples=p.samples, mask_noise=p.mask_noise)
        return _softmax_weights(a, order, increase)


def iscam_coefficients(steps: int) -> torch.Tensor:
    """``(steps,)`` the mask scales of IS-CAM's steps ``i = 1..N``: ``c_i = sum_{j=0}^{i-1} j / N``
    (the running sum of Algorithm 1; ``c_1 = 0`` is the baseline itself)."""
    i = torch.arange(1, steps + 1, dtype=torch.float64)
    return i * (i - 1) / (2 * steps)


@register("iscam", display_name="IS-CAM",
          paper=Paper("Naidu, Ghosh, Maurya, Nayak K & Kundu", 2020, "IS-CAM: Integrated Score-CAM for "
                      "axiomatic-based explanations", "https://arxiv.org/abs/2010.03023"),
          family="cam", passes=(P.ACTIVATION,), needs=("extra_forwards",), cost="C x (steps - 1) forwards",
          class_discriminative=True, params=ISCAMParams, long_running=True)
class ISCAM(WeightedCAM):
    """IS-CAM (Naidu et al. 2020): ``w = softmax_k((1/N) sum_{i=1..N} y_c(x * c_i M_k) - y_c(x))``
    with the running-sum scales ``c_i = sum_{j=0}^{i-1} j/N`` of the paper's algorithm
    (:func:`iscam_coefficients`), ``N = steps``; map ``ReLU(sum_k w_k A_k)``. Step ``i = 1`` has
    ``c_1 = 0``: its input (the zero tensor) is the same for every channel, so it only shifts all
    scores by one constant, which the softmax ignores; it is not run.

    TorchCAM's code (0.5.0) uses ``c_i = sum_{j=1}^{i} j/N`` (its own docstring gives the formula
    above) and scales at layer resolution before upsampling; we follow the paper on both."""

    def weights(self, ctx: PassContext, a: torch.Tensor, p: ISCAMParams, info: dict[str, Any]) -> torch.Tensor:
        order = _channels(a, p.channels, info)
        info["steps"] = p.steps
        if p.steps == 1:  # only the baseline step: every channel scores alike
            return _softmax_weights(a, order, torch.zeros(int(order.numel()), dtype=torch.float64, device=a.device))
        coeff = iscam_coefficients(p.steps)[1:].to(device=a.device, dtype=a.dtype)

        def scaled(masks: torch.Tensor, rep: torch.Tensor) -> torch.Tensor:
            return coeff[rep][:, None, None] * masks

        increase = mean_logit_increase(ctx, a, order, p.steps - 1, p.batch_size, scaled, "IS-CAM forwards")
        # the run covered N - 1 steps; the mean over N differs by the factor (N-1)/N and a constant shift
        return _softmax_weights(a, order, increase * (p.steps - 1) / p.steps)


# ---- Smooth Grad-CAM++ ----------------------------------------------------------------------------
def noisy_layer_gradients(ctx: PassContext, samples: int, noise: float, batch_size: int, seed: int,
                          label: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Means over ``samples`` noisy copies ``x + sigma * eps`` (``sigma = noise * (max(x) - min(x))``)
    of ``G``, ``G^2`` and ``G^3`` where ``G = dy_c / dA`` ``(C, h, w)`` is the gradient of the target
    logit w.r.t. the layer output at the noisy input (float64). ``eps`` is drawn from a generator
    seeded with ``seed``, one ``(B, 3, H, W)`` tensor per batch, in sample order."""
    target = ctx.resolved_target()
    sigma = noise * float(ctx.x.max() - ctx.x.min())
    gen = torch.Generator(device=ctx.x.device).manual_seed(seed)
    moments: Optional[list[torch.Tensor]] = None
    for start in range(0, samples, batch_size):
        check_cancel(ctx.cancel)
        stop = min(samples, start + batch_size)
        eps = torch.randn((stop - start, *ctx.x.shape[1:]), generator=gen, device=ctx.x.device, dtype=ctx.x.dtype)
        xb = (ctx.x + sigma * eps).detach()
        with ctx.handle.lock, torch.enable_grad(), capture(ctx.model, [ctx.layer], differentiable=True) as store:
            logits = ctx.model(xb)
            act = store.get(ctx.layer)
            if act is None:
                raise ParameterError(f"layer {ctx.layer!r} is not used by the forward pass of {ctx.handle.name!r}")
            (g,) = torch.autograd.grad(logits[:, target].sum(), act)  # images are independent in eval mode
        g = g.detach().double()
        batch = [g.sum(dim=0), (g * g).sum(dim=0), (g * g * g).sum(dim=0)]
        moments = batch if moments is None else [m + b for m, b in zip(moments, batch)]
        report(ctx.progress, stop, samples, label)
    assert moments is not None
    d1, d2, d3 = (m / samples for m in moments)
    return d1, d2, d3, sigma


@register("smoothgradcam++", display_name="Smooth Grad-CAM++",
          paper=Paper("Omeiza, Speakman, Cintas & Weldermariam", 2019, "Smooth Grad-CAM++: An Enhanced Inference "
                      "Level Visualization Technique for Deep Convolutional Neural Network Models",
                      "https://arxiv.org/abs/1908.01224"),
          family="cam", passes=(P.ACTIVATION,), needs=("gradients", "extra_forwards"),
          cost="samples forwards + backwards", class_discriminative=True, params=SmoothGradCAMppParams,
          long_running=True)
class SmoothGradCAMpp(WeightedCAM):
    """Smooth Grad-CAM++ (Omeiza et al. 2019): Grad-CAM++ (Eq. 19 with ``Y_c = exp(y_c)``) with each
    power of the gradient averaged over ``n = samples`` noisy copies of the input (SmoothGrad):
    ``alpha_kij = D2 / (2 D2 + sum_ab A_kab D3)`` (0 where the denominator is 0),
    ``w_k = sum_ij alpha_kij ReLU(D1)``, ``D_p = (1/n) sum_m G_m^p`` with ``G_m = dy_c/dA`` at the
    m-th noisy input, ``A`` the clean image's activation; map ``ReLU(sum_k w_k A_k)``.

    The paper prints ``D1`` in the numerator of alpha, which does not reduce to Grad-CAM++'s Eq. 19
    without noise; we use ``D2`` (as TorchCAM does), so ``samples=1, noise=0`` gives Grad-CAM++.
    TorchCAM (0.5.0) departs from the paper in three further ways that we do not follow: its
    ``ReLU(G)`` is the *last* noisy copy's gradient instead of the mean, its map weights the last
    noisy copy's activation instead of the clean image's, and its denominator sums
    ``A_ab * D3_ab`` over the map where Eq. 19 has ``(sum_ab A_ab) * D3_ij``. Noise std is ``noise * (max(x) - min(x))``
    (SmoothGrad's convention; TorchCAM takes an absolute std, default 0.3)."""

    def weights(self, ctx: PassContext, a: torch.Tensor, p: SmoothGradCAMppParams,
                info: dict[str, Any]) -> torch.Tensor:
        d1, d2, d3, sigma = noisy_layer_gradients(ctx, p.samples, p.noise, p.batch_size, p.seed,
                                                  "Smooth Grad-CAM++ samples")
        den = 2 * d2 + a.double().sum(dim=(1, 2), keepdim=True) * d3
        alpha = torch.where(den != 0, d2 / torch.where(den != 0, den, torch.ones_like(den)), torch.zeros_like(d2))
        info.update(samples=p.samples, sigma=sigma)
        return (alpha * d1.clamp(min=0)).sum(dim=(1, 2))
