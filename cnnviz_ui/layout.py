"""Small layout helpers that keep every page consistent (header, charts, downloads)."""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Callable, Optional, Union

import streamlit as st

from .navigation import PageInfo, page_for_file, page_info

if TYPE_CHECKING:
    import plotly.graph_objects as go

_PLOTLY_CONFIG = {"displaylogo": False, "modeBarButtonsToRemove": ["lasso2d", "select2d"]}


def page_header(intro: str, *, page: Optional[str] = None) -> PageInfo:
    """The page's title and icon (from :data:`cnnviz_ui.navigation.PAGES`, the one place that names the
    pages) and a one-paragraph introduction. ``page`` is the page's file stem; by default the page
    whose script calls this. Returns the page's entry."""
    if page is not None:
        info = page_info(page)
    else:
        info = page_for_file(sys._getframe(1).f_globals.get("__file__"))
        if info is None:
            raise ValueError("page_header() is called from a page script in pages/, or with page=STEM")
    st.header(f"{info.material_icon} {info.title}", divider="gray")
    st.markdown(intro)
    return info


def chart(fig: "go.Figure", key: Optional[str] = None) -> None:
    """``st.plotly_chart`` with the app's defaults (full width, no Plotly logo)."""
    st.plotly_chart(fig, width="stretch", config=_PLOTLY_CONFIG, key=key)


DownloadData = Union[bytes, str, Callable[[], Union[bytes, str]]]


def download_buttons(items: list[tuple[str, DownloadData, str, str]], key: str) -> None:
    """``(label, data, file_name, mime)`` download buttons on one row; they never rerun the page.
    ``data`` may be a callable: it is then only computed when the user clicks (on another thread)."""
    cols = st.columns(len(items))
    for i, (col, (label, data, name, mime)) in enumerate(zip(cols, items)):
        col.download_button(label, data=data, file_name=name, mime=mime, on_click="ignore",
                            key=f"{key}_dl{i}", icon=":material/download:", width="stretch")
