"""Smoke test of the benchmark's pieces on a tiny model (timings are printed, never asserted)."""
from __future__ import annotations

import torch

from cnnviz_core import bench, load_model
from cnnviz_core.hooks import hook_count


def test_bench_pieces_run_and_leave_the_model_clean():
    handle = load_model("shapes-cnn", weights=None)
    x = torch.randn(1, 3, 64, 64)
    cases = {
        "CAM floor": lambda xr: bench.cam_floor(handle, xr, "stage4", 1),
        "input floor": lambda xr: bench.input_floor(handle, xr, 1),
        "ours six": lambda xr: bench.explain(handle, xr, bench.SIX, 1, cache=None),
        **bench.reference_cases(handle, "stage4", 1),
    }
    medians = bench.interleaved_medians(cases, x, repeats=1)
    assert set(medians) == set(cases) and all(v > 0 for v in medians.values())
    assert bench.memory_probe("shapes-cnn", "input_floor", 64) >= 0
    assert hook_count(handle.model) == 0
    assert all(p.grad is None and not p.requires_grad for p in handle.model.parameters())
