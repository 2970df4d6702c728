"""Pure numpy helpers that turn stacks of tiles (kernels, feature maps) into displayable uint8 images.

Nothing here touches a model: the UI calls these on arrays returned by the engine.

Scaling conventions (the same everywhere in :mod:`cnnviz_core.featureviz`):

* ``"per_tile"``: each tile is stretched to the full [0, 1] range on its own (shows the pattern of
  every tile, hides differences of magnitude between tiles);
* ``"shared"``: one range for the whole stack (magnitudes comparable across tiles).

``symmetric=True`` maps values around zero: ``0.5 + v / (2 max|v|)``, so 0 is mid grey, the sign is
kept (used for weights); otherwise min-max ``(v - min) / (max - min)`` (used for activations).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING
from typing import Literal, Optional

import numpy as np

from ..errors import ParameterError

if TYPE_CHECKING:
    import torch

Scaling = Literal["per_tile", "shared"]
SCALINGS: tuple[str, ...] = ("per_tile", "shared")


def check_scaling(scaling: str) -> str:
    if scaling not in SCALINGS:
        raise ParameterError(f"unknown scaling {scaling!r}; choose one of {', '.join(SCALINGS)}")
    return scaling


def normalize_tiles(tiles: np.ndarray, scaling: Scaling = "per_tile", *, symmetric: bool = False) -> np.ndarray:
    """Scale ``(N, h, w)`` or ``(N, h, w, 3)`` values (any ``(N, ...)`` 3-4 dim stack; a "tile" is
    one index of the first axis) to float32 in [0, 1] (see module docstring).

    Constant tiles map to 0.5 (symmetric) or 0 (min-max) instead of dividing by zero.
    """
    check_scaling(scaling)
    arr = np.asarray(tiles, dtype=np.float32)
    if arr.ndim not in (3, 4):
        raise ParameterError(f"tiles must be (N, h, w) or (N, h, w, 3), got shape {arr.shape}")
    axes = tuple(range(1, arr.ndim)) if scaling == "per_tile" else None
    if symmetric:
        peak = np.abs(arr).max(axis=axes, keepdims=True) if arr.size else np.ones(1, np.float32)
        out = 0.5 + arr / (2.0 * np.where(peak > 0, peak, 1.0))
    else:
        low = arr.min(axis=axes, keepdims=True)
        span = arr.max(axis=axes, keepdims=True) - low
        out = (arr - low) / np.where(span > 0, span, 1.0)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def to_uint8(image01: np.ndarray) -> np.ndarray:
    """Float values in [0, 1] (clipped) -> uint8 0..255 (rounded)."""
    return (np.clip(np.asarray(image01, dtype=np.float32), 0.0, 1.0) * 255.0).round().astype(np.uint8)


def montage(
    tiles: np.ndarray,
    *,
    columns: Optional[int] = None,
    pad: int = 1,
    pad_value: int = 255,
    upscale: int = 1,
) -> np.ndarray:
    """Arrange ``(N, h, w)`` or ``(N, h, w, 3)`` tiles (float in [0, 1] or uint8) on a grid.

    ``columns`` defaults to ``ceil(sqrt(N))``; tiles are separated (and surrounded) by ``pad`` pixels of
    ``pad_value``; ``upscale`` repeats each pixel (nearest neighbour, keeps small kernels crisp).
    Returns uint8 ``(H, W)`` for grey tiles or ``(H, W, 3)`` for colour tiles, with
    ``H = rows * (h * upscale + pad) + pad``.
    """
    arr = np.asarray(tiles)
    if arr.ndim not in (3, 4) or arr.shape[0] == 0:
        raise ParameterError(f"montage needs a non-empty (N, h, w[, 3]) stack, got shape {arr.shape}")
    if pad < 0 or upscale < 1:
        raise ParameterError(f"pad must be >= 0 and upscale >= 1, got pad={pad}, upscale={upscale}")
    arr = arr if arr.dtype == np.uint8 else to_uint8(arr)
    if upscale > 1:
        arr = arr.repeat(upscale, axis=1).repeat(upscale, axis=2)
    n, h, w = arr.shape[:3]
    cols = max(1, min(n, columns or math.ceil(math.sqrt(n))))
    rows = math.ceil(n / cols)
    canvas = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, *arr.shape[3:]), pad_value, np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        canvas[y:y + h, x:x + w] = arr[i]
    return canvas


def rgb_uint8(rgb: "torch.Tensor") -> np.ndarray:
    """A ``(1, 3, H, W)`` (or ``(3, H, W)``) RGB tensor in [0, 1] -> ``(H, W, 3)`` uint8 (clipped)."""
    t = rgb.detach()
    t = t[0] if t.ndim == 4 else t
    return to_uint8(t.float().permute(1, 2, 0).cpu().numpy())
