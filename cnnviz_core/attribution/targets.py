"""What an explanation explains: a class, a channel of a layer, or one neuron (a small typed object).

* :class:`ClassTarget` ``(index | None)``: the logit of a class (``None``: the top-1 prediction);
* :class:`ChannelTarget` ``(layer, c, reduce="sum"|"max")``: the sum of channel ``c``'s map at
  ``layer``, or its maximum;
* :class:`NeuronTarget` ``(layer, c, y=None, x=None)``: one activation ``A[c, y, x]`` of the layer's
  feature map (positions are feature-map cells, not input pixels); without a position, the channel's
  strongest activation on the image being explained (Zeiler & Fergus 2014, Sec. 2.1).

Each knows the layer its scalar is read from (``None`` for a class: the logits) and how to compute
that scalar from the layer output (:meth:`score`). A unit target lets a pass stop the forward right
after its layer (:func:`cnnviz_core.hooks.forward_until`). A position-less neuron is *resolved* on
the activation (:meth:`resolve`) before anything is back-propagated, so every method of a request
(and every noisy copy in SmoothGrad, every step of Integrated Gradients) explains the same unit.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional, Union

import torch

from ..errors import ParameterError

Reduce = Literal["sum", "max"]


@dataclass(frozen=True)
class ClassTarget:
    """The logit of class ``index`` (``None``: the top-1 prediction, resolved by the first forward)."""

    index: Optional[int] = None

    layer = None  # the scalar is read from the logits

    def score(self, logits: torch.Tensor) -> torch.Tensor:
        """``(N,)`` logits of the class (``index`` must be resolved)."""
        if self.index is None:
            raise ParameterError("resolve the top-1 class before scoring a ClassTarget(None)")
        return logits[:, self.index]

    def describe(self) -> str:
        return "top-1 class" if self.index is None else f"class {self.index}"


@dataclass(frozen=True)
class ChannelTarget:
    """The sum (``reduce="sum"``) or the maximum (``"max"``) of channel ``channel`` of ``layer``'s map."""

    layer: str
    channel: int
    reduce: Reduce = "sum"

    def __post_init__(self) -> None:
        if self.reduce not in ("sum", "max"):
            raise ParameterError(f"unknown channel reduction {self.reduce!r}; choose sum or max")
        _check_channel(self.channel)

    def score(self, activation: torch.Tensor) -> torch.Tensor:
        """``(N,)`` from the layer output ``(N, C, h, w)``."""
        fmap = _channel_map(activation, self.layer, self.channel)
        return fmap.sum(dim=(1, 2)) if self.reduce == "sum" else fmap.amax(dim=(1, 2))

    def describe(self) -> str:
        return f"{self.layer}[{self.channel}] ({self.reduce})"


@dataclass(frozen=True)
class NeuronTarget:
    """Activation ``A[channel, y, x]`` of ``layer`` (feature-map cells); no position: the
    channel's strongest activation (first in raster order on ties), see :meth:`resolve`."""

    layer: str
    channel: int
    y: Optional[int] = None
    x: Optional[int] = None

    def __post_init__(self) -> None:
        _check_channel(self.channel)
        if (self.y is None) != (self.x is None):
            raise ParameterError("give both y and x of the neuron, or neither (the channel's strongest)")
        if self.y is not None and (self.y < 0 or self.x < 0):  # type: ignore[operator]
            raise ParameterError(f"neuron position must be >= 0, got y={self.y}, x={self.x}")

    @property
    def resolved(self) -> bool:
        return self.y is not None

    def resolve(self, activation: torch.Tensor) -> "NeuronTarget":
        """This neuron with its position: as given (checked against the map), or the argmax of the
        channel on the FIRST image of ``activation`` ``(N, C, h, w)``."""
        fmap = _channel_map(activation, self.layer, self.channel)
        h, w = fmap.shape[-2:]
        if self.resolved:
            if not (self.y < h and self.x < w):  # type: ignore[operator]
                raise ParameterError(f"neuron ({self.y}, {self.x}) is outside {self.layer!r}'s "
                                     f"{h}x{w} feature map")
            return self
        flat = int(fmap[0].reshape(-1).argmax())
        return NeuronTarget(self.layer, self.channel, flat // w, flat % w)

    def score(self, activation: torch.Tensor) -> torch.Tensor:
        """``(N,)`` activations at the (resolved) position."""
        if not self.resolved:
            raise ParameterError("resolve the neuron's position before scoring it")
        fmap = _channel_map(activation, self.layer, self.channel)
        return fmap[:, self.y, self.x]

    def describe(self) -> str:
        where = "strongest" if not self.resolved else f"({self.y}, {self.x})"
        return f"{self.layer}[{self.channel}] @ {where}"


UnitTarget = Union[ChannelTarget, NeuronTarget]
Target = Union[ClassTarget, ChannelTarget, NeuronTarget]


def is_unit(target: Any) -> bool:
    return isinstance(target, (ChannelTarget, NeuronTarget))


def as_target(target: Any, class_index: Any = None) -> Target:
    """A typed target from what callers pass: a target object as is, ``None`` (top-1 class), or a
    class index / name (``class_index`` validates it, e.g. ``handle.class_index``)."""
    if isinstance(target, (ClassTarget, ChannelTarget, NeuronTarget)):
        return target
    if target is None:
        return ClassTarget(None)
    return ClassTarget(class_index(target) if class_index is not None else int(target))


def _check_channel(c: int) -> None:
    if isinstance(c, bool) or not isinstance(c, int) or c < 0:
        raise ParameterError(f"channel must be an integer >= 0, got {c!r}")


def _channel_map(activation: torch.Tensor, layer: str, channel: int) -> torch.Tensor:
    if activation.ndim != 4:
        raise ParameterError(f"layer {layer!r} outputs shape {tuple(activation.shape)}, not a (N, C, h, w) feature map")
    if channel >= activation.shape[1]:
        raise ParameterError(f"channel {channel} is out of range 0..{activation.shape[1] - 1} for layer {layer!r}")
    return activation[:, channel]
