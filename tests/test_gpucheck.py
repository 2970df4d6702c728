"""``make gpu-check`` where there is no CUDA, and the comparison helpers it uses on CUDA."""
from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from cnnviz_core import gpucheck, load_model


def test_without_cuda_it_says_so_in_one_line_and_exits_0(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpucheck.main([]) == 0
    assert capsys.readouterr().out == gpucheck.NO_CUDA + "\n"


def test_module_entry_point_without_cuda(repo_root):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no CUDA here, even on a GPU machine
    proc = subprocess.run([sys.executable, "-m", "cnnviz_core.gpucheck"], cwd=repo_root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [gpucheck.NO_CUDA]


def test_pearson_r():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 16, 16))
    b = a + rng.normal(scale=0.7, size=a.shape)
    assert gpucheck.pearson(a, b) == pytest.approx(np.corrcoef(a.ravel(), b.ravel())[0, 1], abs=1e-12)
    assert 0.5 < gpucheck.pearson(a, b) < 0.95
    assert gpucheck.pearson(a, 3 * a + 1) == pytest.approx(1.0)
    assert gpucheck.pearson(a, -a) == pytest.approx(-1.0)
    assert gpucheck.pearson(a.astype(np.float16), a) > 0.999
    zeros = np.zeros((4, 4))
    assert gpucheck.pearson(zeros, zeros) == 1.0 and gpucheck.pearson(zeros, a[0, :4, :4]) == 0.0
    assert math.isnan(gpucheck.pearson(a, a[0]))


def test_compare_cpu_maps_against_cpu_maps():
    handle = load_model("shapes-cnn", "default", "cpu")
    _, x = gpucheck._inputs(handle)
    methods = ("gradcam", "eigencam", "saliency", "guided_backprop")
    a, na = gpucheck.model_maps(handle, x, 1, methods)
    b, _ = gpucheck.model_maps(handle, x, 1, methods)
    assert not na and set(a) == set(methods) and a["saliency"].shape == (3, *x.shape[2:])
    assert gpucheck.compare(a, b) == pytest.approx({m: 1.0 for m in methods})
    rng = np.random.default_rng(1)
    noisy = {m: v + rng.normal(scale=float(v.std()), size=v.shape) for m, v in a.items()}
    r = gpucheck.compare(a, noisy)
    for m in methods:
        assert r[m] == pytest.approx(np.corrcoef(a[m].ravel(), noisy[m].ravel())[0, 1], abs=1e-9)
        assert r[m] < 0.9
    only = gpucheck.compare(a, {"gradcam": a["gradcam"]})
    assert only["gradcam"] == pytest.approx(1.0) and math.isnan(only["saliency"])


@pytest.mark.slow
def test_parity_cpu_against_cpu_every_method():
    rows = gpucheck.parity("shapes-cnn", ("cpu", "cpu"))
    methods = {m for _, m, _, _ in rows}
    assert set(gpucheck.METHODS) <= methods
    for _, method, r, note in rows:
        assert note.startswith(("n/a", "skipped")) or r == pytest.approx(1.0), (method, r)
