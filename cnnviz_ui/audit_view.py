"""Audit results on the Applications page: which explanation method is most faithful, where it fails.

``render_audit_results(source)`` takes a results folder or Parquet file path (from
``python -m cnnviz_core audit``) or an uploaded Parquet file (``st.file_uploader``). It shows the
per-method summary, the distribution of each metric per method, a per-class breakdown, the worst
images of a method with their saved maps (``--save-maps``; the image alone otherwise) and the
failed rows. No torch here: reading is pyarrow/pandas, figures are Plotly.

What the server opens for a visitor (:mod:`cnnviz_core.paths`): a results path only under
:func:`~cnnviz_core.paths.data_roots` (``CNNVIZ_DATA_ROOT``); in such a folder, a row's ``map_path``
only inside the folder, and its image only under the data roots (relative image paths are read from
the server's working folder, where ``python -m cnnviz_core audit`` writes them from). An uploaded
results file never makes the server open a file: it shows only what it contains (rows and metrics;
our format embeds no images or maps, so its panels say so in one line).
"""
from __future__ import annotations

import hashlib
import html
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from cnnviz_core import plots
from cnnviz_core.audit.figures import (METRIC_COLUMNS, available_metrics, class_breakdown, distribution_figure,
                                       model_view, worst_rows)
from cnnviz_core.audit.results import MAX_RESULTS_BYTES, method_summary, read_manifest, read_results
from cnnviz_core.errors import CnnvizError, ParameterError
from cnnviz_core.images import load_image
from cnnviz_core.paths import DATA_ROOT_ENV, confine, data_roots, is_within, safe_join

from .errors import show_error
from .layout import chart
from .widgets import table_download

Source = Union[str, Path, Any]  # a path, or an UploadedFile (file-like with getvalue())


UPLOAD_NO_IMAGES = ("Images not in the upload: only a results folder on the server (under the data roots) "
                    "can show images.")


@st.cache_data(show_spinner="Reading audit results…", max_entries=8)
def _load(path: str, stamp: str, roots: tuple[str, ...] = ()) -> pd.DataFrame:
    """A server results folder or file; ``stamp`` (part names and times) only keys the cache;
    ``roots``: the data roots a folder's parts must lie under."""
    return read_results(path, roots=[Path(r) for r in roots]).to_pandas()


def _load_upload(data: bytes) -> pd.DataFrame:
    """An uploaded results file, memoised in this session only (never in a cache other sessions share)."""
    memo = st.session_state.setdefault("_cnnviz_results_upload", {})
    digest = hashlib.sha256(data).hexdigest()
    if digest not in memo:
        memo.clear()
        memo[digest] = read_results(data).to_pandas()
    return memo[digest]


def _read(source: Source) -> tuple[pd.DataFrame, Optional[Path]]:
    """Results as a DataFrame and the results folder (for saved maps), or None for uploads.
    A server path must lie under the data roots (else one-line ``PathNotAllowedError``)."""
    if isinstance(source, (str, Path)):
        roots = data_roots()
        path = confine(source, roots, what="results path")
        parts = sorted(path.glob("part-*.parquet")) if path.is_dir() else [path]
        stamp = "|".join(f"{p.name}:{p.stat().st_mtime_ns}" for p in parts if p.exists())
        frame = _load(str(path), stamp, tuple(map(str, roots)))
        return frame, (path if path.is_dir() else path.parent)
    data = source.getvalue() if hasattr(source, "getvalue") else source.read(MAX_RESULTS_BYTES + 1)
    if not isinstance(data, bytes):
        raise ParameterError("the upload is not a file")
    return _load_upload(data), None


def _md(text: Any) -> str:
    """``text`` from a results file, inert in Markdown (no links, images, emphasis or HTML)."""
    return "".join(f"\\{ch}" if ch in "\\`*_{}[]()<>#+-.!|~:" else ch for ch in " ".join(str(text).split()))


def render_audit_results(path_or_uploaded_file: Source) -> None:
    """Render the audit dashboard for a results folder / Parquet file / uploaded file."""
    try:
        df, folder = _read(path_or_uploaded_file)
    except CnnvizError as exc:
        show_error(exc)
        return
    _render(df, folder, None, "audit")


def render_audit_frame(df: pd.DataFrame, images: Mapping[str, Image.Image], key: str = "audit_set") -> None:
    """Render the audit dashboard for results computed in this session (rows' ``path`` = a key of
    ``images``, the session's own uploaded images: nothing is read from the server's disk)."""
    _render(df, None, images, key)


def _render(df: pd.DataFrame, folder: Optional[Path], images: Optional[Mapping[str, Image.Image]], key: str) -> None:
    if df.empty:
        st.info("This results table has no rows yet.")
        return
    _summary(df, folder, key)
    metrics = available_metrics(df)
    if not metrics:
        st.warning("No metric values in these results (every row failed?).")
    else:
        metric = st.segmented_control("Metric", metrics, default=metrics[0], key=f"{key}_metric",
                                      format_func=lambda m: METRIC_COLUMNS[m][0].split(" (")[0])
        metric = metric or metrics[0]
        chart(distribution_figure(df, metric), key=f"{key}_dist")
        by = "label_name" if (df["label"] >= 0).any() else "target_name"
        chart(class_breakdown(df, metric, by=by), key=f"{key}_classes")
        _worst(df, folder, metric, images, key)
    _failures(df)


def _summary(df: pd.DataFrame, folder: Optional[Path], key: str = "audit") -> None:
    manifest = {}
    if folder is not None:
        try:  # _audit.json, or an older folder's audit.json; not one that leads out of the data roots
            manifest = read_manifest(folder, roots=data_roots())
        except (OSError, ValueError):
            manifest = {}
        manifest = manifest if isinstance(manifest, dict) else {}
    images = df["path"].nunique()
    model = ", ".join(str(v) for v in pd.unique(df["model"]) if v) or str(manifest.get("model", "?"))
    layer = ", ".join(str(v) for v in pd.unique(df["layer"]) if v) or str(manifest.get("layer", "?"))
    st.markdown(f"**{images} images** · model **{_md(model)}** · layer `{layer.replace('`', '')[:200]}` · "
                f"{(df['status'] == 'failed').sum()} failed rows")
    summary = pd.DataFrame(method_summary(df))
    st.dataframe(summary.rename(columns={"pointing_acc": "pointing hit rate", "pointing_n": "pointing n"}),
                 hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format="%.3f")
                                for c in ("deletion_auc", "insertion_auc", "pointing hit rate", "energy_pointing",
                                          "seconds")})
    table_download(summary.to_dict("records"), key="audit_summary_table", stem="audit-leaderboard")
    if summary["pointing_n"].sum() > 0:
        chart(plots.bar_chart(summary["method"], summary["pointing_acc"].fillna(0.0),
                              title="Pointing game hit rate", fmt=".1%", height=60 + 40 * len(summary)),
              key=f"{key}_pointing")


def _worst(df: pd.DataFrame, folder: Optional[Path], metric: str,
           images: Optional[Mapping[str, Image.Image]] = None, key: str = "audit") -> None:
    methods = list(pd.unique(df["method"]))
    col1, col2 = st.columns([3, 1])
    method = col1.selectbox("Worst images of method", methods, key=f"{key}_worst_method")
    k = col2.number_input("How many", 1, 32, 8, key=f"{key}_worst_k")
    rows = worst_rows(df, method, metric, int(k))
    if rows.empty:
        st.caption(f"No {metric} values for {_md(method)}.")
        return
    if images is not None:  # this session's own images, in memory
        panels = [(f"{html.escape(str(row['path']))[:60]}<br>{metric} {row[metric]:.3f} · "
                   f"{html.escape(str(row['target_name']))}",
                   model_view(images[row["path"]], 224, 256), None)
                  for _, row in rows.iterrows() if row["path"] in images]
        if panels:
            chart(plots.image_grid(panels, cols=4, height_per_row=220), key=f"{key}_worst")
    elif folder is None:  # an upload: never open a server file on its behalf
        st.info(UPLOAD_NO_IMAGES, icon=":material/image_not_supported:")
    else:
        roots = data_roots()
        panels, refused, led_out = [], 0, 0
        for _, row in rows.iterrows():
            name = html.escape(Path(str(row["path"])).name)
            title = f"{name}<br>{metric} {row[metric]:.3f} · {html.escape(str(row['target_name']))}"
            rgb, outside, bad_map = _panel(row, folder, roots)
            refused += outside
            led_out += bad_map
            if rgb is not None:
                panels.append((title, rgb, None))
        if panels:
            chart(plots.image_grid(panels, cols=4, height_per_row=220), key=f"{key}_worst")
        elif not refused:
            st.caption("The images of these rows are not readable from here.")
        if refused:
            st.warning(f"{refused} of {len(rows)} images are outside the data roots "
                       f"({', '.join(map(str, roots))}) and are not shown; the server reads only there "
                       f"(set {DATA_ROOT_ENV} to change them).", icon=":material/block:")
        if led_out:
            st.warning(f"{led_out} saved map path(s) lead out of the results folder and were not read.",
                       icon=":material/block:")
    shown = rows[["path", "target_name", "prediction_name", "score", "deletion_auc", "insertion_auc",
                  "pointing_hit", "energy_pointing"]]
    st.dataframe(shown, hide_index=True, width="stretch")
    table_download(shown.to_dict("records"), key="audit_worst_table", stem="audit-worst-rows")


def _panel(row: pd.Series, folder: Path, roots: Sequence[Path]) -> tuple[Optional[np.ndarray], bool, bool]:
    """``(rgb, image refused, map refused)`` for a row of a server results folder: the image as the
    model saw it with its saved map overlaid, the image alone, or the map alone (image outside the
    data roots). ``rgb`` is None when neither can be shown."""
    heat, bad_map = None, False
    if row.get("map_path"):
        try:
            map_file = safe_join(folder, str(row["map_path"]))
            if not is_within(map_file, roots):
                raise ParameterError("outside the data roots")
            heat = np.load(map_file, allow_pickle=False).astype(np.float32)
            if heat.ndim == 3:  # gradient family: max |g| over channels
                heat = np.abs(heat).max(axis=0)
            if heat.ndim != 2 or min(heat.shape) < 1:
                heat = None
        except ParameterError:
            heat, bad_map = None, True
        except (OSError, ValueError):
            heat = None
    try:
        image_file = confine(str(row["path"]), roots, what="image", base=Path.cwd())
    except ParameterError:
        return (None if heat is None else plots.apply_colormap(heat, "Jet")), True, bad_map
    try:
        image = load_image(image_file)
    except CnnvizError:
        return (None if heat is None else plots.apply_colormap(heat, "Jet")), False, bad_map
    side = heat.shape[-1] if heat is not None else 224
    rgb = model_view(image, side, _resize_side(row["model"], side))
    if heat is None:
        return rgb, False, bad_map
    return plots.overlay(rgb, heat, "Jet", 0.5), False, bad_map


def _resize_side(model: str, side: int) -> int:
    try:
        from cnnviz_core.models import get_architecture

        prep = get_architecture(model).preprocessing
        return int(prep.resize_size) if prep.input_size == side else side
    except (CnnvizError, KeyError, ValueError):
        return side


def _failures(df: pd.DataFrame) -> None:
    failed = df[df["status"] == "failed"]
    if failed.empty:
        return
    with st.expander(f"Failed rows ({len(failed)})"):
        st.dataframe(failed[["path", "method", "error"]], hide_index=True, width="stretch")
        table_download(failed[["path", "method", "error"]].to_dict("records"), key="audit_failed_table",
                       stem="audit-failed-rows")
