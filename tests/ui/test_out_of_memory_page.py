"""A page run that runs out of memory (a long job holding it) shows one line instead of Streamlit's
redacted exception, then draws itself again once the memory is back; the app keeps running."""
from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

import cnnviz_ui
from cnnviz_ui import layout

REPO = Path(__file__).resolve().parents[2]


def test_a_page_out_of_memory_is_one_line_then_redrawn(monkeypatch):
    real, calls = layout.page_header, []

    def page_header(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise MemoryError  # the first draw finds no memory
        return real(*args, page="home", **kwargs)  # (its caller frame is this wrapper now)

    monkeypatch.setattr(cnnviz_ui, "page_header", page_header, raising=False)
    monkeypatch.setattr(layout, "page_header", page_header)
    at = AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=180).run()
    assert not at.exception, [(e.value, e.stack_trace) for e in at.exception]
    assert len(calls) == 2  # the failed draw, then the redraw
    assert not at.error, [e.value for e in at.error]  # the redraw replaced the line
    assert at.header and "Home" in at.header[0].value
    assert "_cnnviz_oom_tries" not in at.session_state
