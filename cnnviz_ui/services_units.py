"""Services for the unit views (Backprop page targets, "What each layer learned"): typed, cached
calls into :mod:`cnnviz_core.attribution` so that pages never touch torch.

* :func:`unit_target` builds the engine's typed target from the page's widgets;
* :func:`layer_shape` / :func:`channel_map`: the chosen layer's feature map for the image (to pick a
  neuron by clicking it);
* :func:`box_grid_figure` / :func:`crop`: the receptive-field box drawn on the image and its maps, and
  the patch;
* :func:`image_set` / :func:`layer_learned`: the top activations of a layer's channels over an image
  set (long work, run through :func:`cnnviz_ui.run_task`: progress, Stop), the paper's Fig. 2 grid.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image

from cnnviz_core import ModelHandle, plots

from .compute import feature_maps
from .state import Selection, cached

KINDS = ("Class", "Channel", "Neuron")
IMAGE_SETS = ("Our scenes", "Sample photos")


def unit_layers(handle: ModelHandle) -> list[str]:
    """Layers whose units can be explained: every convolution, and the model's CAM layer."""
    return list(handle.cam_layers)


def unit_target(kind: str, layer: Optional[str], channel: int, position: Optional[tuple[int, int]] = None,
                reduce: str = "sum"):
    """The typed target of the widgets: ``None`` for a class (the page passes its class index
    instead), a :class:`~cnnviz_core.attribution.ChannelTarget` or a ``NeuronTarget`` (no position:
    the channel's strongest activation on the image)."""
    from cnnviz_core.attribution import ChannelTarget, NeuronTarget

    if kind == "Channel":
        return ChannelTarget(str(layer), int(channel), reduce)  # type: ignore[arg-type]
    if kind == "Neuron":
        y, x = position if position is not None else (None, None)
        return NeuronTarget(str(layer), int(channel), y, x)
    return None


def layer_shape(handle: ModelHandle, sel: Selection, layer: str) -> tuple[int, int, int]:
    """``(C, h, w)`` of ``layer``'s output for the selected image."""
    return tuple(feature_maps(handle, sel, [layer])[layer].shape)  # type: ignore[return-value]


def channel_map(handle: ModelHandle, sel: Selection, layer: str, channel: int) -> np.ndarray:
    """``(h, w)`` float32 map of one channel for the selected image."""
    return feature_maps(handle, sel, [layer])[layer][channel]


def feature_map_figure(fmap: np.ndarray, title: str, mark: Optional[tuple[int, int]] = None,
                       height: int = 300) -> go.Figure:
    """A clickable heat map of one channel (point selections give the neuron's cell)."""
    fig = go.Figure(go.Heatmap(z=fmap, colorscale="Viridis", hovertemplate="y %{y}, x %{x}: %{z:.3g}<extra></extra>",
                               showscale=False))
    fig.update_yaxes(autorange="reversed", scaleanchor="x", visible=False)
    fig.update_xaxes(visible=False)
    if mark is not None:
        fig.add_trace(go.Scatter(x=[mark[1]], y=[mark[0]], mode="markers", hoverinfo="skip",
                                 marker=dict(symbol="x", size=12, color="red")))
    fig.update_layout(height=height, margin=dict(l=0, r=0, t=28, b=0), title=dict(text=title, font=dict(size=13)),
                      showlegend=False)
    return fig


def selected_cell(event: object) -> Optional[tuple[int, int]]:
    """``(y, x)`` of the first point of a Plotly selection event (``st.plotly_chart(on_select=...)``)."""
    try:
        point = event["selection"]["points"][0]  # type: ignore[index]
        return int(point["y"]), int(point["x"])
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def box_grid_figure(panels: dict[str, np.ndarray], box: Optional[Sequence[int]], height: int = 280) -> go.Figure:
    """The ``{title: (H, W, 3) uint8}`` panels on one row of one figure (``encoding="auto"`` of
    :func:`~cnnviz_core.plots.image_grid`), each with the receptive field ``(top, left, bottom, right)``
    drawn as a rectangle. One figure rather than one per panel: the browser draws one plot."""
    fig = plots.image_grid({k: np.asarray(v, dtype=np.uint8) for k, v in panels.items()}, cols=len(panels),
                           height_per_row=height, encoding="auto")
    if box is not None:
        t, l, b, r = box
        refs = map(plots.cell_axis_refs, range(len(panels)))
        fig.update_layout(shapes=[dict(type="rect", x0=l - 0.5, x1=r - 0.5, y0=t - 0.5, y1=b - 0.5, xref=xref,
                                       yref=yref, line=dict(color="#00e5ff", width=2)) for xref, yref in refs])
    return fig


def crop(array: np.ndarray, box: Optional[Sequence[int]], *, channel_first: bool = False) -> np.ndarray:
    """The part of ``array`` under ``box`` (``(H, W, ...)``, or ``(C, H, W)`` with ``channel_first``)."""
    if box is None:
        return array
    t, l, b, r = box
    return array[..., t:b, l:r] if channel_first else array[t:b, l:r]


def enlarge(rgb: np.ndarray, side: int = 160) -> np.ndarray:
    """Nearest-neighbour enlargement so that a small patch shows at ``side`` px."""
    scale = max(1, side // max(1, max(rgb.shape[:2])))
    return np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1)


def image_set(handle: ModelHandle, kind: str, count: int, seed: int):
    """An :class:`~cnnviz_core.attribution.topk.ImageSet`: generated scenes at the model's input
    size, or the bundled sample photos."""
    from cnnviz_core.attribution.topk import ImageSet
    from cnnviz_core.images import SAMPLES, sample_image

    if kind == "Sample photos":
        names = list(SAMPLES)
        return cached(("unit_set", "samples"), lambda: ImageSet.from_images([sample_image(n) for n in names], names))
    size = handle.spec.input_size
    return cached(("unit_set", "scenes", count, seed, size),
                  lambda: ImageSet.from_scenes(count, seed, size=size, objects=2))


def most_active_channels(handle: ModelHandle, images, layer: str, k: int, progress=None, cancel=None) -> list[int]:
    """The ``k`` channels of ``layer`` with the largest mean per-image maximum over ``images``."""
    from cnnviz_core.attribution.topk import channel_maxima

    return channel_maxima(handle, images, layer, progress=progress, cancel=cancel).top_channels(k)


def layer_learned(handle: ModelHandle, images, layer: str, channels: Sequence[int], k: int,
                  progress: Optional[Callable] = None, cancel=None) -> dict[int, list[tuple[np.ndarray, np.ndarray, str]]]:
    """``{channel: [(projection_rgb, patch_rgb, caption), ...]}``: each channel's ``k`` strongest
    activations over ``images`` (one per image), deconvnet projection and image patch (Fig. 2)."""
    from cnnviz_core.attribution.topk import projection_image, top_activations

    out: dict[int, list[tuple[np.ndarray, np.ndarray, str]]] = {}
    for c in channels:
        if cancel is not None:
            cancel.check()
        top = top_activations(handle, images, layer, int(c), k=k, progress=progress, cancel=cancel)
        out[int(c)] = [(projection_image(t.projection), t.patch, f"{t.image}: {t.activation:.3g}") for t in top]
    return out


def learned_grid(rows: dict[int, list[tuple[np.ndarray, np.ndarray, str]]], side: int = 96) -> go.Figure:
    """The paper's Fig. 2 layout: per channel, its top activations as (projection, patch) pairs."""
    panels = []
    cols = 0
    for c, items in rows.items():
        row = []
        for i, (proj, patch, caption) in enumerate(items):
            row.append((f"ch {c} #{i + 1}: projection", _fit(proj, side), None))
            row.append((caption, _fit(patch, side), None))
        cols = max(cols, len(row))
        panels.append(row)
    flat = []
    for row in panels:  # pad rows so that each channel starts a new grid row
        flat += row + [("", np.full((side, side, 3), 255, np.uint8), None)] * (cols - len(row))
    return plots.image_grid(flat, cols=max(1, cols), height_per_row=side + 40)


def _fit(rgb: np.ndarray, side: int) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).resize((side, side), Image.NEAREST))
