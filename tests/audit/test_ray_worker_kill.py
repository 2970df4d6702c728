"""Reliability on Ray: SIGKILL one audit actor mid-run; Ray Data restarts it and retries its batch,
finished parts stay intact and every (image, method) pair is written exactly once."""
from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from cnnviz_core.audit.results import read_results
from cnnviz_core.audit.runner import run_audit
from cnnviz_core.audit.sources import list_images
from cnnviz_core.audit.worker import AuditConfig


def _descendants(root: int) -> list[int]:
    """Process ids below ``root`` (from /proc), so we only ever signal processes this test started."""
    parent = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], [root]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        found += kids
        frontier += kids
    return found


def _audit_actor_pids() -> list[int]:
    pids = []
    for pid in _descendants(os.getpid()):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "AuditWorker" in cmd:
            pids.append(pid)
    return pids


@pytest.mark.slow
def test_killing_an_actor_mid_run_loses_nothing(scenes_dir, tmp_path, ray_local):
    items = list_images(str(scenes_dir), limit=12)
    config = AuditConfig("shapes-cnn", ("gradcam",), ("deletion",), weights=None, device="cpu", steps=4)
    out = tmp_path / "r"
    killed: list[int] = []

    def killer() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not killed:
            if list(out.glob("part-*.parquet")):
                pids = _audit_actor_pids()
                if pids:
                    os.kill(pids[0], signal.SIGKILL)
                    killed.append(pids[0])
                    return
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    summary = run_audit(items, config, out, use_ray=True, workers=2, batch_size=2, progress=False)
    thread.join(5)
    assert killed, "no audit actor was found to kill"
    df = read_results(out).to_pandas()
    assert summary.processed == 12 and len(df) == 12 and not df.duplicated(["path", "method"]).any()
    assert (df["status"] == "ok").all()
