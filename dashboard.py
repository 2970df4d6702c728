"""cnnviz — how convolutional networks see. Entrypoint: ``streamlit run dashboard.py``.

This file is the frame shared by every page: page config, the navigation (pages live in ``pages/``,
listed in :mod:`cnnviz_ui.navigation` and driven by ``st.navigation``; the menu is ours, see
``render_menu``), and the sidebar (model, image, device) whose choices persist across pages. All
computation lives in ``cnnviz_core``; the Streamlit glue in ``cnnviz_ui``.

First paint: the menu and a loading state are drawn before the engine is imported (torch and
torchvision take seconds to import on the first run after a start), then the sidebar loads the
model and the page runs.
"""
from __future__ import annotations

import sys
import time

import streamlit as st

st.set_page_config(page_title="cnnviz — how CNNs see", page_icon=":material/visibility:", layout="wide")

from cnnviz_ui.navigation import navigation_pages, render_menu  # noqa: E402 - Streamlit only, no torch


_OOM_TRIES = "_cnnviz_oom_tries"
_OOM_RETRIES = 5  # redraws after a page ran out of memory, 2 s apart


def _engine_imported() -> bool:
    """True once this process has fully imported the dashboard's glue (and with it torch)."""
    return getattr(sys.modules.get("cnnviz_ui.sidebar"), "render_sidebar", None) is not None


def _start():
    """Import the engine's glue and draw the sidebar (loads the selected model); ``app_frame``."""
    from cnnviz_ui import app_frame, render_sidebar

    render_sidebar()
    return app_frame


pages = navigation_pages()
page = st.navigation(pages, position="hidden")
render_menu(pages)
loading = st.empty()
if _engine_imported():
    app_frame = _start()
else:  # the first run after a start: say what is happening while torch imports and the model loads
    with loading.container():
        st.header(f"{page.icon} {page.title}", divider="gray")
        st.markdown(":material/hourglass_top: **Starting the engine…** PyTorch and the selected model load once "
                    "after a server start; this takes a few seconds.")
        st.skeleton(height=96)
        st.skeleton(height=320)
        app_frame = _start()
loading.empty()
body = st.empty()
try:
    with body.container(), app_frame():
        page.run()
except MemoryError:  # e.g. a long job holds the memory: one line instead of the page, the app keeps running
    body.empty()
    tries = st.session_state.get(_OOM_TRIES, 0)
    st.error("The server ran out of memory while drawing this page (a long job may be holding it); "
             + ("trying again in a moment." if tries < _OOM_RETRIES else "change any setting to draw it again."),
             icon=":material/error:")
    if tries < _OOM_RETRIES:  # the memory usually comes back when the job fails or ends
        st.session_state[_OOM_TRIES] = tries + 1
        time.sleep(2)
        st.rerun()
else:
    st.session_state.pop(_OOM_TRIES, None)
