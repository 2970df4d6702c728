"""Seeing inside a CNN: kernels, feature maps, layer geometry, architecture comparison, activation
maximization, Deep Dream and neural style transfer (engine side; the pages call these).

Images come back as uint8 numpy arrays ``(H, W, 3)`` (or ``(H, W)`` for grey montages); tiles as
float32 arrays in [0, 1]; activations as CPU tensors. Long functions take ``progress`` (a
:data:`cnnviz_core.progress.ProgressFn`) and ``cancel`` (a :class:`cnnviz_core.progress.CancelToken`).
"""
from __future__ import annotations

from .architecture import layer_table, summarize, trace_layers
from .compare import architecture_comparison, architecture_row
from .dream import DreamResult, deep_dream
from .feature_maps import ChannelGrid, feature_maps, rank_channels, top_channels_grid
from .filters import kernel_montage, kernel_tiles
from .maximize import SynthesisResult, maximize_activation
from .regularizers import Robustness
from .style import STYLE_LAYERS, StyleResult, style_transfer, vgg_layer_paths
from .tiles import montage, normalize_tiles, rgb_uint8, to_uint8

__all__ = [
    "ChannelGrid", "DreamResult", "Robustness", "STYLE_LAYERS", "StyleResult", "SynthesisResult",
    "architecture_comparison", "architecture_row", "deep_dream", "feature_maps", "kernel_montage",
    "kernel_tiles", "layer_table", "maximize_activation", "montage", "normalize_tiles", "rank_channels",
    "rgb_uint8", "style_transfer", "summarize", "to_uint8", "top_channels_grid", "trace_layers",
    "vgg_layer_paths",
]
