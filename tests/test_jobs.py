"""The long-job pool: bounded, first come first served, Stop while queued, one job per session,
worker deaths fail the job and the next job still runs."""
from __future__ import annotations

import threading
import time

import pytest
import torch

from cnnviz_core.errors import ParameterError
from cnnviz_core.jobs import JobPool
from cnnviz_core.progress import Progress


def _blocking(gate: threading.Event, started: threading.Event | None = None):
    def work(progress, cancel):
        if started is not None:
            started.set()
        while not gate.wait(0.01):
            progress(Progress(0, 1, "waiting"))  # checks the cancel token
        return "finished"
    return work


@pytest.fixture
def pool():
    p = JobPool(workers=1, threads_per_job=1)
    yield p
    p.shutdown()


def test_jobs_queue_behind_a_bounded_pool_in_order(pool):
    gate, started = threading.Event(), threading.Event()
    first = pool.submit("alice", "dream", _blocking(gate, started))
    assert started.wait(5)
    second = pool.submit("bob", "style", lambda progress, cancel: "second")
    third = pool.submit("carol", "audit", lambda progress, cancel: "third")
    assert (first.status, second.status, third.status) == ("running", "queued", "queued")
    assert (pool.ahead(first), pool.ahead(second), pool.ahead(third)) == (0, 1, 2)
    gate.set()
    assert third.wait(5) and second.finished_ok and third.finished_ok
    assert (first.result, second.result, third.result) == ("finished", "second", "third")
    assert first.finished <= second.started <= second.finished <= third.started


def test_stop_while_queued_removes_the_job_and_it_never_runs(pool):
    gate, started = threading.Event(), threading.Event()
    pool.submit("alice", "dream", _blocking(gate, started))
    assert started.wait(5)
    ran = []
    queued = pool.submit("bob", "style", lambda progress, cancel: ran.append(1))
    pool.cancel(queued)
    assert queued.status == "cancelled" and queued.wait(0)
    gate.set()
    follow = pool.submit("carol", "audit", lambda progress, cancel: "ok")
    assert follow.wait(5) and follow.result == "ok" and ran == []


def test_stop_while_running_ends_at_the_next_step(pool):
    started = threading.Event()
    running = pool.submit("alice", "dream", _blocking(threading.Event(), started))
    assert started.wait(5) and running.wait(0.1) is False
    pool.cancel(running)
    assert running.wait(5) and running.status == "cancelled"


def test_one_session_cannot_start_a_second_long_job(pool):
    gate = threading.Event()
    job = pool.submit("alice", "dream", _blocking(gate))
    with pytest.raises(ParameterError, match="already have a long job"):
        pool.submit("alice", "style", lambda progress, cancel: None)
    gate.set()
    assert job.wait(5)
    assert pool.submit("alice", "style", lambda progress, cancel: "again").wait(5)


class WorkerKilled(BaseException):
    """Stands in for a worker thread dying mid-job (BaseException: not an ordinary failure)."""


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_worker_that_dies_fails_its_job_and_the_next_job_runs(pool):
    def dies(progress, cancel):
        raise WorkerKilled()

    doomed = pool.submit("alice", "dream", dies)
    assert doomed.wait(5) and doomed.status == "failed" and "worker stopped" in doomed.error
    nxt = pool.submit("bob", "style", lambda progress, cancel: 42)
    assert nxt.wait(5) and nxt.result == 42
    deadline = time.monotonic() + 5
    while pool.snapshot()["alive"] != 1 and time.monotonic() < deadline:  # the dead worker is exiting
        time.sleep(0.01)
    assert pool.snapshot()["alive"] == 1


def test_an_ordinary_failure_is_one_line(pool):
    def fails(progress, cancel):
        raise ValueError("bad\nthing")

    job = pool.submit("alice", "audit", fails)
    assert job.wait(5) and job.status == "failed" and job.error == "ValueError: bad thing"


def test_long_jobs_use_their_own_thread_budget(pool):
    seen = pool.submit("alice", "probe", lambda progress, cancel: torch.get_num_threads())
    assert seen.wait(5) and seen.result == 1
    assert torch.get_num_threads() == 2  # tests/conftest.py sets 2 for this thread; untouched
