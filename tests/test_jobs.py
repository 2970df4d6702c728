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


# The killed worker's exception surfaces in pytest's thread hook whenever the thread ends (after its test).
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")


class WorkerKilled(BaseException):
    """Stands in for a worker thread dying mid-job (BaseException: not an ordinary failure)."""


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


def test_an_unexpected_failure_gives_the_next_job_a_fresh_worker(pool):
    """After an unexpected error (oneDNN fails every later convolution of a thread that once ran out of
    memory) the worker is replaced; after a CnnvizError (a refused parameter) it is kept."""
    def worker(progress, cancel):
        return threading.current_thread(), torch.get_num_threads()

    def fails(exc):
        def work(progress, cancel):
            raise exc
        return work

    first = pool.submit("alice", "dream", worker)
    assert first.wait(5)
    refused = pool.submit("alice", "dream", fails(ParameterError("layer 'x' does not exist")))
    assert refused.wait(5) and refused.status == "failed"
    same = pool.submit("alice", "dream", worker)
    assert same.wait(5) and same.result[0] is first.result[0]
    broken = pool.submit("alice", "dream", fails(RuntimeError("could not create a primitive")))
    assert broken.wait(5) and broken.status == "failed" and "could not create a primitive" in broken.error
    fresh = pool.submit("alice", "dream", worker)
    assert fresh.wait(5) and fresh.status == "done"
    assert fresh.result[0] is not first.result[0] and fresh.result[1] == 1  # a new thread, same budget
    deadline = time.monotonic() + 5
    while pool.snapshot()["alive"] != 1 and time.monotonic() < deadline:  # the retired worker is exiting
        time.sleep(0.01)
    assert pool.snapshot()["alive"] == 1


def test_long_jobs_use_their_own_thread_budget(pool):
    seen = pool.submit("alice", "probe", lambda progress, cancel: torch.get_num_threads())
    assert seen.wait(5) and seen.result == 1
    assert torch.get_num_threads() == 2  # tests/conftest.py sets 2 for this thread; untouched


def test_failure_messages_name_an_allocation_failure():
    from cnnviz_core.jobs import failure_message
    assert failure_message(ParameterError("layer 'x' does not exist")) == "layer 'x' does not exist"
    assert failure_message(ValueError("bad thing")) == "ValueError: bad thing"
    for exc in (MemoryError(), RuntimeError("could not create a primitive"),
                RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9 GB"),
                RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")):
        message = failure_message(exc)
        assert message.startswith("the server ran out of memory during this job") and type(exc).__name__ in message


def test_workers_run_at_a_lower_priority_than_the_server():
    import os
    import threading

    from cnnviz_core.jobs import JobPool

    if not hasattr(os, "setpriority"):
        pytest.skip("no per-thread niceness on this OS")
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    pool = JobPool(workers=1, threads_per_job=1)
    try:
        job = pool.submit("a", "nice", lambda progress, cancel: os.getpriority(os.PRIO_PROCESS,
                                                                                 threading.get_native_id()))
        job.wait(10)
        assert job.result == min(19, base + pool.nice) and pool.nice == 10
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base  # the caller is untouched
    finally:
        pool.shutdown()


def test_shutdown_while_a_retiring_worker_starts_its_successor(monkeypatch):
    """A failed job retires its worker, which starts a successor; a shutdown meanwhile (a test's
    teardown, a server stop) joins only threads that have started (it once joined the successor
    before its start and raised "cannot join thread before it is started")."""
    import cnnviz_core.jobs as jobs

    starting, proceed = threading.Event(), threading.Event()

    class SlowStart(threading.Thread):
        def start(self):
            if threading.current_thread().name == "cnnviz-long-job":  # the successor, not the first worker
                starting.set()
                proceed.wait(5)
            super().start()

    monkeypatch.setattr(jobs.threading, "Thread", SlowStart)
    pool = JobPool(workers=1, threads_per_job=1)

    def fails(progress, cancel):
        raise ValueError("bad")

    job = pool.submit("alice", "audit", fails)
    assert job.wait(5) and job.status == "failed"
    assert starting.wait(5)  # the successor exists and is about to start
    raised: list[BaseException] = []

    def stop() -> None:
        try:
            pool.shutdown(timeout=5.0)
        except BaseException as exc:  # noqa: BLE001 - reported to the test below
            raised.append(exc)

    done = threading.Thread(target=stop)
    done.start()
    time.sleep(0.2)  # shutdown has taken its list of threads
    proceed.set()
    done.join(10)
    assert not done.is_alive() and not raised, raised
