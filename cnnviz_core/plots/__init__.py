"""Plotly figure builders for the dashboard: pure functions from numpy arrays to ``go.Figure``.

No Streamlit, no torch. Conventions:

* images are ``(H, W, 3)`` uint8 RGB; heat maps are ``(H, W)`` float arrays of any range;
* overlays are composited to RGB in numpy (a small PNG in the figure) and, where hover values
  matter, an invisible ``go.Heatmap`` (downsampled to at most ``HOVER_SIDE`` px) carries them;
* within a comparison, ``shared_scale=True`` maps every heat map through one ``[zmin, zmax]``
  (the min/max over all maps), ``False`` scales each map to its own min/max.
"""
from __future__ import annotations

from .arrays import (COLORMAPS, CONCEPT_COLOURS, HOVER_SIDE, apply_colormap, concept_overlay, gradient_magnitude,
                     grid_png, jpeg_data_uri, montage, overlay, png_data_uri, scale_range, signed_rgb)
from .charts import bar_chart, curve_figure, loss_curves, scatter_figure, topk_bar
from .grids import Panel, cell_axis_refs, feature_map_grid, image_figure, image_grid, overlay_grid, subtitle

__all__ = [
    "COLORMAPS", "CONCEPT_COLOURS", "HOVER_SIDE", "Panel", "apply_colormap", "bar_chart", "concept_overlay",
    "cell_axis_refs", "curve_figure", "feature_map_grid", "gradient_magnitude", "grid_png", "image_figure", "image_grid",
    "jpeg_data_uri", "loss_curves", "montage", "overlay",
    "overlay_grid", "png_data_uri", "scale_range", "scatter_figure", "signed_rgb", "subtitle", "topk_bar",
]
