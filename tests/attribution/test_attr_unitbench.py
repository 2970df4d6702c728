"""Smoke test of the unit benches on tiny inputs (timings are printed, never asserted)."""
from __future__ import annotations

import pytest

from cnnviz_core.attribution import unitbench
from cnnviz_core.hooks import hook_count


@pytest.mark.slow
def test_unit_benches_run_and_leave_the_model_clean(capsys):
    t = unitbench.unit_projection("shapes-cnn", size=64, repeats=1)
    assert {"forward", "input floor", "unit floor", "ours 3 rules", "ours deconvnet"} <= set(t)
    rate = unitbench.top_activations_throughput(count=8, layer="stage2", batch_size=4, repeats=1)
    assert all(v > 0 for v in rate.values())
    out = capsys.readouterr().out
    assert "unit floor" in out and "images/s" in out
    assert hook_count(unitbench._shapes().model) == 0
