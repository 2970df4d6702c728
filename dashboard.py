"""cnnviz — how convolutional networks see. Entrypoint: ``streamlit run dashboard.py``.

This file is the frame shared by every page: page config, the navigation (pages live in ``pages/``,
listed here with ``st.navigation``), and the sidebar (model, image, device) whose choices persist
across pages. All computation lives in ``cnnviz_core``; the Streamlit glue in ``cnnviz_ui``.
"""
from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="cnnviz — how CNNs see", page_icon=":material/visibility:", layout="wide")

from cnnviz_ui import app_frame, render_sidebar  # noqa: E402 - set_page_config must come first

PAGES = {
    "Foundations": [
        st.Page("pages/basics.py", title="CNN basics", icon=":material/school:", url_path="basics", default=True),
        st.Page("pages/architectures.py", title="Architecture evolution", icon=":material/timeline:",
                url_path="architectures"),
    ],
    "Inside the network": [
        st.Page("pages/filters.py", title="Filters & feature maps", icon=":material/grid_view:", url_path="filters"),
        st.Page("pages/backprop.py", title="Backprop to image", icon=":material/gradient:", url_path="backprop"),
        st.Page("pages/deep_dream.py", title="Deep Dream", icon=":material/cloud:", url_path="deep-dream"),
        st.Page("pages/style_transfer.py", title="Style transfer", icon=":material/palette:",
                url_path="style-transfer"),
    ],
    "Explaining decisions": [
        st.Page("pages/cam.py", title="CAM & Grad-CAM", icon=":material/local_fire_department:", url_path="cam"),
        st.Page("pages/applications.py", title="Applications", icon=":material/build:", url_path="applications"),
    ],
}

page = st.navigation(PAGES, position="sidebar", expanded=True)
render_sidebar()
with app_frame():
    page.run()
