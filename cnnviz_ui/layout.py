"""Small layout helpers that keep every page consistent (header, charts, downloads)."""
from __future__ import annotations

from typing import Callable, Optional, Union

import plotly.graph_objects as go
import streamlit as st

_PLOTLY_CONFIG = {"displaylogo": False, "modeBarButtonsToRemove": ["lasso2d", "select2d"]}


def page_header(title: str, icon: str, intro: str) -> None:
    """Title with a material icon and a one-paragraph introduction."""
    st.header(f"{icon} {title}", divider="gray")
    st.markdown(intro)


def chart(fig: go.Figure, key: Optional[str] = None) -> None:
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
