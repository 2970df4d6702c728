"""The dashboard served on a free localhost port, for the UI bench and the browser tests: one
``streamlit run dashboard.py`` process, and Debian's Chromium to look at it (never a downloaded one).

``with local_server() as server:`` yields a :class:`LocalServer` once its health check answers, and
stops the process (and removes its log) on every path out.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("CNNVIZ_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class ServerDidNotStart(RuntimeError):
    """The server exited, or did not answer its health check in time (the message ends with its log)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stat_cpu_s(stat: Path) -> float:
    """User + system CPU seconds from a Linux ``/proc/<pid>/stat`` or ``/proc/<pid>/task/<tid>/stat``."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``; NaN elsewhere)."""
    try:
        return stat_cpu_s(Path(f"/proc/{pid}/stat"))
    except (OSError, ValueError, IndexError):
        return float("nan")


def _tail(log: Path, chars: int = 3000) -> str:
    return log.read_text(errors="replace")[-chars:]


@dataclass
class LocalServer:
    url: str  # http://127.0.0.1:<port>
    proc: subprocess.Popen
    log: Path  # its stdout and stderr
    ready_at: float  # time.perf_counter() when the health check first answered

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_s(self) -> float:
        return process_cpu_s(self.pid)

    def log_tail(self, chars: int = 3000) -> str:
        return _tail(self.log, chars)


@contextmanager
def local_server(app_dir: Path = REPO, *, env: Optional[Mapping[str, str]] = None, args: Sequence[str] = (),
                 python: str = sys.executable, timeout_s: float = 120.0) -> Iterator[LocalServer]:
    """``streamlit run dashboard.py`` in ``app_dir``, offline and on the CPU unless ``env`` says
    otherwise (``CNNVIZ_DEVICE`` of this process is passed on), with ``args`` added to its command line.
    Raises :class:`ServerDidNotStart` if it exits or does not answer within ``timeout_s``."""
    port = free_port()
    fd, log_name = tempfile.mkstemp(prefix="cnnviz-streamlit-", suffix=".log")
    log = Path(log_name)
    full_env = dict(os.environ, CNNVIZ_OFFLINE="1", CNNVIZ_DEVICE=os.environ.get("CNNVIZ_DEVICE", "cpu"), **(env or {}))
    cmd = [python, "-m", "streamlit", "run", "dashboard.py", "--server.headless", "true",
           "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none", *args]
    with os.fdopen(fd, "w") as out:
        proc = subprocess.Popen(cmd, cwd=app_dir, stdout=out, stderr=subprocess.STDOUT, env=full_env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise ServerDidNotStart(f"streamlit did not start (exit {proc.poll()}):\n{_tail(log)}")
            time.sleep(0.05)
        yield LocalServer(url, proc, log, time.perf_counter())
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        log.unlink(missing_ok=True)
