"""The sidebar's server details (shared model memory against its budget, the long-job queue) and
the per-session budget of a visitor's own model."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cnnviz_core import load_model
from cnnviz_core.errors import ParameterError

REPO = Path(__file__).resolve().parents[2]


def test_sidebar_states_model_memory_and_long_jobs(monkeypatch):
    import streamlit as st

    st.cache_resource.clear()
    monkeypatch.setenv("CNNVIZ_MODEL_CACHE_MB", "300")
    at = AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=180).run()
    assert not at.exception
    captions = [c.value for c in at.sidebar.caption]
    shared = next(c for c in captions if c.startswith("Shared models:"))
    assert "of 300 MB" in shared and "1 loaded" in shared
    assert any(c.startswith("· shapes-cnn") for c in captions)
    assert any("Long jobs: 0 running, 0 waiting, 1 at a time" in c for c in captions)
    st.cache_resource.clear()


def test_a_model_over_the_session_budget_is_refused_in_one_line(monkeypatch):
    from cnnviz_ui.user_model import check_session_budget

    handle = load_model("resnet18", weights=None)  # 44.7 MB, about 90 MB with its folded twin
    monkeypatch.setenv("CNNVIZ_SESSION_MODEL_MB", "120")
    check_session_budget(handle)
    monkeypatch.setenv("CNNVIZ_SESSION_MODEL_MB", "60")
    with pytest.raises(ParameterError, match=r"needs about 89 MB .* one session may hold 60 MB") as exc:
        check_session_budget(handle)
    assert "\n" not in str(exc.value)


def test_results_of_uploads_are_keyed_by_session(monkeypatch):
    import streamlit as st

    from cnnviz_ui import state

    seen = []
    monkeypatch.setattr(state, "get_engine", lambda: type("E", (), {"results": type("R", (), {
        "get_or_compute": staticmethod(lambda key, compute: seen.append(key) or compute())})()})())
    fake = {}
    monkeypatch.setattr(st, "session_state", fake)
    image = state.cached_sample(state.DEFAULT_SAMPLE)
    for uploaded in (False, True):
        fake[state._SELECTION_KEY] = state.Selection("m", None, "cpu", image, "x", "d",
                                                     images=("an upload",) if uploaded else ())
        state.cached(("tag", "model", "digest"), lambda: 1)
    assert seen[0] == ("tag", "model", "digest")
    assert seen[1][:4] == ("tag", "model", "digest", "session") and seen[1][4] == fake["_cnnviz_session_id"]
