"""CAM-family methods built from extra forward passes: Score-CAM and Ablation-CAM (occlusion: :mod:`.occlusion`).

Both are :class:`~.cam.WeightedCAM` subclasses: they compute channel weights from perturbed
forwards, and the base applies them, the ReLU and the upsampling.

All run batched under ``torch.inference_mode``, report progress after each batch and check the
cancel token between batches; the model lock is taken per batch so other sessions interleave.
Score-CAM forwards its perturbed batches through
:meth:`~cnnviz_core.models.ModelHandle.batch_logits` (the inference twin: BatchNorm folded, then a
frozen oneDNN trace where faster; ResNet-50, 16 images at 224 px: 1112 -> 626 ms on 2 CPU cores,
same values up to float rounding), Ablation-CAM its ablated activations through the twin of the
network after the layer (:meth:`~cnnviz_core.models.ModelHandle.batch_tail_logits`).
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F

from ..errors import MethodUnavailableError
from ..progress import check_cancel, report
from .cam import WeightedCAM
from .passes import PassContext
from .registry import AblationCAMParams, Paper, Product, ScoreCAMParams, register
from .tail import layer_tail, replaced_output

P = Product


@register("scorecam", display_name="Score-CAM",
          paper=Paper("Wang et al.", 2020, "Score-CAM: Score-Weighted Visual Explanations for "
                      "Convolutional Neural Networks", "https://arxiv.org/abs/1910.01279"),
          family="cam", passes=(P.ACTIVATION,), needs=("extra_forwards",), cost="C forwards",
          class_discriminative=True, params=ScoreCAMParams, long_running=True)
class ScoreCAM(WeightedCAM):
    """Score-CAM (Wang et al. 2020, Algorithm 1 and the authors' code): each channel ``A_k`` is
    upsampled (bilinear) and min-max scaled to a mask ``M_k``; its weight is the target-class
    probability of ``f(x * M_k)`` (softmax; per-class sigmoid for multi-label models), and the map is
    ``ReLU(sum_k w_k A_k)``. Channels constant over space get weight 0 (the authors skip them; for
    all-zero channels this is exact). pytorch-grad-cam instead softmaxes raw logits over channels.
    ``channels=k``: only the k channels with the largest mean activation (an approximation, labelled)."""

    def weights(self, ctx: PassContext, a: torch.Tensor, p: ScoreCAMParams, info: dict[str, Any]) -> torch.Tensor:
        target = ctx.resolved_target()
        flat = a.flatten(1)
        order = torch.nonzero(flat.amax(1) > flat.amin(1))[:, 0]
        info.update(channels_used=int(order.numel()), channels_total=int(a.shape[0]))
        if p.channels is not None:
            order = order[a.mean(dim=(1, 2))[order].argsort(descending=True)[:p.channels]]
            info.update(channels_used=int(order.numel()),
                        approximation=f"top-{order.numel()} of {a.shape[0]} channels by mean activation")
        weights = torch.zeros(a.shape[0], dtype=a.dtype, device=a.device)
        score = lambda logits: ctx.handle.probabilities(logits)[:, target]  # noqa: E731
        weights[order] = masked_channel_scores(ctx, a, order, p.batch_size, score, "Score-CAM channels").to(a.dtype)
        return weights


def normalized_masks(a: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(B, h, w)`` channels -> ``(B, H, W)`` masks ``s(Up(A_k))``: bilinear upsampling
    (``align_corners=False``), then min-max scaling of each mask to [0, 1]; a channel constant over
    space gives an all-zero mask."""
    up = F.interpolate(a[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    lo, hi = up.amin(dim=(1, 2), keepdim=True), up.amax(dim=(1, 2), keepdim=True)
    span = hi - lo
    return torch.where(span > 0, (up - lo) / span.clamp_min(torch.finfo(up.dtype).tiny), torch.zeros_like(up))


def masked_channel_scores(ctx: PassContext, a: torch.Tensor, order: torch.Tensor, batch_size: int,
                          score: Callable[[torch.Tensor], torch.Tensor], label: str, *, repeats: int = 1,
                          perturb: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None
                          ) -> torch.Tensor:
    """``(len(order),)`` float64: for each channel ``k`` of ``order`` (indices into ``a`` ``(C, h, w)``),
    the mean over ``r < repeats`` of ``score(logits of x * perturb(M_k, r))`` with ``M_k`` the
    channel's mask (:func:`normalized_masks`) and ``perturb`` the identity when not given.

    The Score-CAM family's one loop: the ``len(order) * repeats`` masked inputs are forwarded in
    batches of ``batch_size`` on :meth:`~cnnviz_core.models.ModelHandle.batch_logits` under
    ``torch.inference_mode``, in repeat-major order (repeat ``r`` of every channel before repeat
    ``r + 1``; ``perturb(masks (B, H, W), repeats (B,))`` is called once per batch, in that order),
    with the cancel token checked before and progress reported after each batch."""
    size, n = ctx.input_size, int(order.numel())
    total = n * repeats
    sums = torch.zeros(n, dtype=torch.float64, device=a.device)
    for start in range(0, total, batch_size):
        check_cancel(ctx.cancel)
        stop = min(total, start + batch_size)
        index = torch.arange(start, stop, device=a.device)
        rep, pos = index // n, index % n
        with torch.inference_mode():
            masks = normalized_masks(a[order[pos]], size)
            if perturb is not None:
                masks = perturb(masks, rep)
            values = score(ctx.handle.batch_logits(ctx.x * masks[:, None].to(ctx.x.dtype)))
            sums.index_add_(0, pos, values.to(sums.dtype))
        report(ctx.progress, stop, total, label)
    return sums / repeats


def _ablated_scores(ctx: PassContext, batch_size: int) -> tuple[torch.Tensor, str]:
    """Target logit with each channel of the layer output set to 0, one channel per batch row."""
    a, target = ctx.product(P.ACTIVATION), ctx.resolved_target()
    channels = a.shape[1]
    with ctx.handle.lock, torch.inference_mode():
        tail = layer_tail(ctx.model, ctx.layer)
        if tail is not None and not torch.allclose(tail(a), ctx.product(P.LOGITS), rtol=1e-4, atol=1e-4):
            tail = None
    mode = "tail" if tail is not None else "full forward per batch (graph not splittable)"
    scores = torch.empty(channels, dtype=a.dtype, device=a.device)
    for start in range(0, channels, batch_size):
        check_cancel(ctx.cancel)
        stop = min(channels, start + batch_size)
        with torch.inference_mode():
            batch = a.expand(stop - start, -1, -1, -1).clone()
            batch[torch.arange(stop - start), torch.arange(start, stop)] = 0
            with ctx.handle.lock:
                if tail is not None:
                    logits = ctx.handle.batch_tail_logits(ctx.layer, tail, batch)
                else:
                    with replaced_output(ctx.handle.module(ctx.layer), batch):
                        logits = ctx.model(ctx.x.expand(stop - start, -1, -1, -1))
            scores[start:stop] = logits[:, target]
        report(ctx.progress, stop, channels, "Ablation-CAM channels")
    return scores, mode


@register("ablationcam", display_name="Ablation-CAM",
          paper=Paper("Desai & Ramaswamy", 2020, "Ablation-CAM: Visual Explanations for Deep Convolutional "
                      "Network via Gradient-free Localization", "https://doi.org/10.1109/WACV45572.2020.9093360"),
          family="cam", passes=(P.ACTIVATION,), needs=("extra_forwards",), cost="C tail forwards",
          class_discriminative=True, params=AblationCAMParams, long_running=True)
class AblationCAM(WeightedCAM):
    """Ablation-CAM (Desai & Ramaswamy 2020): ``w_k = (y_c - y_c^k) / y_c`` where ``y_c^k`` is the
    target logit with channel ``k`` of the layer output set to zero; map ``ReLU(sum_k w_k A_k)``.
    Only the network after the layer runs (batched), see :mod:`.tail`."""

    def weights(self, ctx: PassContext, a: torch.Tensor, p: AblationCAMParams, info: dict[str, Any]) -> torch.Tensor:
        scores, mode = _ablated_scores(ctx, p.batch_size)
        y = ctx.product(P.LOGITS)[0, ctx.resolved_target()]
        if float(y) == 0.0:
            raise MethodUnavailableError("Ablation-CAM divides by the target score, which is exactly 0 here")
        info["ablation"] = mode
        return (y - scores) / y
