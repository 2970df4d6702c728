"""Image grids as Plotly figures: overlays (with hover values), single images, feature-map montages.

Built as plain dicts in one go: plotly's ``make_subplots`` + ``update_*`` calls cost ~0.2 s per
grid, these cost a few milliseconds (the figure is still validated once).
"""
from __future__ import annotations

import math
from typing import Literal, Mapping, Optional, Sequence, Union

import numpy as np
import plotly.graph_objects as go

from .arrays import apply_colormap, block_mean, jpeg_data_uri, montage, normalize01, overlay, png_data_uri, scale_range

_HIDDEN_AXIS = dict(showticklabels=False, showgrid=False, zeroline=False, showline=False, ticks="")
_MARGIN = dict(l=0, r=0, t=28, b=0)


def _hover_trace(heat: np.ndarray, height: int, width: int, label: str) -> go.Heatmap:
    """An invisible heat map stretched over an ``height x width`` image that shows values on hover."""
    small = block_mean(heat)
    dy, dx = height / small.shape[0], width / small.shape[1]
    return go.Heatmap(
        z=small.astype(np.float32), x0=dx / 2 - 0.5, dx=dx, y0=dy / 2 - 0.5, dy=dy, opacity=0.0,
        showscale=False, hovertemplate=f"{label}<br>x=%{{x:.0f}} y=%{{y:.0f}}<br>value=%{{z:.3g}}<extra></extra>",
    )


def image_figure(image: np.ndarray, title: Optional[str] = None, height: int = 320) -> go.Figure:
    """One RGB image, no axes, with ``title`` above it (``encoding="auto"`` of :func:`image_grid`)."""
    return image_grid({title or "": np.asarray(image, dtype=np.uint8)}, cols=1, height_per_row=height, encoding="auto")


def _colorbar_trace(colormap: str, zmin: float, zmax: float, title: str) -> go.Scatter:
    """A point-less trace that only draws a colour bar for ``[zmin, zmax]``."""
    return go.Scatter(
        x=[None], y=[None], mode="markers", showlegend=False, hoverinfo="skip",
        marker=dict(colorscale=colormap, cmin=zmin, cmax=zmax, color=[zmin], showscale=True,
                    colorbar=dict(title=dict(text=title, side="right"), thickness=12, len=0.9)),
    )


def subtitle(text: str) -> str:
    """Second line of a panel title, smaller and grey (Plotly's HTML subset)."""
    return f"<span style='font-size:11px;color:#6b7280'>{text}</span>"


def _axis_suffix(i: int) -> str:
    return "" if i == 0 else str(i + 1)


def cell_axis_refs(i: int) -> tuple[str, str]:
    """The ``(xref, yref)`` of grid cell ``i`` of :func:`image_grid` (``("x", "y")``, ``("x2", "y2")``, ...),
    e.g. for a shape drawn on that panel."""
    return f"x{_axis_suffix(i)}", f"y{_axis_suffix(i)}"


def _cell_axes(i: int, rows: int, cols: int, title_px: int, height: int, gap: float = 0.015) -> tuple[dict, dict, str]:
    """Axis dicts (``xaxisN``, ``yaxisN``) of grid cell ``i`` (row-major) and its axis suffix."""
    r, c = divmod(i, cols)
    suffix = _axis_suffix(i)
    title = title_px / height
    row_h = 1.0 / rows
    x_dom = [c / cols + gap / 2, (c + 1) / cols - gap / 2]
    y_dom = [1.0 - (r + 1) * row_h + gap / 2, 1.0 - r * row_h - title]
    hidden = dict(_HIDDEN_AXIS, constrain="domain")
    xaxis = dict(domain=x_dom, anchor=f"y{suffix}", **hidden)
    yaxis = dict(domain=y_dom, anchor=f"x{suffix}", autorange="reversed", scaleanchor=f"x{suffix}", **hidden)
    return xaxis, yaxis, suffix


Panel = tuple[str, np.ndarray, Optional[np.ndarray]]


def image_grid(
    panels: Union[Mapping[str, np.ndarray], Sequence[Panel]],
    *,
    cols: int = 4,
    height_per_row: int = 260,
    colorbar: Optional[tuple[str, float, float, str]] = None,
    title: Optional[str] = None,
    encoding: Literal["png", "jpeg", "auto"] = "png",
) -> go.Figure:
    """Titled ``(H, W, 3)`` uint8 panels on a grid (one small PNG each, or JPEG: ``encoding``), row-major.
    ``"auto"``: JPEG when every panel is at least 96 px a side (a photo or a map at input size: 7x
    lighter to send and paint), PNG (pixel-exact) for small images.

    ``panels``: ``{title: rgb}`` or a sequence of ``(title, rgb, hover)`` where ``hover`` (an
    ``(h, w)`` map or None) adds an invisible heat map showing its values under the cursor. Titles may
    repeat in the sequence form. ``colorbar = (colormap, zmin, zmax, label)`` draws one colour bar.

    Built as plain dicts in one go: plotly's ``make_subplots`` + ``update_*`` calls cost ~0.2 s per
    grid, this costs a few milliseconds (the figure is still validated once).
    """
    items: list[Panel] = [(k, v, None) for k, v in panels.items()] if isinstance(panels, Mapping) else list(panels)
    if not items:
        raise ValueError("image_grid needs at least one panel")
    cols = max(1, min(cols, len(items)))
    rows = math.ceil(len(items) / cols)
    if encoding == "auto":
        encoding = "jpeg" if all(min(rgb.shape[:2]) >= 96 for _, rgb, _ in items) else "png"
    encode = jpeg_data_uri if encoding == "jpeg" else png_data_uri
    title_px = 42 if any("<br>" in name for name, _, _ in items) else 24
    top = 30 if title else 0
    height = rows * height_per_row + top
    data: list[dict] = []
    layout: dict = dict(height=height, margin=dict(l=0, r=60 if colorbar else 0, t=top, b=0), hovermode="closest",
                        showlegend=False, annotations=[], plot_bgcolor="rgba(0,0,0,0)")
    if title:
        layout["title"] = dict(text=title, x=0.0, font=dict(size=14))
    for i, (name, rgb, hover_map) in enumerate(items):
        xaxis, yaxis, suffix = _cell_axes(i, rows, cols, title_px, height - top)
        layout[f"xaxis{suffix}"], layout[f"yaxis{suffix}"] = xaxis, yaxis
        data.append(dict(type="image", source=encode(rgb), xaxis=f"x{suffix}", yaxis=f"y{suffix}",
                         hoverinfo="skip"))
        if hover_map is not None:
            hover = _hover_trace(np.asarray(hover_map, dtype=np.float64), rgb.shape[0], rgb.shape[1],
                                 name.split("<br>")[0])
            data.append(dict(hover.to_plotly_json(), xaxis=f"x{suffix}", yaxis=f"y{suffix}"))
        if name:
            layout["annotations"].append(dict(
                text=name, x=sum(xaxis["domain"]) / 2, y=yaxis["domain"][1], xref="paper", yref="paper",
                xanchor="center", yanchor="bottom", showarrow=False, font=dict(size=13)))
    if colorbar is not None:
        cmap, zmin, zmax, label = colorbar
        data.append(dict(_colorbar_trace(cmap, zmin, zmax, label).to_plotly_json(), xaxis="x", yaxis="y"))
    return go.Figure(dict(data=data, layout=layout))


def overlay_grid(
    image: Optional[np.ndarray],
    maps: Mapping[str, np.ndarray],
    *,
    colormap: str = "Jet",
    opacity: float = 0.5,
    shared_scale: bool = True,
    cols: int = 4,
    subtitles: Optional[Mapping[str, str]] = None,
    height_per_row: int = 260,
    hover: bool = True,
    colorbar_title: str = "value",
) -> go.Figure:
    """Grid of heat maps (over ``image`` if given, else plain colour) titled by the dict keys.

    ``shared_scale``: one colour range over all maps (and one colour bar); otherwise each map is
    scaled to its own min/max (colour bar in relative units 0..1). ``subtitles`` adds a line under
    each title (e.g. deletion/insertion AUC). Hover shows the map's value under the cursor.
    """
    if not maps:
        raise ValueError("overlay_grid needs at least one map")
    zmin, zmax = scale_range(list(maps.values())) if shared_scale else (0.0, 1.0)
    panels: list[Panel] = []
    for name, heat in maps.items():
        heat = np.asarray(heat, dtype=np.float64)
        lo, hi = (zmin, zmax) if shared_scale else scale_range([heat])
        title = f"{name}<br>{subtitle(subtitles[name])}" if subtitles and name in subtitles else name
        rgb = overlay(image, heat, colormap, opacity, lo, hi) if image is not None \
            else apply_colormap(heat, colormap, lo, hi)
        panels.append((title, rgb, (heat if shared_scale else normalize01(heat, lo, hi)) if hover else None))
    return image_grid(panels, cols=cols, height_per_row=height_per_row, encoding="jpeg" if image is not None else "png",
                      colorbar=(colormap, zmin, zmax, colorbar_title if shared_scale else "relative"))


def feature_map_grid(
    maps: np.ndarray,
    labels: Optional[Sequence[str]] = None,
    *,
    cols: int = 8,
    colormap: str = "Viridis",
    shared_scale: bool = False,
    tile: int = 48,
    title: Optional[str] = None,
) -> go.Figure:
    """``(C, H, W)`` feature maps as one montage heat map (tiles block-averaged to at most ``tile`` px).

    ``shared_scale=False`` scales each channel to [0, 1] on its own (shape of the activation),
    ``True`` keeps raw values on one scale (which channels fire most). Hover shows channel and value.
    """
    maps = np.asarray(maps, dtype=np.float32)
    n = maps.shape[0]
    labels = list(labels) if labels is not None else [f"ch {i}" for i in range(n)]
    tiles = np.stack([block_mean(m, tile) for m in maps]) if n else np.zeros((0, 1, 1), np.float32)
    side = tiles.shape[1]
    if not shared_scale:
        tiles = np.stack([normalize01(t, *scale_range([t])) for t in tiles]).astype(np.float32) if n else tiles
    cols = max(1, min(cols, n))
    gap = max(1, side // 12)
    grid = montage(tiles.astype(np.float32), cols, gap=gap)
    step = side + gap
    annotations = [dict(x=(i % cols) * step - 0.5, y=(i // cols) * step - 0.5, text=label, showarrow=False,
                        xanchor="left", yanchor="top", font=dict(size=9, color="white"), bgcolor="rgba(0,0,0,0.45)")
                   for i, label in enumerate(labels[:n])]
    rows = math.ceil(n / cols) if n else 1
    hidden = dict(_HIDDEN_AXIS, constrain="domain")
    layout = dict(
        height=max(200, int(rows * 820 / cols) + 40), margin=_MARGIN, annotations=annotations,
        title=dict(text=title or "", x=0.0, font=dict(size=14)), plot_bgcolor="rgba(0,0,0,0)",
        xaxis=hidden, yaxis=dict(hidden, autorange="reversed", scaleanchor="x"),
    )
    heat = dict(type="heatmap", z=grid, colorscale=colormap, showscale=shared_scale, hoverongaps=False,
                hovertemplate="value=%{z:.3g}<extra></extra>")
    return go.Figure(dict(data=[heat], layout=layout))
