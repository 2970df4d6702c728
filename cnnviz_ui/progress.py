"""Long work with a progress bar, a live preview, a queue position and a Stop button.

Long work goes through the process-wide :class:`~cnnviz_core.jobs.JobPool` (``get_job_pool``): at
most ``$CNNVIZ_LONG_JOBS`` run at once, in arrival order, with a thread budget of their own, so one
visitor's Deep Dream never makes another visitor's short request wait. The page's script thread
submits the work and follows it: while queued it shows how many jobs are ahead, while running it
updates ``st.progress`` (and optionally a preview image / loss chart) from the job's last report.
Clicking *Stop* sets the run's :class:`~cnnviz_core.progress.CancelToken` (a queued job is dropped
at once, a running one raises :class:`~cnnviz_core.errors.Cancelled` at its next step); Streamlit
also interrupts the following script at its next UI update to process the click, which cancels the
job too. What was reported so far (last preview, loss history) is kept in ``st.session_state`` and
shown as a partial result.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Optional

import numpy as np
import streamlit as st

from cnnviz_core import CnnvizError
from cnnviz_core.jobs import JobPool
from cnnviz_core.progress import CancelToken, Progress

from .errors import error_message
from .state import session_owner

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


@st.cache_resource(show_spinner=False)
def get_job_pool() -> JobPool:
    """The process-wide pool of long jobs (shared by every session)."""
    return JobPool()


def run_task(key: str, params: Hashable, work: Work, *, live: Optional[Renderer] = None) -> TaskState:
    """Run ``work(progress, cancel)`` through the long-job pool and follow it here: queue position,
    progress bar, and ``live(state, slot)`` drawing the preview into an ``st.empty`` slot at most
    every 0.25 s. Returns the final :class:`TaskState`."""
    state = TaskState(status="running", params=params)
    st.session_state[f"task:{key}"] = state
    bar = st.progress(0.0, text="Starting…")
    slot = st.empty() if live else None
    drawn_step = -1

    def on_progress(p: Progress) -> None:  # runs in the pool's worker thread: no st calls here
        state.step, state.total, state.message = p.step, p.total, p.message
        for name, value in p.losses.items():
            state.losses.setdefault(name, []).append(float(value))
        if p.preview is not None:
            state.preview = np.asarray(p.preview)
        state.token.check()

    pool = get_job_pool()
    try:
        job = pool.submit(session_owner(), key, lambda progress, cancel: work(on_progress, cancel))
    except CnnvizError as exc:
        state.status, state.error = "failed", error_message(exc)
        bar.empty()
        return state
    state.token = job.token
    try:
        while not job.wait(_UPDATE_EVERY_S):
            ahead = pool.ahead(job)
            if job.status == "queued":
                bar.progress(0.0, text=f"Waiting for a free worker: {ahead} job{'s' if ahead != 1 else ''} "
                                       "ahead of you (Stop leaves the queue)")
            elif state.total:
                bar.progress(min(state.step / state.total, 1.0),
                             text=f"{state.message or 'Working'} — step {state.step}/{state.total}")
                if live is not None and slot is not None and state.step != drawn_step:
                    drawn_step = state.step
                    live(state, slot)
    except BaseException:  # Streamlit stopped this run (Stop, a click elsewhere): stop the job, keep the partial result
        pool.cancel(job)
        if state.status == "running":
            state.status = "stopped"
        raise
    if job.status == "done":
        state.result, state.status = job.result, "done"
        bar.progress(1.0, text="Done")
    elif job.status == "cancelled":
        state.status = "stopped"
    else:
        state.status, state.error = "failed", job.error or "the job failed"
        bar.empty()
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
