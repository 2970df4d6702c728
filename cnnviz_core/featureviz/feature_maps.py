"""Feature maps: the activations of any layers for one image, ranked channels, top-N grids.

Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014,
https://arxiv.org/abs/1311.2901 (Sec. 4: the strongest activations of a layer for an image);
Yosinski et al., "Understanding Neural Networks Through Deep Visualization", ICML DL workshop 2015,
https://arxiv.org/abs/1506.06579 (live activation grids).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence, Union

import numpy as np
import torch
from PIL import Image

from ..errors import ParameterError
from ..hooks import capture
from ..inputs import as_model_input
from ..models import ModelHandle
from .params import check_choice, check_int
from .tiles import Scaling, montage, normalize_tiles

Ranking = Literal["mean", "max"]
RANKINGS: tuple[str, ...] = ("mean", "max")


def model_input(handle: ModelHandle, image: Union[Image.Image, torch.Tensor]) -> torch.Tensor:
    """A PIL image preprocessed for ``handle``, or a normalized ``(1, 3, H, W)`` tensor as is
    (:func:`cnnviz_core.inputs.as_model_input`)."""
    return as_model_input(handle, image)


def feature_maps(
    handle: ModelHandle, image: Union[Image.Image, torch.Tensor], layers: Sequence[str]
) -> dict[str, torch.Tensor]:
    """Activations of ``layers`` for one image, all captured during one forward.

    Returns ``path -> (C, H, W)`` float32 CPU tensors (for non-spatial layers such as ``fc``: ``(C,)``
    becomes ``(C, 1, 1)``), as the layer outputs them (post-ReLU only for ReLU layers: an in-place
    ReLU after a captured conv does not alter the captured copy).
    """
    if not layers:
        raise ParameterError("give at least one layer")
    for path in layers:
        handle.module(path)
    x = model_input(handle, image)
    with handle.lock, torch.no_grad(), capture(handle.model, list(layers), differentiable=True) as store:
        handle.model(x)
        out = {path: store[path].detach()[0].float().cpu() for path in layers if path in store}
    missing = [p for p in layers if p not in out]
    if missing:
        raise ParameterError(f"layers not reached by the forward pass: {', '.join(missing)}")
    return {p: t if t.ndim == 3 else t.reshape(-1, 1, 1) for p, t in out.items()}


def rank_channels(fmap: torch.Tensor, by: Ranking = "mean") -> list[tuple[int, float]]:
    """``(channel, score)`` of a ``(C, H, W)`` map, highest first; score = spatial mean or max."""
    check_choice("ranking", by, RANKINGS)
    flat = fmap.reshape(fmap.shape[0], -1).float()
    scores = flat.mean(dim=1) if by == "mean" else flat.amax(dim=1)
    order = torch.argsort(scores, descending=True, stable=True)
    return [(int(i), float(scores[i])) for i in order]


@dataclass(frozen=True)
class ChannelGrid:
    """Top channels of a feature map: ``image`` uint8 ``(H, W)`` grid (row-major, best first),
    ``channels`` their indices and ``scores`` their ranking scores."""

    image: np.ndarray
    channels: list[int]
    scores: list[float]


def top_channels_grid(
    fmap: torch.Tensor,
    n: int = 16,
    *,
    by: Ranking = "mean",
    scaling: Scaling = "per_tile",
    upscale: int = 1,
    pad: int = 2,
) -> ChannelGrid:
    """The ``n`` highest-ranked channels of a ``(C, H, W)`` map as a grey montage.

    Values are min-max scaled to [0, 1] per tile or over the shown tiles together (``scaling``).
    """
    ranked = rank_channels(fmap, by)[: check_int("n", n, 1, 1024)]
    channels = [c for c, _ in ranked]
    tiles = normalize_tiles(fmap[channels].float().numpy(), scaling)
    return ChannelGrid(montage(tiles, pad=pad, upscale=upscale), channels, [s for _, s in ranked])
