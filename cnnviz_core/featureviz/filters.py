"""Convolution kernels as images (Krizhevsky et al. 2012, Fig. 3; Zeiler & Fergus 2014, Fig. 6).

* Krizhevsky, Sutskever & Hinton, "ImageNet Classification with Deep Convolutional Neural Networks",
  NIPS 2012, https://papers.nips.cc/paper/4824 - the 96 first-layer kernels shown as RGB tiles.
* Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014,
  https://arxiv.org/abs/1311.2901 - first-layer filters of AlexNet vs ZFNet.

Views of a ``Conv2d`` weight ``W`` of shape ``(N, C, kh, kw)`` (``C`` = input channels per group):

* ``"rgb"`` (only when ``C == 3``, i.e. a first layer): ``(N, kh, kw, 3)``, one colour tile per filter;
  the channels are the R, G, B of the (normalized) input image.
* ``"per_channel"``: ``(N', C', kh, kw)``, one grey tile per (filter, input channel).
* ``"summary"``: ``(N, kh, kw)``, the L2 norm over input channels (where the filter looks, not what).

Weights are signed: ``"rgb"`` and ``"per_channel"`` map 0 to mid grey, ``0.5 + w / (2 max|w|)``;
``"summary"`` maps 0 to black, ``norm / max(norm)``. ``scaling="per_tile"`` takes the max over each
filter (each pattern fully visible), ``"shared"`` over the whole layer (magnitudes comparable).
All outputs are float32 in [0, 1].
"""
from __future__ import annotations

from typing import Literal, Optional

import numpy as np
import torch

from ..errors import ParameterError
from ..models import ModelHandle
from .params import check_choice, check_int
from .tiles import Scaling, check_scaling, montage, normalize_tiles

View = Literal["auto", "rgb", "per_channel", "summary"]
VIEWS: tuple[str, ...] = ("auto", "rgb", "per_channel", "summary")


def conv_weight(handle: ModelHandle, layer: str) -> torch.Tensor:
    """The float32 CPU copy ``(N, C, kh, kw)`` of the weight of the convolution at ``layer`` (an
    ``nn.Conv2d``, or the convolution of a ``.pt2`` / TorchScript program)."""
    weight = getattr(handle.module(layer), "weight", None)
    if layer not in handle.conv_layers or not isinstance(weight, torch.Tensor) or weight.ndim != 4:
        hint = ", ".join(handle.conv_layers[:4]) or "(none)"
        raise ParameterError(f"layer {layer!r} is not a 2-D convolution; conv layers: {hint}, ...")
    return weight.detach().float().cpu()


def kernel_view(weight: torch.Tensor, view: View) -> str:
    """The view actually used: ``"auto"`` is ``"rgb"`` for 3 input channels, else ``"summary"``."""
    check_choice("view", view, VIEWS)
    channels = weight.shape[1]
    if view == "auto":
        return "rgb" if channels == 3 else "summary"
    if view == "rgb" and channels != 3:
        raise ParameterError(f"view 'rgb' needs a layer with 3 input channels, this one has {channels}; "
                             "use 'per_channel' or 'summary'")
    return view


def kernel_tiles(
    handle: ModelHandle,
    layer: str,
    *,
    view: View = "auto",
    scaling: Scaling = "per_tile",
    max_filters: Optional[int] = None,
    max_channels: int = 16,
) -> np.ndarray:
    """Kernels of the conv ``layer`` as float32 tiles in [0, 1] (shapes in the module docstring).

    ``max_filters`` keeps the first filters (all by default, at most the layer's count);
    ``max_channels`` caps the input channels shown by ``"per_channel"``. Shared scaling uses the range of the whole layer, even
    when only some filters are returned.
    """
    check_scaling(scaling)
    weight = conv_weight(handle, layer)
    used = kernel_view(weight, view)
    n = weight.shape[0]
    if max_filters is not None:
        n = min(n, check_int("max_filters", max_filters, 1, 1 << 20))
    if used == "summary":
        norms = weight.pow(2).sum(dim=1).sqrt()  # (N, kh, kw), >= 0
        peak = norms.amax(dim=(1, 2), keepdim=True) if scaling == "per_tile" else norms.max()
        return (norms / peak.clamp_min(1e-12))[:n].numpy().astype(np.float32)
    if used == "rgb":
        tiles = normalize_tiles(weight.permute(0, 2, 3, 1).numpy(), scaling, symmetric=True)
        return tiles[:n]
    c = check_int("max_channels", max_channels, 1, 4096)
    # per_tile: one range per filter (all its input channels together), so channels stay comparable
    return normalize_tiles(weight.numpy(), scaling, symmetric=True)[:n, :c]


def kernel_montage(
    handle: ModelHandle,
    layer: str,
    *,
    view: View = "auto",
    scaling: Scaling = "per_tile",
    max_filters: Optional[int] = 64,
    max_channels: int = 16,
    upscale: int = 4,
    pad: int = 1,
) -> np.ndarray:
    """The kernels of :func:`kernel_tiles` on one grid: uint8 ``(H, W, 3)`` for ``"rgb"``, else
    ``(H, W)`` grey; with ``"per_channel"`` each row is one filter, each column one input channel."""
    used = kernel_view(conv_weight(handle, layer), view)
    tiles = kernel_tiles(handle, layer, view=used, scaling=scaling, max_filters=max_filters,
                         max_channels=max_channels)
    if used == "per_channel":
        rows, cols = tiles.shape[:2]
        return montage(tiles.reshape(rows * cols, *tiles.shape[2:]), columns=cols, pad=pad, upscale=upscale)
    return montage(tiles, pad=pad, upscale=upscale)
