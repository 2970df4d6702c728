"""The dashboard's pages, in menu order: the one place that names them (used by ``dashboard.py``, by
every page's :func:`~cnnviz_ui.layout.page_header`, by the home page's cards and by the tests).

Each page file's name equals its ``url_path``, so a deep link resolves to the same page whether
Streamlit is in ``st.navigation`` mode or still in its legacy ``pages/`` mode (the first request
after the server starts, before any session ran ``dashboard.py``).

The menu is drawn by :func:`render_menu` (``st.page_link``s), not by Streamlit's own sidebar
navigation: ``client.showSidebarNavigation = false`` (``.streamlit/config.toml``) keeps Streamlit from
listing the raw ``pages/`` file names on the first visit, and it also hides ``st.navigation``'s menu.

This module imports Streamlit only, so the entrypoint can draw the frame before the engine (torch)
is imported.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import streamlit as st

#: Session flag: this session was sent once from a page script run on its own to ``dashboard.py``.
REDIRECTED_KEY = "_cnnviz_redirected_to_navigation"


@dataclass(frozen=True)
class PageInfo:
    """One page of the dashboard: ``pages/<stem>.py`` served at ``/<stem>``."""

    stem: str
    section: str
    title: str
    icon: str  # a Material Symbols name
    summary: str  # one line for the home page's card

    @property
    def path(self) -> str:
        return f"pages/{self.stem}.py"

    @property
    def material_icon(self) -> str:
        return f":material/{self.icon}:"


#: Every page in menu order; the first is the default (``/``).
PAGES: tuple[PageInfo, ...] = (
    PageInfo("home", "", "Home", "home",
             "What cnnviz is for and where to go."),
    PageInfo("basics", "Foundations", "CNN basics", "school",
             "Follow one image through convolution, ReLU, pooling and the classifier."),
    PageInfo("architectures", "Foundations", "Architecture evolution", "timeline",
             "AlexNet to ResNet: depth, parameters, accuracy and first-layer kernels compared."),
    PageInfo("filters", "Inside the network", "Filters & feature maps", "grid_view",
             "What each filter looks for, where the image contains it, and the input that excites it most."),
    PageInfo("backprop", "Inside the network", "Backprop to image", "gradient",
             "Which pixels move the class score: saliency, deconvnet and guided backprop."),
    PageInfo("deep-dream", "Inside the network", "Deep Dream", "cloud",
             "Run the network backwards and paint in what a layer faintly sees."),
    PageInfo("style-transfer", "Inside the network", "Style transfer", "palette",
             "The content of one image in the style of another, from VGG-19's features."),
    PageInfo("cam", "Explaining decisions", "CAM & Grad-CAM", "local_fire_department",
             "Where the model found evidence for its decision: every CAM method side by side, with scores."),
    PageInfo("applications", "Explaining decisions", "Applications", "build",
             "Catch a model that learned a shortcut, sanity-check explanations, score them on ground truth."),
)
HOME = PAGES[0]


def page_info(stem: str) -> PageInfo:
    """The page whose file is ``pages/<stem>.py``."""
    for info in PAGES:
        if info.stem == stem:
            return info
    raise KeyError(f"no page {stem!r}; pages: {', '.join(p.stem for p in PAGES)}")


def page_for_file(path: Optional[str]) -> Optional[PageInfo]:
    """The page whose script is ``path`` (a page file's ``__file__``), or None."""
    if not path:
        return None
    p = Path(path)
    if p.parent.name != "pages":
        return None
    return next((info for info in PAGES if info.stem == p.stem), None)


def navigation_pages() -> dict[str, list]:
    """``{section: [st.Page, ...]}`` for ``st.navigation`` (the home page in an unnamed first section)."""
    sections: dict[str, list] = {}
    for i, info in enumerate(PAGES):
        page = st.Page(info.path, title=info.title, icon=info.material_icon, url_path=info.stem, default=i == 0)
        sections.setdefault(info.section, []).append(page)
    return sections


def render_menu(pages: dict[str, list]) -> None:
    """The sidebar menu: one ``st.page_link`` per page of ``pages`` (from :func:`navigation_pages`, after
    ``st.navigation`` registered them), under its section's name; the current page is highlighted."""
    with st.sidebar.container(key="cnnviz_menu"):
        for section, items in pages.items():
            if section:
                st.caption(section)
            for page in items:
                st.page_link(page, width="stretch")
        st.divider()


def enter_through_dashboard() -> None:
    """First statement of every page script, before it imports the engine: a page run without the
    entrypoint (a deep link as the server's first request, served in Streamlit's legacy ``pages/``
    mode) registers the navigation once per session and reruns through ``dashboard.py``, which draws
    the frame and its loading state at once instead of leaving the page blank while torch imports.
    Inside the entrypoint (``cnnviz_ui.sidebar.app_frame`` active) it does nothing; if the redirect
    was already tried, the page goes on and :func:`cnnviz_ui.sidebar.page_selection` draws the
    sidebar itself."""
    frame = getattr(sys.modules.get("cnnviz_ui.sidebar"), "_FRAME", None)
    if getattr(frame, "active", False) or st.session_state.get(REDIRECTED_KEY):
        return
    st.session_state[REDIRECTED_KEY] = True
    st.navigation(navigation_pages(), position="sidebar", expanded=True)
    st.rerun()
