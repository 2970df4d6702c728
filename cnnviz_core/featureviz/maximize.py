"""Activation maximization: synthesize the image that most excites a channel, a neuron or a class.

* Erhan, Bengio, Courville & Vincent, "Visualizing Higher-Layer Features of a Deep Network",
  Univ. Montreal TR 1341, 2009, https://www.researchgate.net/publication/265022827 - gradient ascent
  on the input to maximize one unit.
* Simonyan, Vedaldi & Zisserman, "Deep Inside Convolutional Networks", ICLR 2014 workshop,
  https://arxiv.org/abs/1312.6034 - class models (maximize a class score).
* Olah, Mordvintsev & Schubert, "Feature Visualization", Distill 2017,
  https://distill.pub/2017/feature-visualization/ - transformation robustness (jitter, scale,
  rotation), decorrelated colour + Fourier parametrization.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

import numpy as np
import torch

from ..models import ModelHandle
from ..progress import CancelToken, ProgressFn, check_cancel, report
from .objectives import Position, Target, make_target, mean_activation, run_to_target
from .parametrization import PARAMETRIZATIONS, Parametrization, make_image
from .params import STEPS_RANGE, SIZE_RANGE, as_model_input, check_choice, check_float, check_int, compute_mode
from .regularizers import Robustness, total_variation
from .tiles import rgb_uint8


@dataclass
class SynthesisResult:
    """``image``: uint8 ``(S, S, 3)``; ``start_value``/``final_value``: the objective (mean of the
    target activation, untransformed image) before and after; ``history``: objective per step
    (on the transformed image)."""

    image: np.ndarray
    target: Target
    start_value: float
    final_value: float
    history: list[float] = field(default_factory=list)


def _evaluate(handle: ModelHandle, rgb: torch.Tensor, target: Target) -> float:
    with handle.lock, torch.no_grad():
        return float(mean_activation(run_to_target(handle, handle.normalize(rgb), target), target))


def maximize_activation(
    handle: ModelHandle,
    layer: Optional[str] = None,
    channel: Optional[int] = None,
    *,
    position: Optional[Position] = None,
    class_index: Union[int, str, None] = None,
    steps: int = 256,
    size: Optional[int] = None,
    lr: float = 0.05,
    parametrization: Parametrization = "pixel",
    robustness: Robustness = Robustness(),
    tv_weight: float = 0.0,
    blur_every: int = 0,
    blur_sigma: float = 0.5,
    seed: int = 0,
    precision: str = "float32",
    channels_last: bool = False,
    preview_every: int = 0,
    progress: Optional[ProgressFn] = None,
    cancel: Optional[CancelToken] = None,
) -> SynthesisResult:
    """Gradient ascent (Adam, ``lr``) on a ``size x size`` image (default: the model's input size)
    to maximize the mean of ``layer``'s ``channel`` (whole layer if ``None``), of one neuron
    (``position`` = ``(y, x)`` in the layer's grid or ``"center"``), or the logit of ``class_index``.

    Each step: image -> random jitter/scale/rotation (``robustness``) -> normalize -> network up to
    the layer (nothing after it runs) -> loss ``-objective + tv_weight * TV(image)``. The image is
    the only tensor with gradients; the model's parameters stay frozen. ``handle.lock`` is held per
    step; ``cancel`` is checked between steps; ``progress`` gets ``losses={"objective", "tv"}`` and
    every ``preview_every`` steps a uint8 preview. Deterministic for a given ``seed`` (on CPU).
    """
    target = make_target(handle, layer, channel, position, class_index)
    steps = check_int("steps", steps, *STEPS_RANGE)
    size = check_int("size", size or handle.input_size, *SIZE_RANGE)
    check_choice("parametrization", parametrization, PARAMETRIZATIONS)
    lr = check_float("lr", lr, 1e-5, 10.0)
    check_float("tv_weight", tv_weight, 0.0, 1e6)
    gen = torch.Generator().manual_seed(int(seed))
    image = make_image(parametrization, size, gen, handle.device, blur_every=blur_every, blur_sigma=blur_sigma)
    optimizer = torch.optim.Adam(image.parameters(), lr=lr)
    start = _evaluate(handle, image.rgb().detach(), target)
    history: list[float] = []
    for step in range(1, steps + 1):
        check_cancel(cancel)
        with handle.lock, compute_mode(handle.device, precision):
            rgb = image.rgb()
            seen = as_model_input(handle.normalize(robustness(rgb, gen)), channels_last)
            objective = mean_activation(run_to_target(handle, seen, target), target)
            tv = total_variation(rgb)
            loss = -objective + tv_weight * tv
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        image.after_step(step)
        history.append(objective.item())
        due = preview_every and (step % preview_every == 0 or step == steps)
        preview = rgb_uint8(image.rgb()) if due else None
        report(progress, step, steps, target.label, losses={"objective": history[-1], "tv": tv.item()},
               preview=preview)
    final_rgb = image.rgb().detach()
    return SynthesisResult(
        image=rgb_uint8(final_rgb),
        target=target,
        start_value=start,
        final_value=_evaluate(handle, final_rgb, target),
        history=history,
    )
