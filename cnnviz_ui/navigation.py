"""The dashboard's pages, in menu order, for ``st.navigation`` (used by ``dashboard.py``).

Each page file's name equals its ``url_path``, so a deep link resolves to the same page whether
Streamlit is in ``st.navigation`` mode or still in its legacy ``pages/`` mode (the first request
after the server starts, before any session ran ``dashboard.py``).
"""
from __future__ import annotations

import streamlit as st

#: (section, file stem = url path, title, material icon); the first page is the default.
PAGES: tuple[tuple[str, str, str, str], ...] = (
    ("Foundations", "basics", "CNN basics", "school"),
    ("Foundations", "architectures", "Architecture evolution", "timeline"),
    ("Inside the network", "filters", "Filters & feature maps", "grid_view"),
    ("Inside the network", "backprop", "Backprop to image", "gradient"),
    ("Inside the network", "deep-dream", "Deep Dream", "cloud"),
    ("Inside the network", "style-transfer", "Style transfer", "palette"),
    ("Explaining decisions", "cam", "CAM & Grad-CAM", "local_fire_department"),
    ("Explaining decisions", "applications", "Applications", "build"),
)


def navigation_pages() -> dict[str, list]:
    """``{section: [st.Page, ...]}`` for ``st.navigation``."""
    sections: dict[str, list] = {}
    for i, (section, stem, title, icon) in enumerate(PAGES):
        page = st.Page(f"pages/{stem}.py", title=title, icon=f":material/{icon}:", url_path=stem, default=i == 0)
        sections.setdefault(section, []).append(page)
    return sections
