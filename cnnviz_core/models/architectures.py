"""Architectures: how to build a network (random init) and what it expects, without any weights.

An :class:`Architecture` is the torchvision *builder* or timm's ``create_model`` entry of the
anchors: a name, ``build(num_classes=...)`` and the facts that go with it (preprocessing, class
names of its default head, the default CAM layer, paper). Where the weights come from is a separate
concern (:mod:`.sources`). The head is rebuilt to any number of classes by the builder itself
(``num_classes=`` is a keyword of every torchvision and timm classifier and of ours); which
tensors belong to the head is found by comparing two empty builds (:func:`head_dims`).
"""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Literal, Optional

import torch
from torch import nn

Output = Literal["softmax", "multilabel"]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True, kw_only=True)
class Preprocessing:
    """Resize the shorter side to ``resize_size``, centre-crop ``input_size`` (square, px), then
    normalize each channel: ``(x / 255 - mean) / std``."""

    input_size: int = 224
    resize_size: int = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


@dataclass(frozen=True, kw_only=True)
class Architecture:
    """A network to build, with the facts of its default head. No weights: see :mod:`.sources`.

    ``builder(**kwargs)`` returns a randomly initialised module and accepts ``num_classes``.
    ``finish`` applies post-load fix-ups torchvision's builders do themselves (GoogLeNet drops its
    auxiliary heads). ``origin`` is for display only; no behaviour branches on it.
    """

    name: str
    display_name: str
    builder: Callable[..., nn.Module]
    class_names: tuple[str, ...]
    default_layer: str
    preprocessing: Preprocessing = Preprocessing()
    output: Output = "softmax"
    origin: str = ""
    description: str = ""
    paper: str = ""
    year: Optional[int] = None
    facts: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    finish: Optional[Callable[[nn.Module], nn.Module]] = field(default=None, compare=False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def build(self, num_classes: Optional[int] = None) -> nn.Module:
        """A randomly initialised module with a head of ``num_classes`` outputs (default: its own)."""
        if num_classes is None or num_classes == self.num_classes:
            return self.builder()
        return self.builder(num_classes=num_classes)

    def build_empty(self, num_classes: Optional[int] = None) -> nn.Module:
        """:meth:`build` with every tensor on the meta device: shapes only, no memory, no init cost."""
        try:
            with torch.device("meta"):
                return self.build(num_classes)
        except Exception:  # noqa: BLE001 - builders that compute with tensors (RegNet's widths)
            with empty_weights():
                return self.build(num_classes)

    def finished(self, model: nn.Module) -> nn.Module:
        return self.finish(model) if self.finish is not None else model


@contextlib.contextmanager
def _meta_registration() -> Iterator[None]:
    """Parameters and buffers registered inside the block are moved to the meta device; other
    tensor arithmetic (e.g. RegNet's width schedule) runs normally. The technique of
    ``accelerate.init_empty_weights``."""
    register_parameter, register_buffer = nn.Module.register_parameter, nn.Module.register_buffer

    def on_meta_parameter(self: nn.Module, name: str, param: Optional[nn.Parameter]) -> None:
        if param is not None and not param.is_meta:
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register_parameter(self, name, param)

    def on_meta_buffer(self: nn.Module, name: str, tensor: Optional[torch.Tensor], persistent: bool = True) -> None:
        register_buffer(self, name, tensor.to("meta") if tensor is not None else None, persistent)

    nn.Module.register_parameter, nn.Module.register_buffer = on_meta_parameter, on_meta_buffer  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter, nn.Module.register_buffer = register_parameter, register_buffer  # type: ignore[method-assign]


_EMPTY_LOCK = threading.Lock()


@contextlib.contextmanager
def empty_weights() -> Iterator[None]:
    """Build modules whose parameters and buffers land on ``meta`` while other arithmetic runs on
    the CPU (for builders that ``torch.device("meta")`` breaks). The patch is process-wide, so it
    is held under a lock."""
    with _EMPTY_LOCK, _meta_registration():
        yield


def head_dims(arch: Architecture) -> dict[str, int]:
    """``{state_dict key: dim}`` of the tensors whose size is the number of classes (the head).

    Found by comparing empty builds with two head sizes, so it holds for any layout (``fc``,
    ``classifier.6``, SqueezeNet's 1x1 conv, GoogLeNet's auxiliary heads)."""
    return _head_dims_cached(arch)


_HEAD_CACHE: dict[str, dict[str, int]] = {}
_HEAD_LOCK = threading.Lock()


def _head_dims_cached(arch: Architecture) -> dict[str, int]:
    with _HEAD_LOCK:
        if arch.name in _HEAD_CACHE:
            return _HEAD_CACHE[arch.name]
    a = state_shapes(arch.build_empty())
    b = state_shapes(arch.build_empty(arch.num_classes + 7))
    dims: dict[str, int] = {}
    for key, shape in a.items():
        other = b.get(key)
        if other is not None and other != shape:
            dims[key] = next(i for i, (p, q) in enumerate(zip(shape, other)) if p != q)
    with _HEAD_LOCK:
        _HEAD_CACHE[arch.name] = dims
    return dims


def state_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """``{key: shape}`` of ``model.state_dict()``."""
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}
