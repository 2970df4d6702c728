"""A lock held by another thread for the duration of a block (tests of what must not wait for it)."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def held_by_another_thread(lock: threading.RLock) -> Iterator[None]:
    """Inside the block another thread holds ``lock`` (released, and that thread joined, on exit)."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            held.set()
            release.wait(10)

    worker = threading.Thread(target=hold)
    worker.start()
    held.wait(10)
    try:
        yield
    finally:
        release.set()
        worker.join()
