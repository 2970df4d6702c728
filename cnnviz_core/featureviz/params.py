"""Validation of user parameters shared by the feature-visualization functions and their CLI.

Each check raises :class:`~cnnviz_core.errors.ParameterError` with a one-line message naming the
allowed range or values.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Iterator, Literal, Sequence

import torch

from ..errors import ParameterError

#: Allowed ranges, shared by the engine functions and the CLI help texts.
STEPS_RANGE = (1, 2000)
OCTAVES_RANGE = (1, 8)
SIZE_RANGE = (32, 1024)

Precision = Literal["float32", "float16", "bfloat16"]
PRECISIONS: dict[str, torch.dtype | None] = {"float32": None, "float16": torch.float16, "bfloat16": torch.bfloat16}


def check_int(name: str, value: int, low: int, high: int) -> int:
    """``value`` as int if ``low <= value <= high``."""
    try:
        integral = not isinstance(value, bool) and float(value) == int(value)
    except (TypeError, ValueError, OverflowError):
        integral = False
    if not integral:
        raise ParameterError(f"{name} must be an integer in {low}..{high}, got {value!r}")
    if not low <= int(value) <= high:
        raise ParameterError(f"{name} must be in {low}..{high}, got {value}")
    return int(value)


def check_float(name: str, value: float, low: float, high: float) -> float:
    """``value`` as float if finite and ``low <= value <= high``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be a number in {low:g}..{high:g}, got {value!r}") from None
    if not (low <= v <= high):
        raise ParameterError(f"{name} must be in {low:g}..{high:g}, got {value}")
    return v


def check_choice(name: str, value: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ParameterError(f"unknown {name} {value!r}; choose one of {', '.join(allowed)}")
    return value


def check_channel(channel: int | None, channels: int, layer: str) -> int | None:
    if channel is None:
        return None
    return check_int(f"channel of layer {layer!r}", channel, 0, channels - 1)


@contextmanager
def compute_mode(device: torch.device, precision: str = "float32") -> Iterator[None]:
    """Autocast to ``precision`` on ``device`` (the shared model's weights are never converted).

    ``"float32"`` is plain full precision; ``"float16"``/``"bfloat16"`` use :func:`torch.autocast`
    (mixed precision: convolutions in half, reductions and losses in float32).
    """
    dtype = PRECISIONS[check_choice("precision", precision, tuple(PRECISIONS))]
    ctx = nullcontext() if dtype is None else torch.autocast(device_type=device.type, dtype=dtype)
    with ctx:
        yield


def as_model_input(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """``x`` in channels-last memory format when asked (faster convolutions on GPUs with tensor cores)."""
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x
