"""Plotly figures for audit results (pure functions of a results DataFrame; no Streamlit, no torch).

Conventions follow :mod:`cnnviz_core.plots` (whose ``bar_chart``, ``image_grid`` and ``overlay`` the
dashboard reuses for the rest): one figure per question, methods in the order they appear.
Deletion AUC: lower is better; insertion AUC, pointing hit and energy pointing: higher is better.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from PIL import Image

#: Metric column -> (label, True if higher is better).
METRIC_COLUMNS: dict[str, tuple[str, bool]] = {
    "deletion_auc": ("Deletion AUC (lower is better)", False),
    "insertion_auc": ("Insertion AUC (higher is better)", True),
    "pointing_hit": ("Pointing game hit rate (higher is better)", True),
    "energy_pointing": ("Energy pointing (higher is better)", True),
}
_LAYOUT = dict(margin=dict(l=0, r=10, t=30, b=0))


def available_metrics(df: pd.DataFrame) -> list[str]:
    """Metric columns that hold at least one value among the ok rows."""
    ok = df[df["status"] == "ok"]
    return [c for c in METRIC_COLUMNS if c in ok and ok[c].notna().any()]


def distribution_figure(df: pd.DataFrame, metric: str, height: int = 340) -> go.Figure:
    """One box (with every image as a point) per method for ``metric`` over the ok rows."""
    label, _ = METRIC_COLUMNS[metric]
    ok = df[(df["status"] == "ok") & df[metric].notna()]
    fig = go.Figure()
    for method in pd.unique(ok["method"]):
        values = ok.loc[ok["method"] == method, metric]
        names = ok.loc[ok["method"] == method, "path"].map(lambda p: str(p).rsplit("/", 1)[-1])
        fig.add_trace(go.Box(y=values, name=str(method), boxpoints="all", jitter=0.4, pointpos=0,
                             marker=dict(size=3, opacity=0.5), boxmean=True, text=names,
                             hovertemplate="%{text}<br>%{y:.3f}<extra>%{fullData.name}</extra>"))
    fig.update_layout(height=height, title=dict(text=label, x=0.0, font_size=14), showlegend=False, **_LAYOUT)
    if metric == "pointing_hit":
        fig.update_yaxes(range=[-0.05, 1.05], tickvals=[0, 1], ticktext=["miss", "hit"])
    return fig


def class_breakdown(df: pd.DataFrame, metric: str, by: str = "target_name", height: int = 320) -> go.Figure:
    """Heat map of the mean ``metric`` per method (rows) and class (columns, ``by``), with counts."""
    label, higher_better = METRIC_COLUMNS[metric]
    ok = df[(df["status"] == "ok") & df[metric].notna()]
    table = ok.pivot_table(index="method", columns=by, values=metric, aggfunc="mean", sort=False)
    counts = ok.pivot_table(index="method", columns=by, values=metric, aggfunc="count", sort=False)
    text = [[f"{v:.2f}<br>n={int(n)}" if np.isfinite(v) else "" for v, n in zip(row, crow)]
            for row, crow in zip(table.to_numpy(), counts.reindex_like(table).fillna(0).to_numpy())]
    fig = go.Figure(go.Heatmap(z=table.to_numpy(), x=[str(c) for c in table.columns],
                               y=[str(i) for i in table.index], text=text, texttemplate="%{text}",
                               colorscale="Viridis" if higher_better else "Viridis_r", zmin=0, zmax=1,
                               hovertemplate="%{y} / %{x}: %{z:.3f}<extra></extra>"))
    fig.update_layout(height=max(height, 60 + 40 * len(table.index)),
                      title=dict(text=f"{label} per class", x=0.0, font_size=14), **_LAYOUT)
    fig.update_yaxes(autorange="reversed")
    return fig


def worst_rows(df: pd.DataFrame, method: str, metric: str, k: int = 8) -> pd.DataFrame:
    """The ``k`` ok rows of ``method`` with the worst ``metric`` (highest deletion AUC, lowest
    otherwise; ties broken by path)."""
    _, higher_better = METRIC_COLUMNS[metric]
    rows = df[(df["method"] == method) & (df["status"] == "ok") & df[metric].notna()]
    return rows.sort_values([metric, "path"], ascending=[higher_better, True]).head(k)


def model_view(image: Image.Image, side: int, resize_side: Optional[int] = None) -> np.ndarray:
    """What the model saw: shorter side resized to ``resize_side`` (default ``side``), centre crop
    ``side`` x ``side`` -> ``(side, side, 3)`` uint8 (to lay a saved map over its image)."""
    resize_side = resize_side or side
    w, h = image.size
    scale = resize_side / min(w, h)
    image = image.convert("RGB").resize((max(side, round(w * scale)), max(side, round(h * scale))),
                                        Image.BILINEAR)
    w, h = image.size
    left, top = (w - side) // 2, (h - side) // 2
    return np.asarray(image.crop((left, top, left + side, top + side)))
