"""Streamlit glue shared by the dashboard's pages: engine, sidebar, errors, progress, layout.

Pages import this package, :mod:`cnnviz_core` and plotly/streamlit only (never torch): every
computation lives in the engine.
"""
from .errors import error_message, guard, show_error
from .layout import chart, download_buttons, page_header
from .progress import run_controls, run_task, show_status, task_state
from .sidebar import app_frame, page_selection, render_sidebar
from .state import Selection, cached, get_engine, page_state, require_model, selection

__all__ = [
    "app_frame", "page_selection", "Selection", "cached", "chart", "download_buttons", "error_message", "get_engine", "guard", "page_header",
    "page_state", "render_sidebar", "require_model", "run_controls", "run_task", "selection", "show_error",
    "show_status", "task_state",
]
