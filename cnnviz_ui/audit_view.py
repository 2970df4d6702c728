"""Audit results on the Applications page: which explanation method is most faithful, where it fails.

``render_audit_results(source)`` takes a results folder or Parquet file path (from
``python -m cnnviz_core audit``) or an uploaded Parquet file (``st.file_uploader``). It shows the
per-method summary, the distribution of each metric per method, a per-class breakdown, the worst
images of a method with their saved maps (``--save-maps``; the image alone otherwise) and the
failed rows. No torch here: reading is pyarrow/pandas, figures are Plotly.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import pandas as pd
import streamlit as st

from cnnviz_core import plots
from cnnviz_core.audit.figures import (METRIC_COLUMNS, available_metrics, class_breakdown, distribution_figure,
                                       model_view, worst_rows)
from cnnviz_core.audit.results import method_summary, read_manifest, read_results
from cnnviz_core.errors import CnnvizError
from cnnviz_core.images import load_image

from .errors import show_error
from .layout import chart

Source = Union[str, Path, Any]  # a path, or an UploadedFile (file-like with getvalue())


@st.cache_data(show_spinner="Reading audit results…", max_entries=8)
def _load(path: str, stamp: str, data: Optional[bytes]) -> pd.DataFrame:
    """``stamp`` (part names and times, or the upload's name) only keys the cache."""
    return read_results(data if data is not None else path).to_pandas()


def _read(source: Source) -> tuple[pd.DataFrame, Optional[Path]]:
    """Results as a DataFrame and the results folder (for saved maps), or None for uploads."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        parts = sorted(path.glob("part-*.parquet")) if path.is_dir() else [path]
        stamp = "|".join(f"{p.name}:{p.stat().st_mtime_ns}" for p in parts if p.exists())
        return _load(str(path), stamp, None), (path if path.is_dir() else path.parent)
    data = source.getvalue() if hasattr(source, "getvalue") else source.read()
    return _load("", f"upload:{getattr(source, 'name', '')}:{len(data)}", data), None


def render_audit_results(path_or_uploaded_file: Source) -> None:
    """Render the audit dashboard for a results folder / Parquet file / uploaded file."""
    try:
        df, folder = _read(path_or_uploaded_file)
    except CnnvizError as exc:
        show_error(exc)
        return
    if df.empty:
        st.info("This results table has no rows yet.")
        return
    _summary(df, folder)
    metrics = available_metrics(df)
    if not metrics:
        st.warning("No metric values in these results (every row failed?).")
    else:
        metric = st.segmented_control("Metric", metrics, default=metrics[0], key="audit_metric",
                                      format_func=lambda m: METRIC_COLUMNS[m][0].split(" (")[0])
        metric = metric or metrics[0]
        chart(distribution_figure(df, metric), key="audit_dist")
        by = "label_name" if (df["label"] >= 0).any() else "target_name"
        chart(class_breakdown(df, metric, by=by), key="audit_classes")
        _worst(df, folder, metric)
    _failures(df)


def _summary(df: pd.DataFrame, folder: Optional[Path]) -> None:
    manifest = read_manifest(folder) if folder is not None else {}
    images = df["path"].nunique()
    model = ", ".join(v for v in pd.unique(df["model"]) if v) or manifest.get("model", "?")
    layer = ", ".join(v for v in pd.unique(df["layer"]) if v) or manifest.get("layer", "?")
    st.markdown(f"**{images} images** · model **{model}** · layer `{layer}` · "
                f"{(df['status'] == 'failed').sum()} failed rows")
    summary = pd.DataFrame(method_summary(df))
    st.dataframe(summary.rename(columns={"pointing_acc": "pointing hit rate", "pointing_n": "pointing n"}),
                 hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format="%.3f")
                                for c in ("deletion_auc", "insertion_auc", "pointing hit rate", "energy_pointing",
                                          "seconds")})
    if summary["pointing_n"].sum() > 0:
        chart(plots.bar_chart(summary["method"], summary["pointing_acc"].fillna(0.0),
                              title="Pointing game hit rate", fmt=".1%", height=60 + 40 * len(summary)),
              key="audit_pointing")


def _worst(df: pd.DataFrame, folder: Optional[Path], metric: str) -> None:
    methods = list(pd.unique(df["method"]))
    col1, col2 = st.columns([3, 1])
    method = col1.selectbox("Worst images of method", methods, key="audit_worst_method")
    k = col2.number_input("How many", 1, 32, 8, key="audit_worst_k")
    rows = worst_rows(df, method, metric, int(k))
    if rows.empty:
        st.caption(f"No {metric} values for {method}.")
        return
    panels = []
    for _, row in rows.iterrows():
        title = f"{Path(row['path']).name}<br>{metric} {row[metric]:.3f} · {row['target_name']}"
        rgb = _panel(row, folder)
        if rgb is not None:
            panels.append((title, rgb, None))
    if panels:
        chart(plots.image_grid(panels, cols=4, height_per_row=220), key="audit_worst")
    else:
        st.caption("The images of these rows are not readable from here.")
    st.dataframe(rows[["path", "target_name", "prediction_name", "score", "deletion_auc", "insertion_auc",
                       "pointing_hit", "energy_pointing"]], hide_index=True, width="stretch")


def _panel(row: pd.Series, folder: Optional[Path]) -> Optional[np.ndarray]:
    """The image as the model saw it, with the saved map overlaid when there is one."""
    heat = None
    if folder is not None and row.get("map_path"):
        try:
            heat = np.load(folder / row["map_path"]).astype(np.float32)
        except (OSError, ValueError):
            heat = None
    try:
        image = load_image(row["path"])
    except CnnvizError:
        return None
    side = heat.shape[-1] if heat is not None else 224
    rgb = model_view(image, side, _resize_side(row["model"], side))
    if heat is None:
        return rgb
    if heat.ndim == 3:  # gradient family: max |g| over channels
        heat = np.abs(heat).max(axis=0)
    return plots.overlay(rgb, heat, "Jet", 0.5)


def _resize_side(model: str, side: int) -> int:
    try:
        from cnnviz_core.models import get_spec

        spec = get_spec(model)
        return int(spec.resize_size) if spec.input_size == side else side
    except (CnnvizError, KeyError, ValueError):
        return side


def _failures(df: pd.DataFrame) -> None:
    failed = df[df["status"] == "failed"]
    if failed.empty:
        return
    with st.expander(f"Failed rows ({len(failed)})"):
        st.dataframe(failed[["path", "method", "error"]], hide_index=True, width="stretch")
