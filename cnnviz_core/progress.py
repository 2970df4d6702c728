"""Progress reporting and cancellation for long work (Score-CAM, occlusion, Deep Dream, style
transfer, activation maximization, metrics, audits).

Long functions take ``progress: ProgressFn | None`` and ``cancel: CancelToken | None``. They call
``report(progress, ...)`` every step (cheap) and ``cancel.check()`` between steps, which raises
:class:`~cnnviz_core.errors.Cancelled`. The app passes a callback that updates ``st.progress``; the
CLI passes :func:`stderr_progress`.
"""
from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .errors import Cancelled


@dataclass
class Progress:
    """One progress report. ``preview`` is an optional ``(H, W, 3)`` uint8 image of the current result."""

    step: int
    total: int
    message: str = ""
    losses: dict[str, float] = field(default_factory=dict)
    preview: Optional[Any] = None

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / self.total) if self.total else 0.0


ProgressFn = Callable[[Progress], None]


class CancelToken:
    """A thread-safe cancel flag: ``cancel()`` from anywhere, ``check()`` in the worker loop."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled("stopped by the user")


def check_cancel(cancel: Optional[CancelToken]) -> None:
    if cancel is not None:
        cancel.check()


def report(progress: Optional[ProgressFn], step: int, total: int, message: str = "", **kwargs: Any) -> None:
    if progress is not None:
        progress(Progress(step, total, message, **kwargs))


def stderr_progress(prefix: str = "") -> ProgressFn:
    """A callback printing ``prefix step/total message losses`` on one updating stderr line."""

    def show(p: Progress) -> None:
        losses = " ".join(f"{k}={v:.4g}" for k, v in p.losses.items())
        end = "\n" if p.step >= p.total else ""
        sys.stderr.write(f"\r{prefix}{p.step}/{p.total} {p.message} {losses}".rstrip() + end)
        sys.stderr.flush()

    return show
