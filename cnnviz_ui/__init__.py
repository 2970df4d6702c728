"""Streamlit glue shared by the dashboard's pages: engine, sidebar, errors, progress, layout.

Pages import this package, :mod:`cnnviz_core` and plotly/streamlit only (never torch): every
computation lives in the engine.

The names below are imported on first use (PEP 562), so that ``import cnnviz_ui.navigation`` costs
Streamlit only: ``dashboard.py`` draws the frame and a loading state before the engine (torch) loads.
``from cnnviz_ui import chart`` works as before.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "error_message": "errors", "guard": "errors", "show_error": "errors",
    "chart": "layout", "download_buttons": "layout", "page_header": "layout",
    "run_controls": "progress", "run_task": "progress", "show_status": "progress", "task_state": "progress",
    "app_frame": "sidebar", "page_selection": "sidebar", "render_sidebar": "sidebar",
    "Selection": "state", "cached": "state", "get_engine": "state", "page_state": "state",
    "require_model": "state", "selection": "state",
}


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = sorted(_EXPORTS)
