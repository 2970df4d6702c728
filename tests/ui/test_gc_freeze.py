"""The app freezes its import-time objects once per process, so that Streamlit's full garbage
collection after every script run (``runner.postScriptGC``) no longer scans torch's ~390k objects."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


# the entrypoint, and a page drawing its own sidebar (a deep link whose redirect was already tried)
@pytest.mark.parametrize("script_path, redirected", [("dashboard.py", False), ("pages/basics.py", True)])
def test_app_run_freezes_import_time_objects_once(script_path, redirected):
    # a fresh interpreter: this test process's own objects stay out of it
    script = textwrap.dedent(f"""
        import gc
        from streamlit.testing.v1 import AppTest
        from cnnviz_ui.navigation import REDIRECTED_KEY
        assert gc.get_freeze_count() == 0
        at = AppTest.from_file({str(REPO / script_path)!r}, default_timeout=180)
        if {redirected!r}:
            at.session_state[REDIRECTED_KEY] = True
        at.run()
        assert not at.exception, at.exception
        frozen = gc.get_freeze_count()  # frozen objects that die by reference count leave it
        from cnnviz_ui.state import freeze_import_time_objects
        first = freeze_import_time_objects()  # the count at the freeze
        assert first >= frozen
        at.run()
        assert freeze_import_time_objects() == first
        assert gc.get_freeze_count() <= frozen  # once per process: the second run froze nothing more
        # what a full collection still scans: objects made after the engine's import, not torch's
        print(frozen, len(gc.get_objects()))
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    frozen, tracked = map(int, done.stdout.split()[-2:])
    assert frozen > 100_000  # torch, torchvision, plotly, streamlit and the engine
    assert tracked < frozen / 2


def test_pages_import_little_after_the_freeze():
    """What the pages import on first use is imported before the freeze (``FIRST_USE_IMPORTS``): a
    module imported later leaves its objects to be scanned by every post-run collection (the metrics'
    scipy alone: ~400 modules, ~50k objects)."""
    script = textwrap.dedent(f"""
        import sys
        from streamlit.testing.v1 import AppTest
        from cnnviz_ui.navigation import PAGES
        at = AppTest.from_file({str(REPO / "dashboard.py")!r}, default_timeout=180).run()
        assert not at.exception, at.exception
        frozen_with = set(sys.modules)
        for info in PAGES:
            at.switch_page(info.path).run()
            assert not at.exception, (info.stem, at.exception)
        print(len(set(sys.modules) - frozen_with))
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) < 100  # was 1,080 with only the engine's import frozen
