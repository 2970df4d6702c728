"""Long work in the script thread with a progress bar, a live preview and a Stop button.

How stopping works: the work runs in the page's script thread and reports through a progress
callback that updates ``st.progress`` (and optionally a preview image / loss chart). Clicking
*Stop* runs its ``on_click`` callback, which sets the run's :class:`~cnnviz_core.progress.CancelToken`;
the engine raises :class:`~cnnviz_core.errors.Cancelled` at its next ``check()``. Streamlit also
interrupts the running script at its next UI update to process the click (fast reruns), so the
work stops within one step either way. What was reported so far (last preview, loss history) is
kept in ``st.session_state`` and shown as a partial result.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Optional

import numpy as np
import streamlit as st

from cnnviz_core import Cancelled, CnnvizError
from cnnviz_core.progress import CancelToken, Progress

from .errors import LOG, error_message

Work = Callable[[Callable[[Progress], None], CancelToken], Any]
Renderer = Callable[["TaskState", Any], None]
_UPDATE_EVERY_S = 0.25


@dataclass
class TaskState:
    """What a page's long task has produced: ``status`` is idle, running, done, stopped or failed."""

    status: str = "idle"
    params: Optional[Hashable] = None
    result: Any = None
    step: int = 0
    total: int = 0
    message: str = ""
    preview: Optional[np.ndarray] = None
    losses: dict[str, list[float]] = field(default_factory=dict)
    error: Optional[str] = None
    token: CancelToken = field(default_factory=CancelToken)


def task_state(key: str) -> TaskState:
    state = st.session_state.get(f"task:{key}")
    if not isinstance(state, TaskState):
        state = TaskState()
        st.session_state[f"task:{key}"] = state
    return state


def _stop(key: str) -> None:
    state = task_state(key)
    state.token.cancel()
    if state.status == "running":
        state.status = "stopped"


def run_controls(key: str, label: str, *, help: Optional[str] = None) -> bool:
    """A primary *label* button and a *Stop* button side by side; True when *label* was clicked."""
    left, right, _ = st.columns([2, 1, 3])
    clicked = left.button(label, type="primary", key=f"{key}_run", help=help, icon=":material/play_arrow:",
                          width="stretch")
    right.button("Stop", key=f"{key}_stop", on_click=_stop, args=(key,), icon=":material/stop:", width="stretch")
    return clicked


def run_task(key: str, params: Hashable, work: Work, *, live: Optional[Renderer] = None) -> TaskState:
    """Run ``work(progress, cancel)`` now, showing a progress bar; ``live(state, slot)`` draws the
    preview into an ``st.empty`` slot at most every 0.25 s. Returns the final :class:`TaskState`."""
    state = TaskState(status="running", params=params)
    st.session_state[f"task:{key}"] = state
    bar = st.progress(0.0, text="Starting…")
    slot = st.empty() if live else None
    last = [0.0]

    def on_progress(p: Progress) -> None:
        state.step, state.total, state.message = p.step, p.total, p.message
        for name, value in p.losses.items():
            state.losses.setdefault(name, []).append(float(value))
        if p.preview is not None:
            state.preview = np.asarray(p.preview)
        now = time.monotonic()
        if now - last[0] >= _UPDATE_EVERY_S or p.step >= p.total:
            last[0] = now
            bar.progress(p.fraction, text=f"{p.message or 'Working'} — step {p.step}/{p.total}")
            if live is not None and slot is not None:
                live(state, slot)
        state.token.check()

    try:
        state.result = work(on_progress, state.token)
        state.status = "done"
        bar.progress(1.0, text="Done")
    except Cancelled:
        state.status = "stopped"
    except Exception as exc:  # noqa: BLE001 - shown as one line by show_status, never a traceback
        if not isinstance(exc, CnnvizError):
            LOG.exception("long task %s failed", key, exc_info=exc)
        state.status, state.error = "failed", error_message(exc)
        bar.empty()
    except BaseException:  # Streamlit stopped this run (a click elsewhere): keep the partial result
        if state.status == "running":
            state.status = "stopped"
        raise
    if slot is not None:
        slot.empty()
    return state


def show_status(state: TaskState, what: str) -> None:
    """One line about a stopped or failed task (nothing while idle or after success)."""
    if state.status == "stopped":
        where = f"at step {state.step}/{state.total}" if state.total else "before its first step"
        shown = "; showing the last preview" if state.preview is not None else ""
        st.warning(f"{what} stopped {where}{shown}.", icon=":material/stop_circle:")
    elif state.status == "failed" and state.error:
        st.error(state.error, icon=":material/error:")


def progress_callback(text: str) -> tuple[Callable[[float, str], None], Any]:
    """A ``progress(fraction, text)`` callback (model downloads) drawing an ``st.progress`` bar."""
    bar = st.progress(0.0, text=text)

    def update(fraction: float, detail: str) -> None:
        bar.progress(min(max(float(fraction), 0.0), 1.0), text=f"{text} {detail}")

    return update, bar
