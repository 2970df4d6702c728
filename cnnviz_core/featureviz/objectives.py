"""What gradient ascent maximizes: a layer, a channel, one neuron or a class logit.

The network runs only as far as needed: up to the layer (:func:`cnnviz_core.hooks.forward_until`,
nothing after it is computed), or the whole model for a class logit.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, Union

import torch

from ..errors import ParameterError
from ..hooks import forward_until
from ..models import ModelHandle
from .params import check_int

Position = Union[tuple[int, int], Literal["center"]]


@dataclass(frozen=True)
class Target:
    """``layer`` with an optional ``channel`` and spatial ``position`` (a neuron), or a class logit
    (``class_index``, layer ``None``)."""

    layer: Optional[str] = None
    channel: Optional[int] = None
    position: Optional[Position] = None
    class_index: Optional[int] = None

    @property
    def label(self) -> str:
        if self.class_index is not None:
            return f"class {self.class_index} logit"
        where = f" channel {self.channel}" if self.channel is not None else ""
        return f"{self.layer}{where}" + (f" at {self.position}" if self.position is not None else "")


def make_target(handle: ModelHandle, layer: Optional[str], channel: Optional[int] = None,
                position: Optional[Position] = None, class_index: Union[int, str, None] = None) -> Target:
    """Validate a target: either ``class_index`` (with no layer), or a ``layer`` of ``handle``."""
    if class_index is not None:
        if layer is not None or channel is not None:
            raise ParameterError("give either a class or a layer/channel, not both")
        return Target(class_index=handle.class_index(class_index))
    if layer is None:
        raise ParameterError(f"give a layer (e.g. {handle.default_layer!r}) or a class")
    handle.module(layer)
    if position is not None and channel is None:
        raise ParameterError("a neuron position needs a channel")
    if channel is not None:
        check_int("channel", channel, 0, 1 << 20)
    return Target(layer, channel, position)


def run_to_target(handle: ModelHandle, x: torch.Tensor, target: Target) -> torch.Tensor:
    """The target layer's output (or the logits) for normalized input ``x``; only the part of the
    network up to the target layer runs. Differentiable w.r.t. ``x``."""
    if target.class_index is not None:
        return handle.model(x)
    return forward_until(handle.model, x, target.layer)


def select(act: torch.Tensor, target: Target) -> torch.Tensor:
    """The part of an activation ``(N, C, H, W)`` (or logits ``(N, K)``) that ``target`` names."""
    if target.class_index is not None:
        return act[:, target.class_index]
    if target.channel is None:
        return act
    if target.channel >= act.shape[1]:
        raise ParameterError(f"channel must be in 0..{act.shape[1] - 1} for layer {target.layer!r}, got {target.channel}")
    chan = act[:, target.channel]
    if target.position is None or chan.ndim < 3:
        return chan
    h, w = chan.shape[-2:]
    y, x = (h // 2, w // 2) if target.position == "center" else target.position
    if not (0 <= y < h and 0 <= x < w):
        raise ParameterError(f"neuron position must be within 0..{h - 1} x 0..{w - 1}, got {(y, x)}")
    return chan[:, y, x]


def mean_activation(act: torch.Tensor, target: Target) -> torch.Tensor:
    """Scalar: the mean of the selected activation (activation maximization objective)."""
    return select(act, target).float().mean()


def half_mean_square(act: torch.Tensor, target: Target) -> torch.Tensor:
    """Scalar: ``0.5 * mean(a^2)`` of the selected activation (Deep Dream's L2 objective; for a
    class target the logit itself)."""
    part = select(act, target).float()
    return part.mean() if target.class_index is not None else 0.5 * part.pow(2).mean()
