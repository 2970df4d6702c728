"""Weight downloads with progress and checksum, against a file server on loopback (no internet)."""
from __future__ import annotations

import hashlib
import http.server
import threading
from functools import partial

import pytest

from cnnviz_core.models import download_file


@pytest.fixture()
def served(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    payload = bytes(range(256)) * 12_000  # ~3 MB: several 1 MB chunks
    digest = hashlib.sha256(payload).hexdigest()
    (root / f"net-{digest[:8]}.pth").write_bytes(payload)
    (root / "net-deadbeef.pth").write_bytes(payload)
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", payload, digest
    finally:
        server.shutdown()


def test_download_reports_progress_and_checks_hash(served, tmp_path):
    base, payload, digest = served
    reports = []
    dest = tmp_path / "cache" / f"net-{digest[:8]}.pth"
    download_file(f"{base}/{dest.name}", dest, progress=lambda f, text: reports.append((f, text)))
    assert dest.read_bytes() == payload
    assert len(reports) >= 3 and reports[-1][0] == pytest.approx(1.0)
    assert [f for f, _ in reports] == sorted(f for f, _ in reports)


def test_download_with_wrong_hash_leaves_nothing(served, tmp_path):
    base, _, _ = served
    dest = tmp_path / "cache" / "net-deadbeef.pth"
    with pytest.raises(OSError, match="checksum"):
        download_file(f"{base}/{dest.name}", dest)
    assert not dest.exists() and not list(dest.parent.glob("*.partial"))
