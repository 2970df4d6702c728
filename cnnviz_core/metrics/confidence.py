"""Average Drop and Increase in Confidence (Chattopadhyay, Sarkar, Howlader & Balasubramanian 2018,
"Grad-CAM++: Improved Visual Explanations for Deep Convolutional Networks", WACV,
https://arxiv.org/abs/1710.11063, Sec. 5.1).

The *explanation map* is the input multiplied by the saliency map, ``E = x * m`` (TorchCAM's and
pytorch-grad-cam's convention: ``x`` is the normalized model input, ``m`` the map min-max scaled to
[0, 1]; gradient maps ``(3, H, W)`` are reduced to ``max_c |.|`` first). With ``Y`` the target's
probability for ``x`` and ``O`` for ``E``:

* Average Drop (Eq. 23): ``max(0, Y - O) / Y`` (lower is better: the map keeps what the model needs);
* Increase in Confidence (Eq. 24): ``1`` if ``O > Y`` else ``0`` (higher is better).

Both are per-map here; averaged over a data set they are the paper's percentages. Two forwards,
batched on the BatchNorm-folded twin. TorchCAM's ``ClassificationMetric`` follows the paper (it adds
1e-7 to ``Y``); pytorch-grad-cam's ``DropInConfidence`` returns ``max(0, Y - O)`` without dividing
by ``Y`` (a departure from the paper; we follow the paper and TorchCAM).
"""
from __future__ import annotations

from typing import Optional

import torch

from ..progress import CancelToken, ProgressFn, check_cancel
from .causal import saliency_2d
from .registry import MetricResult, NoParams, Paper, check_input, register_metric

GRADCAM_PP = Paper("Chattopadhyay, Sarkar, Howlader & Balasubramanian", 2018,
                   "Grad-CAM++: Improved Visual Explanations for Deep Convolutional Networks",
                   "https://arxiv.org/abs/1710.11063")


def unit_map(saliency: torch.Tensor) -> torch.Tensor:
    """``(H, W)`` map min-max scaled to [0, 1] (``(3, H, W)``: ``max_c |.|`` first); constant -> zeros."""
    m = saliency_2d(saliency.cpu()).double()
    lo, hi = m.min(), m.max()
    return ((m - lo) / (hi - lo) if hi > lo else torch.zeros_like(m)).float()


def confidence_change(handle, x: torch.Tensor, saliency_map, target) -> tuple[float, float]:
    """``(Y, O)``: the target's probability for ``x`` and for the explanation map ``x * m``."""
    x, s, target = check_input(handle, x, saliency_map, target)
    m = unit_map(s).to(x.device)
    probs = handle.probabilities(handle.batch_logits(torch.cat([x, x * m])).float())[:, target].double().cpu()
    return float(probs[0]), float(probs[1])


def _details(y: float, o: float) -> dict[str, float]:
    return {"original": y, "explanation_map": o}


@register_metric(
    "average_drop", display_name="Average Drop", paper=GRADCAM_PP,
    reference="TorchCAM (ClassificationMetric avg_drop); pytorch-grad-cam DropInConfidence (unnormalized)",
    higher_is_better=False, value_range="[0, 1]", cost="2 forwards (one batch)", needs=("forwards",),
)
def average_drop(handle, x: torch.Tensor, saliency_map, target, params: NoParams = NoParams(),
                 progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None, *, explain=None,
                 mask=None) -> MetricResult:
    """Drop of the target's probability when only the map's part of the image is shown, ``max(0, Y - O) / Y``."""
    check_cancel(cancel)
    y, o = confidence_change(handle, x, saliency_map, target)
    return MetricResult("average_drop", max(0.0, y - o) / y if y > 0 else 0.0, False, details=_details(y, o))


@register_metric(
    "increase_in_confidence", display_name="Increase in Confidence", paper=GRADCAM_PP,
    reference="TorchCAM (ClassificationMetric conf_increase); pytorch-grad-cam IncreaseInConfidence",
    higher_is_better=True, value_range="{0, 1}", cost="2 forwards (one batch)", needs=("forwards",),
)
def increase_in_confidence(handle, x: torch.Tensor, saliency_map, target, params: NoParams = NoParams(),
                           progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None, *,
                           explain=None, mask=None) -> MetricResult:
    """1 when the target's probability rises on the explanation map ``x * m`` (``O > Y``), else 0."""
    check_cancel(cancel)
    y, o = confidence_change(handle, x, saliency_map, target)
    return MetricResult("increase_in_confidence", float(o > y), True, details=_details(y, o))
