"""cnnviz — how convolutional networks see. Entrypoint: ``streamlit run dashboard.py``.

This file is the frame shared by every page: page config, the navigation (pages live in ``pages/``,
listed in :mod:`cnnviz_ui.navigation` and driven by ``st.navigation``), and the sidebar (model,
image, device) whose choices persist across pages. All computation lives in ``cnnviz_core``; the
Streamlit glue in ``cnnviz_ui``.
"""
from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="cnnviz — how CNNs see", page_icon=":material/visibility:", layout="wide")

from cnnviz_ui import app_frame, render_sidebar  # noqa: E402 - set_page_config must come first
from cnnviz_ui.navigation import navigation_pages  # noqa: E402

page = st.navigation(navigation_pages(), position="sidebar", expanded=True)
render_sidebar()
with app_frame():
    page.run()
