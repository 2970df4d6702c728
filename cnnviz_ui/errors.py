"""Turn errors into one-line ``st.error`` messages instead of tracebacks.

``CnnvizError`` messages are written for users and shown as they are. Any other exception is a bug:
it is logged with its traceback on the server and shown as one line naming the exception type.
Streamlit's own control-flow exceptions (rerun/stop) derive from ``BaseException`` and pass through.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator, Optional

import streamlit as st

from cnnviz_core import Cancelled, CnnvizError
from cnnviz_core.errors import one_line

LOG = logging.getLogger("cnnviz_ui")


def error_message(exc: BaseException) -> str:
    """The one-line message shown for ``exc``."""
    if isinstance(exc, CnnvizError):
        return one_line(str(exc) or type(exc).__name__)
    return one_line(f"Unexpected internal error ({type(exc).__name__}: {exc}); details are in the server log.")


def show_error(exc: BaseException, prefix: Optional[str] = None) -> None:
    """Show ``exc`` as one ``st.error`` line (logging the traceback when it is not a CnnvizError)."""
    if not isinstance(exc, CnnvizError):
        LOG.exception("unexpected error in the dashboard", exc_info=exc)
    message = error_message(exc)
    st.error(f"{prefix}: {message}" if prefix else message, icon=":material/error:")


@contextmanager
def guard(prefix: Optional[str] = None) -> Iterator[None]:
    """``with guard("Grad-CAM"):`` - any exception inside becomes a one-line ``st.error``;
    ``Cancelled`` becomes an ``st.warning``. Execution continues after the block."""
    try:
        yield
    except Cancelled:
        st.warning("Stopped before the end; showing what was finished.", icon=":material/stop_circle:")
    except Exception as exc:  # noqa: BLE001 - the point is to never show a traceback
        show_error(exc, prefix)
