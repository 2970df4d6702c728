"""The benchmark's pieces: interleaving, medians and spread (fake clock), and smoke runs of every
section on a tiny model (timings are printed, never asserted)."""
from __future__ import annotations

import argparse

import pytest
import torch

from cnnviz_core import bench, load_model
from cnnviz_core.attribution import METHODS
from cnnviz_core.bench import models_bench
from cnnviz_core.hooks import hook_count


class FakeClock:
    """Time advances only inside a case, by the durations the test scripted for it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def scripted(clock: FakeClock, log: list, name: str, durations: list[float]):
    remaining = list(durations)

    def case(x: torch.Tensor) -> None:
        log.append((name, x.clone()))
        clock.now += remaining.pop(0)
    return case


def test_round_order_alternates():
    assert bench.round_order(["a", "b", "c"], 0) == ["a", "b", "c"]
    assert bench.round_order(["a", "b", "c"], 1) == ["c", "b", "a"]
    assert bench.round_order(["a", "b"], 2) == ["a", "b"]


def test_interleaved_alternates_order_shares_each_rounds_input_and_skips_warmup():
    clock, log = FakeClock(), []
    cases = {"A": scripted(clock, log, "A", [100.0, 3.0, 1.0, 2.0, 7.0]),
             "B": scripted(clock, log, "B", [100.0, 10.0, 30.0, 20.0, 40.0])}
    t = bench.interleaved(cases, torch.zeros(1, 3, 4, 4), repeats=4, warmup=1, clock=clock)
    assert [name for name, _ in log] == ["A", "B", "A", "B", "B", "A", "A", "B", "B", "A"]
    assert t["A"].samples == (3.0, 1.0, 2.0, 7.0) and t["B"].samples == (10.0, 30.0, 20.0, 40.0)
    assert (t["A"].median, t["A"].lo, t["A"].hi, t["A"].n) == (2.5, 1.0, 7.0, 4)
    assert t["B"].median == 25.0 and bench.ratio(t["B"], t["A"]) == 10.0
    inputs = [x for _, x in log[2:]]
    for r in range(4):  # both cases of a round see the same input; rounds differ
        assert torch.equal(inputs[2 * r], inputs[2 * r + 1])
    assert not torch.equal(inputs[0], inputs[2])


def test_interleaved_rejects_no_repeats_and_formats_spread():
    with pytest.raises(ValueError):
        bench.interleaved({"A": lambda x: None}, torch.zeros(1), repeats=0)
    t = bench.Timing((0.003, 0.001, 0.002))
    assert t.fmt("ms") == "2.0 ms [1.0-3.0, n=3]"
    assert bench.Timing((12.0, 14.5)).fmt() == "13.25 s [12.00-14.50, n=2]"
    assert t.as_dict()["median_s"] == 0.002 and bench.medians({"x": t}) == {"x": 0.002}


def test_pair_result_reports_ratio_of_medians_forwards_and_goal():
    fast, slow = bench.Timing((1.0, 2.0, 9.0)), bench.Timing((5.0, 6.0, 7.0))
    r = bench.PairResult("scorecam", "lib", fast, slow, 101, 101, {}, "", 1.5)
    assert r.speedup == 3.0
    text = "\n".join(r.lines())
    assert "3.00x faster" in text and "goal >= 1.5x: met" in text and "differ" not in text
    r = bench.PairResult("rise", "floor", slow, fast, 11, 21, {"twin": fast}, "note", None)
    text = "\n".join(r.lines())
    assert "0.33x faster" in text and "goal" not in text and "differ: per forward" in text and "(note)" in text


def test_method_lists_come_from_the_registry():
    variants, perturbation = bench.gradient_cam_variants(), bench.perturbation_methods()
    assert list(variants) == [k for k in METHODS if k in variants]  # registry order
    assert {"gradcam", "gradcam++", "hirescam"} <= set(variants)
    assert not {"cam", "eigencam", "scorecam", "smoothgradcam++", "guided_backprop"} & set(variants)
    assert all(METHODS[k].family == "cam" and not METHODS[k].long_running for k in variants)
    assert {"scorecam", "ablationcam", "occlusion"} <= set(perturbation)
    assert not {"smoothgrad", "integrated_gradients", "gradcam"} & set(perturbation)


def _args(**kw) -> argparse.Namespace:
    args = bench.parser().parse_args([])
    for k, v in kw.items():
        setattr(args, k, v)
    return args


@pytest.mark.slow
def test_bench_pieces_run_and_leave_the_model_clean():
    handle = load_model("shapes-cnn", weights=None)
    x = torch.randn(1, 3, 32, 32)
    cases = {
        "CAM floor": lambda xr: bench.cam_floor(handle, xr, "stage4", 1),
        "input floor": lambda xr: bench.input_floor(handle, xr, 1),
        "ours six": lambda xr: bench.explain(handle, xr, bench.SIX, 1, cache=None),
        **bench.reference_cases(handle, "stage4", 1),
    }
    medians = bench.interleaved_medians(cases, x, repeats=1)
    assert set(medians) == set(cases) and all(v > 0 for v in medians.values())
    assert bench.memory_probe("shapes-cnn", "input_floor", 32) >= 0
    assert hook_count(handle.model) == 0
    assert all(p.grad is None and not p.requires_grad for p in handle.model.parameters())


@pytest.mark.slow
def test_models_section_smoke(monkeypatch, capsys):
    monkeypatch.setattr(models_bench, "measured_memory", lambda name, what, size: 1.0)  # no subprocesses
    # resnet18 (pgc's AblationLayer cannot stand in for shapes-cnn's two-input fusion layer)
    out = bench.bench_model("resnet18", _args(size=32, repeats=1, slow_repeats=1, skip_slow_references=True))
    text = capsys.readouterr().out
    assert "compare all gradient-CAM variants" in text and "input floor" in text
    assert out["variants"] == bench.gradient_cam_variants() and out["variants_ratio"] > 0
    assert all(v["n"] == 1 for v in out["timings"].values())


@pytest.mark.slow
def test_perturbation_and_scorecam_sections_smoke(capsys):
    args = _args(perturb_model="shapes-cnn", perturb_size=48, perturb_layer="stage1", perturb_forwards=8,
                 perturb_samples=1, perturb_repeats=1, perturb_batch=8,
                 scorecam_model="shapes-cnn", scorecam_size=32, scorecam_repeats=1, scorecam_batch=16)
    out = bench.perturbation_bench(args)
    assert set(bench.perturbation_methods()) <= set(out)
    configured = {"scorecam", "ablationcam", "sscam", "iscam", "occlusion", "rise", "lime", "kernel_shap"}
    for key, figures in out.items():
        if key in configured:  # the libraries are installed (test-only dependencies): nothing skipped
            assert "skipped" not in figures, figures
            assert abs(figures["ours_forwards"] - figures["ref_forwards"]) <= 2, (key, figures)
        else:
            assert "skipped" in figures
    assert "extra" in out["rise"] and out["rise"]["goal"] is None
    sc = bench.scorecam_comparison(args)
    assert sc["ours"]["n"] == 1 and sc["speedup"] > 0
    text = capsys.readouterr().out
    assert "Score-CAM exact" in text and "batch 16 both sides" in text


def test_unknown_or_unregistered_methods_are_skipped_with_a_note():
    env = bench.make_env("shapes-cnn", 32, "stage1", 4, 4, 1)
    try:
        with pytest.raises(bench.Unavailable, match="not registered"):
            bench.run_pair("no_such_method", env, 1)
        with pytest.raises(bench.Unavailable, match="no reference configured"):
            bench.run_pair("gradcam", env, 1)
    finally:
        env.counter.close()
    assert hook_count(env.ref) == 0 and hook_count(env.handle.model) == 0
