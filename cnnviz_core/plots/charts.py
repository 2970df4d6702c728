"""Plain Plotly charts: top-k bars, bar charts, curves (losses, AUC, sanity checks), labelled scatters."""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np
import plotly.graph_objects as go

_LOG_TICKS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


def topk_bar(predictions: Sequence[tuple[int, str, float]], title: str = "Top-5 probabilities",
             height: int = 260) -> go.Figure:
    """Horizontal bars of ``(index, name, probability)`` predictions, best on top."""
    names = [p[1] for p in predictions][::-1]
    probs = [p[2] for p in predictions][::-1]
    fig = go.Figure(go.Bar(x=probs, y=names, orientation="h", text=[f"{p:.1%}" for p in probs],
                           textposition="auto", hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    fig.update_layout(height=height, margin=dict(l=0, r=10, t=30, b=0), title=dict(text=title, x=0.0, font_size=14),
                      xaxis=dict(range=[0, 1], tickformat=".0%"))
    return fig


def bar_chart(labels: Sequence[str], values: Sequence[float], *, title: str = "", xlabel: str = "",
              height: int = 300, horizontal: bool = True, fmt: str = ".3f") -> go.Figure:
    """Simple bar chart (e.g. pointing-game accuracy per method)."""
    text = [format(v, fmt) for v in values]
    bar = go.Bar(x=list(values), y=list(labels), orientation="h", text=text) if horizontal else \
        go.Bar(x=list(labels), y=list(values), text=text)
    fig = go.Figure(bar)
    fig.update_layout(height=height, margin=dict(l=0, r=10, t=30, b=0), title=dict(text=title, x=0.0, font_size=14))
    if horizontal:
        fig.update_xaxes(title_text=xlabel)
        fig.update_yaxes(autorange="reversed")
    else:
        fig.update_yaxes(title_text=xlabel)
    return fig


def curve_figure(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], *, title: str = "",
                 xlabel: str = "", ylabel: str = "", height: int = 300, fill: bool = False,
                 log_y: bool = False, xticks: Optional[Sequence[str]] = None) -> go.Figure:
    """Line chart of named ``(x, y)`` curves (loss curves, AUC curves, sanity-check similarity)."""
    fig = go.Figure()
    for name, (x, y) in curves.items():
        fig.add_trace(go.Scatter(x=list(x), y=list(y), mode="lines+markers" if len(x) <= 30 else "lines",
                                 name=name, fill="tozeroy" if fill else None))
    fig.update_layout(height=height, margin=dict(l=0, r=10, t=30, b=0), title=dict(text=title, x=0.0, font_size=14),
                      xaxis_title=xlabel, yaxis_title=ylabel, legend=dict(orientation="h", y=-0.25))
    if log_y:
        fig.update_yaxes(type="log")
    if xticks is not None:
        fig.update_xaxes(tickmode="array", tickvals=list(range(len(xticks))), ticktext=list(xticks))
    return fig


def loss_curves(history: Mapping[str, Sequence[float]], title: str = "Loss", height: int = 280,
                ylabel: str = "loss") -> go.Figure:
    """Value per step for each named term (log scale when all values are positive)."""
    curves = {k: (list(range(1, len(v) + 1)), list(v)) for k, v in history.items() if len(v)}
    positive = all(min(v) > 0 for _, v in curves.values()) if curves else False
    return curve_figure(curves, title=title, xlabel="step", ylabel=ylabel, height=height, log_y=positive)


def scatter_figure(rows: Sequence[Mapping[str, object]], *, x: str, y: str, label: str, size: Optional[str] = None,
                   xlabel: str = "", ylabel: str = "", title: str = "", log_x: bool = False,
                   height: int = 340) -> go.Figure:
    """Labelled scatter of dict rows (e.g. ImageNet top-1 vs GFLOPS, bubble size = parameters)."""
    pts = [r for r in rows if r.get(x) is not None and r.get(y) is not None]
    sizes = None
    if size:
        vals = np.asarray([float(r.get(size) or 0.0) for r in pts])
        sizes = list(12 + 30 * np.sqrt(vals / vals.max())) if len(vals) and vals.max() > 0 else None
    # Alternate label positions so that neighbours (VGG-16/19) do not print over each other.
    positions = ["top center" if i % 2 == 0 else "bottom center" for i in range(len(pts))]
    fig = go.Figure(go.Scatter(
        x=[r[x] for r in pts], y=[r[y] for r in pts], text=[str(r[label]) for r in pts], mode="markers+text",
        textposition=positions, marker=dict(size=sizes or 12, opacity=0.75),
        hovertemplate="%{text}<br>" + f"{xlabel or x}=%{{x}}<br>{ylabel or y}=%{{y}}<extra></extra>",
    ))
    fig.update_layout(height=height, margin=dict(l=0, r=10, t=30, b=0), title=dict(text=title, x=0.0, font_size=14),
                      xaxis_title=xlabel or x, yaxis_title=ylabel or y)
    if log_x:
        xs = [float(r[x]) for r in pts]
        ticks = [v for v in _LOG_TICKS if min(xs) / 3 <= v <= max(xs) * 3] if xs else []
        fig.update_xaxes(type="log", tickvals=ticks, ticktext=[f"{v:g}" for v in ticks])
    elif pts and all(float(r[x]).is_integer() for r in pts):
        fig.update_xaxes(tickformat="d", dtick=1)
    fig.update_yaxes(range=_padded([float(r[y]) for r in pts]))
    return fig


def _padded(values: Sequence[float], fraction: float = 0.12) -> Optional[list[float]]:
    """An axis range with room around the points for their text labels."""
    if not values:
        return None
    lo, hi = min(values), max(values)
    pad = (hi - lo) * fraction or 1.0
    return [lo - pad, hi + pad]
