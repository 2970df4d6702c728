"""Model input from a PIL image or a tensor, written once.

:func:`as_model_input` is what every entry point that takes "an image" uses (attribution, feature
maps, unit projections, top activations): a PIL image goes through ``handle.preprocess`` (resize,
centre crop, normalize); a tensor must already be normalized, ``(1, 3, H, W)`` (or ``(N, 3, H, W)``
with ``batch=True``). The result is float32 on the model's device, never an inference tensor (so it
can require grad), and finite.
"""
from __future__ import annotations

from typing import Any, Sequence, Union

import torch
from PIL import Image

from .errors import ParameterError

ImageLike = Union[Image.Image, torch.Tensor]


def as_model_input(handle: Any, x: ImageLike, *, batch: bool = False) -> torch.Tensor:
    """PIL image or normalized tensor -> validated float32 ``(1|N, 3, H, W)`` tensor on ``handle.device``.

    ``batch=False`` (default): exactly one image. Raises :class:`ParameterError` naming what was given."""
    if isinstance(x, Image.Image):
        x = handle.preprocess(x)
    if not isinstance(x, torch.Tensor):
        raise ParameterError(f"expected a PIL image or a (1, 3, H, W) tensor, got {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] != 3 or x.shape[0] < 1 or (not batch and x.shape[0] != 1):
        want = "(N, 3, H, W)" if batch else "one image: a (1, 3, H, W)"
        raise ParameterError(f"expected {want} tensor, got shape {tuple(x.shape)}")
    x = x.detach().to(handle.device, torch.float32)
    if x.is_inference():
        x = x.clone()
    if not bool(torch.isfinite(x).all()):
        raise ParameterError("the input tensor contains NaN or infinite values")
    return x


def as_model_batch(handle: Any, images: Sequence[ImageLike]) -> torch.Tensor:
    """Many images (PIL images or ``(1, 3, H, W)`` / ``(N, 3, H, W)`` tensors) -> one validated
    ``(N, 3, H, W)`` batch (checked once, not per image). All must give inputs of one size."""
    if not images:
        raise ParameterError("no images given")
    parts = [handle.preprocess(im) if isinstance(im, Image.Image) else im for im in images]
    bad = [p for p in parts if not isinstance(p, torch.Tensor) or p.ndim != 4]
    if bad:
        raise ParameterError(f"expected PIL images or (N, 3, H, W) tensors, got {type(bad[0]).__name__}")
    shapes = {tuple(p.shape[-2:]) for p in parts}
    if len(shapes) > 1:
        raise ParameterError(f"images of one batch must give inputs of one size, got {sorted(shapes)}")
    return as_model_input(handle, torch.cat([p.to(handle.device) for p in parts]), batch=True)
