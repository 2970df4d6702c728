"""The metric registry and what each metric rewards, on models whose right answer is known."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from cnnviz_core.errors import Cancelled, ParameterError
from cnnviz_core.hooks import hook_count
from cnnviz_core.metrics import (METRICS, NEEDS, MetricResult, deletion, energy_in_mask, evaluate, insertion,
                                 method_explainer, metric_params, pointing_game, randomized_models, resolve_metrics)
from cnnviz_core.metrics.faithfulness import FaithfulnessCorrelationParams, InfidelityParams
from cnnviz_core.metrics.randomisation import (EfficientMPRTParams, SmoothMPRTParams, discrete_entropy, off_class,
                                               randomizable_layers)
from cnnviz_core.metrics.road import ROADParams, keep_mask, linear_imputation, removal_count
from cnnviz_core.metrics.robustness import MaxSensitivityParams
from cnnviz_core.models import ModelHandle, ModelSpec
from cnnviz_core.progress import CancelToken
from metric_models import tiny_handle

KEYS = ["deletion", "insertion", "road", "average_drop", "increase_in_confidence", "faithfulness_correlation",
        "infidelity", "max_sensitivity", "smooth_mprt", "efficient_mprt", "random_logit", "pointing_game",
        "energy_pointing_game"]
HIGHER_IS_BETTER = {"insertion", "road", "increase_in_confidence", "faithfulness_correlation", "efficient_mprt",
                    "pointing_game", "energy_pointing_game"}


class TopLeftModel(nn.Module):
    """Logit 0 = mean over the top-left 16x16 quadrant of the channel sum (linear); logit 1 = 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x[:, :, :16, :16].sum(dim=1).mean(dim=(1, 2))
        return torch.stack([s, torch.zeros_like(s)], dim=1)


@pytest.fixture(scope="module")
def toy():
    spec = ModelSpec(name="toy", display_name="toy", class_names=("a", "b"), default_layer="", input_size=32,
                     resize_size=32, head="softmax")
    handle = ModelHandle(spec, TopLeftModel(), torch.device("cpu"), "toy")
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 32, 32, generator=g) * 0.2
    x[:, :, :16, :16] += 1.0  # what the model reads: bright
    return handle, x


@pytest.fixture(scope="module")
def tiny():
    handle = tiny_handle(1)
    return handle, torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))


def quadrant(top_left: bool) -> np.ndarray:
    m = np.zeros((32, 32), np.float32)
    if top_left:
        m[:16, :16] = 1.0
    else:
        m[16:, 16:] = 1.0
    return m + np.linspace(0, 1e-3, 32 * 32, dtype=np.float32).reshape(32, 32)  # no ties


def run(key, handle, x, saliency, target=0, **kwargs):
    return evaluate(handle, x, saliency, target, key, **kwargs)[key]


# ---- the registry ------------------------------------------------------------------------------
def test_every_metric_is_registered_once_with_its_metadata():
    assert list(METRICS) == KEYS
    for key, m in METRICS.items():
        assert m.key == key and m.display_name and m.reference and m.cost and m.value_range
        assert m.paper.link.startswith("https://") and str(m.paper.year) in m.paper.cite()
        assert set(m.needs) <= set(NEEDS) and m.needs
        assert m.higher_is_better == (key in HIGHER_IS_BETTER)
        assert dataclasses.is_dataclass(m.params_type) and m.params_type.__dataclass_params__.frozen
        assert m.params == {f.name: f.default for f in dataclasses.fields(m.params_type)}
    assert [m.key for m in resolve_metrics("road, infidelity,road")] == ["road", "infidelity"]
    with pytest.raises(ParameterError, match="unknown metric"):
        resolve_metrics(["road", "roads"])
    with pytest.raises(ParameterError, match="no metric"):
        resolve_metrics(" , ")


@pytest.mark.parametrize("make", [
    lambda: ROADParams(percentages=(0, 50)), lambda: ROADParams(percentages=(100,)), lambda: ROADParams(percentages=()),
    lambda: ROADParams(percentages=(10, 10)), lambda: ROADParams(percentages="a,b"),
    lambda: ROADParams(imputation_noise=-0.1), lambda: ROADParams(output="softmax"), lambda: ROADParams(batch_size=0),
    lambda: ROADParams(seed=1.5), lambda: FaithfulnessCorrelationParams(samples=1),
    lambda: FaithfulnessCorrelationParams(subset=0), lambda: FaithfulnessCorrelationParams(baseline="white"),
    lambda: InfidelityParams(perturbation_std=0), lambda: InfidelityParams(normalize="maybe"),
    lambda: MaxSensitivityParams(radius=-1), lambda: MaxSensitivityParams(samples=True),
    lambda: SmoothMPRTParams(layer_order="random"), lambda: SmoothMPRTParams(noise=float("nan")),
    lambda: EfficientMPRTParams(bins=0),
])
def test_bad_parameters_raise_one_line_parameter_errors(make):
    with pytest.raises(ParameterError) as info:
        make()
    assert "\n" not in str(info.value)


def test_parameters_are_coerced_and_frozen():
    p = ROADParams(percentages="20, 40", batch_size="8", seed="3")
    assert p.percentages == (20.0, 40.0) and p.batch_size == 8 and p.seed == 3
    assert InfidelityParams(normalize="false").normalize is False
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.seed = 4  # type: ignore[misc]
    road = METRICS["road"]
    assert metric_params(road, {"seed": 5, "samples": 3}, {"road": {"batch_size": 2}}) == \
        ROADParams(seed=5, batch_size=2)  # flat params go where they are fields; options override
    with pytest.raises(ParameterError, match="has no parameter"):
        metric_params(road, {}, {"road": {"radius": 1}})


def test_evaluate_runs_several_metrics_and_checks_inputs(toy):
    handle, x = toy
    out = evaluate(handle, x, quadrant(True), 0, ["average_drop", "road"], percentages=(50,), seed=1)
    assert list(out) == ["average_drop", "road"] and all(isinstance(r, MetricResult) for r in out.values())
    assert out["road"].curves["morf"].x.tolist() == [50.0]
    with pytest.raises(ParameterError, match="unknown metric parameter"):
        evaluate(handle, x, quadrant(True), 0, "road", percentage=(50,))
    with pytest.raises(ParameterError, match="saliency map"):
        evaluate(handle, x, quadrant(True)[:8], 0, "average_drop")
    with pytest.raises(ParameterError, match="out of range"):
        evaluate(handle, x, quadrant(True), 5, "average_drop")
    with pytest.raises(ParameterError, match="NaN"):
        evaluate(handle, x, np.full((32, 32), np.nan), 0, "average_drop")
    with pytest.raises(ParameterError, match="needs an explain"):
        evaluate(handle, x, quadrant(True), 0, "max_sensitivity")
    with pytest.raises(ParameterError, match="mask"):
        evaluate(handle, x, quadrant(True), 0, "pointing_game")


# ---- ROAD's imputation -------------------------------------------------------------------------
def test_linear_imputation_solves_the_neighbour_average_equations():
    g = np.random.default_rng(0)
    img = g.normal(size=(2, 12, 10))
    keep = g.random((12, 10)) > 0.6
    filled, missing = linear_imputation(img, keep)
    assert np.array_equal(filled[:, keep], img[:, keep]) and len(missing) == (~keep).sum()
    offsets = [((-1, -1), 1 / 12), ((-1, 0), 1 / 6), ((-1, 1), 1 / 12), ((0, -1), 1 / 6), ((0, 1), 1 / 6),
               ((1, -1), 1 / 12), ((1, 0), 1 / 6), ((1, 1), 1 / 12)]
    for i in missing:  # every filled pixel is the weighted mean of its in-image neighbours
        r, c = divmod(int(i), 10)
        nb = [(r + dr, c + dc, w) for (dr, dc), w in offsets if 0 <= r + dr < 12 and 0 <= c + dc < 10]
        mean = sum(w * filled[:, rr, cc] for rr, cc, w in nb) / sum(w for _, _, w in nb)
        assert np.allclose(filled[:, r, c], mean, atol=1e-9)
    flat = np.ones((1, 6, 6))  # a constant image is filled with the constant
    assert np.allclose(linear_imputation(flat, np.eye(6, dtype=bool))[0], 1.0)


def test_road_removal_counts_and_ties():
    assert [removal_count(100, q) for q in (10, 50, 90)] == [10, 50, 90]
    ties = np.zeros((10, 10), np.float32)
    ties[0, :3] = 1.0  # 97 tied zeros: still exactly 10% removed, the 3 ones first
    keep = keep_mask(ties, 10, "morf")
    assert (~keep).sum() == 10 and not keep[0, :3].any()
    lerf = keep_mask(ties, 10, "lerf")
    assert (~lerf).sum() == 10 and lerf[0, :3].all()


# ---- each metric rewards the right map on a model whose evidence is known ----------------------
def test_road_prefers_the_map_on_the_evidence(toy):
    handle, x = toy
    good = run("road", handle, x, quadrant(True), output="logit", percentages=(25, 50, 75))
    bad = run("road", handle, x, quadrant(False), output="logit", percentages=(25, 50, 75))
    assert good.value > bad.value + 0.1
    assert good.curves["morf"].y[0] < good.details["original"] - 0.1  # removing the evidence lowers the logit
    assert good.curves["lerf"].y[0] == pytest.approx(good.details["original"], abs=0.02)


def test_average_drop_and_increase_in_confidence(toy):
    handle, x = toy
    good = run("average_drop", handle, x, quadrant(True))
    bad = run("average_drop", handle, x, quadrant(False))
    assert good.value < 0.01 and bad.value > 0.1
    y = bad.details["original"]
    assert bad.value == pytest.approx((y - bad.details["explanation_map"]) / y)
    x2 = x.clone()
    x2[:, :, :8, :16] = -0.5  # half of the quadrant now lowers the logit: a map without it raises confidence
    raises = np.zeros((32, 32), np.float32)
    raises[8:16, :16] = 1.0
    assert run("increase_in_confidence", handle, x2, raises).value == 1.0
    assert run("increase_in_confidence", handle, x2, quadrant(False)).value == 0.0
    assert run("average_drop", handle, x2, raises).value == 0.0


def test_faithfulness_correlation_and_infidelity_of_the_exact_attribution(toy):
    handle, x = toy
    exact = np.zeros((3, 32, 32), np.float32)  # d logit / d x: 1/256 on the quadrant's elements
    exact[:, :16, :16] = 1 / 256
    times_input = exact * (x[0].numpy() - float(x.min()))  # the exact drop for the "min" baseline
    fc = run("faithfulness_correlation", handle, x, times_input, samples=30, subset=200)
    assert fc.value == pytest.approx(1.0, abs=1e-5)
    wrong = run("faithfulness_correlation", handle, x, quadrant(False), samples=30, subset=200)
    assert wrong.value < 0.5
    assert run("infidelity", handle, x, exact, normalize=False).value == pytest.approx(0.0, abs=1e-9)
    assert run("infidelity", handle, x, exact * 7).value == pytest.approx(0.0, abs=1e-9)  # normalized: scale-free
    assert run("infidelity", handle, x, exact * 7, normalize=False).value > 1e-4
    assert run("infidelity", handle, x, quadrant(False)).value > 1e-5  # ~ E[d^2]: nothing explained


def test_max_sensitivity(toy):
    handle, x = toy
    gradient = np.zeros((3, 32, 32), np.float32)
    gradient[:, :16, :16] = 1 / 256
    steady = run("max_sensitivity", handle, x, gradient, explain=lambda model, xx, t: gradient)
    assert steady.value == 0.0
    seen = []
    jumpy = run("max_sensitivity", handle, x, x[0].numpy(), explain=lambda model, xx, t: xx[0], radius=0.05,
                samples=6, progress=seen.append)
    assert 0 < jumpy.value <= 0.05 * np.sqrt(x.numel()) / float(x.norm()) + 1e-6
    assert len(jumpy.curves["sensitivity"].y) == 6 and seen[-1].step == seen[-1].total == 6


def test_random_logit_is_one_for_a_class_blind_method(toy):
    handle, x = toy
    blind = run("random_logit", handle, x, quadrant(True), explain=lambda model, xx, t: quadrant(True))
    assert blind.value == pytest.approx(1.0) and blind.details["off_class"] == 1
    sharp = run("random_logit", handle, x, quadrant(True), explain=lambda model, xx, t: quadrant(t == 0))
    assert sharp.value < 0.5
    assert off_class(1000, 5, 42) != 5 and {off_class(3, 1, s) for s in range(20)} == {0, 2}


# ---- randomization: copies, never the shared model ----------------------------------------------
def test_randomized_models_copy_and_seed_like_quantus(tiny):
    handle, _ = tiny
    before = {k: v.clone() for k, v in handle.model.state_dict().items()}
    rng = torch.random.get_rng_state()
    names = randomizable_layers(handle.model)
    up = [(n, m) for n, m in randomized_models(handle, order="bottom_up", seed=3)]
    assert [n for n, _ in up] == names and up[0][1] is not handle.model
    final_up = {k: v.clone() for k, v in up[-1][1].state_dict().items()}
    down = list(randomized_models(handle, order="top_down", seed=3))
    assert [n for n, _ in down] == names[::-1]
    assert all(torch.equal(final_up[k], v) for k, v in down[-1][1].state_dict().items())  # every layer seeded alike
    assert not torch.equal(final_up["fc.weight"], before["fc.weight"])
    assert all(torch.equal(before[k], v) for k, v in handle.model.state_dict().items())
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert not any(p.requires_grad for p in up[-1][1].parameters())


def test_mprt_variants_fail_a_model_blind_method_and_pass_saliency(tiny):
    handle, x = tiny
    fixed = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    blind = lambda model, xx, t: fixed  # noqa: E731 - ignores the model: the check must fail it
    assert run("smooth_mprt", handle, x, fixed, explain=blind, samples=2).value == pytest.approx(1.0)
    assert run("efficient_mprt", handle, x, fixed, explain=blind).value == pytest.approx(0.0)
    saliency = method_explainer(handle, "saliency")
    before = [p.clone() for p in handle.model.state_dict().values()]
    seen = []
    s1 = run("smooth_mprt", handle, x, fixed, explain=saliency, samples=3, progress=seen.append)
    assert s1.value < 0.9 and seen[-1].step == seen[-1].total == 6
    assert s1.maps["original"].shape == s1.maps["randomized"].shape == (3, 32, 32)
    assert run("smooth_mprt", handle, x, fixed, explain=saliency, samples=3).value == s1.value  # seeded
    assert run("smooth_mprt", handle, x, fixed, explain=saliency, samples=3, seed=7).value != s1.value
    e = run("efficient_mprt", handle, x, saliency(handle.model, x, 0), explain=saliency, all_layers=True)
    assert len(e.curves["per_layer"].y) == len(randomizable_layers(handle.model))
    assert e.details["entropy_randomized"] == e.curves["per_layer"].y[-1]
    assert all(torch.equal(a, b) for a, b in zip(before, handle.model.state_dict().values()))
    assert hook_count(handle.model) == 0
    assert discrete_entropy(np.arange(100.0), 100) == pytest.approx(np.log(100))


def test_method_explainer_follows_in_place_changes_of_a_copy(tiny):
    handle, x = tiny
    explain = method_explainer(handle, "scorecam", batch_size=8)  # Score-CAM uses the handle's inference twin
    name, model = next(randomized_models(handle, order="top_down", seed=1))  # fc randomized
    first = explain(model, x, 0)
    with torch.no_grad():
        model.features[3].weight.mul_(-1.0)  # in place: a wrapper built for the old weights would be stale
    second = explain(model, x, 0)
    fresh = ModelHandle(handle.spec, model, handle.device, "fresh")
    from cnnviz_core.attribution import explain as attribution_explain

    want = attribution_explain(fresh, x, "scorecam", 0, cache=None, batch_size=8)["scorecam"]
    assert np.allclose(second, want, atol=1e-5) and not np.allclose(first, second, atol=1e-3)
    with torch.no_grad():  # gradients are switched on for the method even inside no_grad
        assert method_explainer(handle, "saliency")(handle.model, x, 0).shape == (3, 32, 32)


# ---- progress, cancel, and the registered classic metrics --------------------------------------
@pytest.mark.parametrize("key, kwargs", [("road", {"percentages": (50,)}), ("faithfulness_correlation", {}),
                                         ("infidelity", {}), ("deletion", {}),
                                         ("smooth_mprt", {"explain": lambda m, x, t: np.zeros((32, 32))})])
def test_cancel_stops_long_metrics(toy, tiny, key, kwargs):
    handle, x = tiny if key == "smooth_mprt" else toy
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        run(key, handle, x, quadrant(True), cancel=token, **kwargs)


def test_road_reports_progress(toy):
    handle, x = toy
    seen = []
    run("road", handle, x, quadrant(True), percentages=(30, 60), progress=seen.append)
    assert seen[-1].step == seen[-1].total == 5 and [p.step for p in seen] == sorted(p.step for p in seen)


def test_registered_classic_metrics_equal_their_functions(toy):
    handle, x = toy
    sal = quadrant(True)
    assert run("deletion", handle, x, sal, step=64).value == deletion(handle, x, sal, 0, step=64).auc
    ins = run("insertion", handle, x, sal, step=64, substrate="zeros")
    assert ins.value == insertion(handle, x, sal, 0, step=64, substrate="zeros").auc
    assert ins.details["substrate"] == "zeros" and len(ins.curves["insertion"].y) == 17
    mask = np.zeros((32, 32), bool)
    mask[:16, :16] = True
    assert run("pointing_game", handle, x, sal, mask=mask).value == 1.0 == float(pointing_game(sal, mask))
    assert run("pointing_game", handle, x, quadrant(False), mask=mask, tolerance=30).value == 1.0
    assert run("energy_pointing_game", handle, x, sal, mask=mask).value == pytest.approx(energy_in_mask(sal, mask))


def test_metrics_that_re_explain_do_not_depend_on_the_given_maps_scale(tiny):
    handle, x = tiny
    explain = method_explainer(handle, "gradcam")
    scaled = explain(handle.model, x, 3)
    raw = scaled * 5.0 - 2.0  # e.g. a caller passing the raw map of a min-max explainer
    for key, kwargs in (("max_sensitivity", {"samples": 2}), ("random_logit", {}), ("efficient_mprt", {})):
        a = run(key, handle, x, scaled, 3, explain=explain, **kwargs).value
        b = run(key, handle, x, raw, 3, explain=explain, **kwargs).value
        assert a == b, key
    with pytest.raises(ParameterError, match="shape"):
        run("random_logit", handle, x, np.zeros((3, 32, 32), np.float32), 3, explain=explain)
