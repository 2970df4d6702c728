"""Fair use of one server: long jobs run in a bounded pool of worker threads, in arrival order.

A long job (exact Score-CAM, SmoothGrad / IG on a large model, Deep Dream, style transfer, an audit,
a top-activation search) is ``work(progress, cancel)``, as everywhere in the engine. :class:`JobPool`
runs at most ``workers`` of them at once (``$CNNVIZ_LONG_JOBS``, default 1); each worker thread
limits its own intra-op threads (``$CNNVIZ_LONG_JOB_THREADS``, default half the cores; OpenMP thread
counts are per thread) and runs at a lower scheduling priority (``$CNNVIZ_LONG_JOB_NICE``, default
10), so short requests, which never enter the pool, keep cores of their own and win a contended one. A queued job knows how many jobs are
ahead of it; cancelling a queued job removes it; one owner (a browser session) has at most one job
queued or running. A worker that dies during a job (any exception, ``BaseException`` included)
marks the job failed and is replaced, so the next job runs. So is a worker whose job failed with an
unexpected error (not a :class:`~cnnviz_core.errors.CnnvizError`): a library's per-thread state may be
broken after it, e.g. oneDNN's after an allocation failure, which fails every later convolution of
that thread with "could not create a primitive" (``tests/e2e/test_load.py``, out of memory).
"""
from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Optional

import torch

from .errors import Cancelled, CnnvizError, ParameterError, one_line
from .progress import CancelToken, Progress

log = logging.getLogger(__name__)
#: Memory that must be allocatable before a replacement worker thread is started (its stack and more).
_SPAWN_HEADROOM = 64 * 2**20
JobStatus = Literal["queued", "running", "done", "failed", "cancelled"]
Work = Callable[[Callable[[Progress], None], CancelToken], Any]


@dataclass(eq=False)
class Job:
    """One long job. ``progress`` is the last report of the work; ``error`` a one-line message."""

    id: int
    owner: str
    label: str
    work: Work = field(repr=False)
    status: JobStatus = "queued"
    progress: Optional[Progress] = None
    result: Any = field(default=None, repr=False)
    error: Optional[str] = None
    token: CancelToken = field(default_factory=CancelToken)
    submitted: float = field(default_factory=time.monotonic)
    started: Optional[float] = None
    finished: Optional[float] = None
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def finished_ok(self) -> bool:
        return self.status == "done"

    @property
    def active(self) -> bool:
        return self.status in ("queued", "running")

    @property
    def waited_s(self) -> float:
        return (self.started or time.monotonic()) - self.submitted

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until the job has ended; False on timeout."""
        return self._done.wait(timeout)


def _int_env(name: str, default: int, minimum: int = 1) -> int:
    text = os.environ.get(name, "").strip()
    try:
        value = int(text) if text else default
    except ValueError:
        raise ParameterError(f"{name} must be a whole number, got {text!r}") from None
    if value < minimum:
        raise ParameterError(f"{name} must be >= {minimum}, got {value}")
    return value


#: What allocation failures say: Python's, torch's CPU allocator's, CUDA's, and oneDNN's once it cannot
#: allocate its scratch space (seen in ``tests/e2e/test_load.py`` under a lowered address-space limit).
_OUT_OF_MEMORY = ("out of memory", "can't allocate memory", "could not create a primitive")


def failure_message(exc: BaseException) -> str:
    """The one line a job's owner sees: a :class:`CnnvizError`'s own message; an allocation failure
    says that the server ran out of memory (with the library's words after it); anything else is
    ``Type: message``."""
    if isinstance(exc, CnnvizError):
        return str(exc)
    detail = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, MemoryError) or any(s in str(exc).lower() for s in _OUT_OF_MEMORY):
        return f"the server ran out of memory during this job; try a smaller image or fewer steps ({detail})"
    return detail


def lower_priority(nice: int) -> bool:
    """Raise the calling thread's niceness by ``nice`` (Linux: per thread; threads it starts later,
    OpenMP's included, inherit it). Lowering one's own priority needs no privilege; where the OS
    has no per-thread niceness this does nothing and returns False."""
    if nice <= 0 or not hasattr(os, "setpriority") or not hasattr(threading, "get_native_id"):
        return False
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + nice)
    except OSError:
        return False
    return True


class JobPool:
    """At most ``workers`` long jobs at once, first come first served."""

    def __init__(self, workers: Optional[int] = None, threads_per_job: Optional[int] = None) -> None:
        self.workers = workers or _int_env("CNNVIZ_LONG_JOBS", 1)
        self.threads_per_job = threads_per_job or _int_env("CNNVIZ_LONG_JOB_THREADS",
                                                           max(1, (os.cpu_count() or 2) // 2))
        #: Scheduling niceness of the worker threads (``$CNNVIZ_LONG_JOB_NICE``, 0..19, default 10):
        #: where a long job and a short request want the same core, the short request gets it.
        self.nice = min(19, max(0, _int_env("CNNVIZ_LONG_JOB_NICE", 10, minimum=0)))
        self._queue: deque[Job] = deque()
        self._running: set[Job] = set()
        self._by_owner: dict[str, Job] = {}
        self._cond = threading.Condition()
        self._ids = itertools.count(1)
        self._closed = False
        self._threads: list[threading.Thread] = []
        #: What threads started later begin with (torch keeps one process-wide default).
        self._default_threads = torch.get_num_threads()
        for _ in range(self.workers):
            self._spawn()

    # ---- submitting and watching -------------------------------------------------------------
    def submit(self, owner: str, label: str, work: Work) -> Job:
        """Queue ``work``; :class:`ParameterError` when ``owner`` already has a job queued or running."""
        with self._cond:
            if self._closed:
                raise ParameterError("the server is shutting down; try again shortly")
            current = self._by_owner.get(owner)
            if current is not None and current.active:
                raise ParameterError(f"you already have a long job ({current.label}) {current.status}; "
                                     "wait for it or stop it first")
            job = Job(next(self._ids), owner, label, work)
            self._queue.append(job)
            self._by_owner[owner] = job
            self._cond.notify()
            return job

    def ahead(self, job: Job) -> int:
        """How many jobs will start before ``job`` (0 once it runs or has ended)."""
        with self._cond:
            if job.status != "queued":
                return 0
            return list(self._queue).index(job) + max(0, len(self._running) - self.workers + 1)

    def cancel(self, job: Job) -> None:
        """Stop ``job``: a queued job is removed at once, a running one stops at its next step."""
        with self._cond:
            job.token.cancel()
            if job.status == "queued":
                self._queue.remove(job)
                self._end(job, "cancelled")

    def job_of(self, owner: str) -> Optional[Job]:
        """``owner``'s latest job (active or ended), if any."""
        with self._cond:
            return self._by_owner.get(owner)

    def forget(self, owner: str) -> None:
        """Cancel ``owner``'s job and drop it (the session has ended)."""
        job = self.job_of(owner)
        if job is not None:
            self.cancel(job)
        with self._cond:
            self._by_owner.pop(owner, None)

    def snapshot(self) -> dict[str, int]:
        with self._cond:
            return {"queued": len(self._queue), "running": len(self._running), "workers": self.workers,
                    "alive": sum(t.is_alive() for t in self._threads)}

    def shutdown(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._closed = True
            for job in list(self._queue):
                job.token.cancel()
                self._end(job, "cancelled")
            self._queue.clear()
            for job in self._running:
                job.token.cancel()
            self._cond.notify_all()
            threads = list(self._threads)
        for t in threads:
            if t.ident is not None:  # a retiring worker's successor may be listed before it has started
                t.join(timeout)

    # ---- workers ---------------------------------------------------------------------------------
    def _spawn(self) -> None:
        ready = threading.Event()
        thread = threading.Thread(target=self._worker, args=(ready,), name="cnnviz-long-job", daemon=True)
        current = threading.current_thread()  # a retiring worker spawns its successor
        self._threads = [t for t in self._threads if t.is_alive() and t is not current] + [thread]
        thread.start()
        ready.wait(10)
        # torch.set_num_threads is per OpenMP thread but also sets the default that threads started
        # later (a visitor's next script run) begin with: put the default back once the worker has its own.
        torch.set_num_threads(self._default_threads)

    def _end(self, job: Job, status: JobStatus, error: Optional[str] = None) -> None:
        job.status, job.error, job.finished = status, error, time.monotonic()
        self._running.discard(job)
        job._done.set()

    def _worker(self, ready: threading.Event) -> None:
        lower_priority(self.nice)
        torch.set_num_threads(self.threads_per_job)
        torch.get_num_threads()  # initialises this thread's pool size now, before the default is restored
        ready.set()
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                job = self._queue.popleft()
                job.status, job.started = "running", time.monotonic()
                self._running.add(job)
            try:
                retire = self._run(job)
            except BaseException as exc:  # the worker itself is dying: fail the job, replace the worker
                with self._cond:
                    self._end(job, "failed", f"the worker stopped during the job ({type(exc).__name__})")
                self._replace_me()
                raise
            if retire:  # an unexpected failure: the next job gets a fresh thread
                self._replace_me()
                return

    def _replace_me(self) -> None:
        """Start the calling worker's successor, then the caller ends. Never under the pool's lock (every
        page's sidebar reads :meth:`snapshot`): ``Thread.start`` waits for ever for a thread that fails
        to bootstrap, as it does when the process is out of memory. So the successor is started once
        :data:`_SPAWN_HEADROOM` bytes can be allocated again; meanwhile queued jobs wait."""
        while not self._closed:
            try:
                bytearray(_SPAWN_HEADROOM)
            except MemoryError:
                time.sleep(0.5)
                continue
            self._spawn()
            return

    def _run(self, job: Job) -> bool:
        """Run ``job`` to its end; True when it failed with an unexpected error (retire this worker)."""
        def report(p: Progress) -> None:
            job.progress = p
            job.token.check()

        try:
            job.result = job.work(report, job.token)
        except Cancelled:
            with self._cond:
                self._end(job, "cancelled")
        except Exception as exc:  # noqa: BLE001 - a failed job is one line for its owner
            if not isinstance(exc, CnnvizError):
                log.exception("long job %s failed", job.label, exc_info=exc)
            with self._cond:
                self._end(job, "failed", one_line(failure_message(exc)))
            return not isinstance(exc, CnnvizError)
        else:
            with self._cond:
                self._end(job, "done")
        return False
