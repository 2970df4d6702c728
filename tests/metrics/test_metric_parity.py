"""Parity of the registered metrics with their reference implementations (test-only libraries).

Same maps, same inputs, and the same perturbations on both sides; values agree to 1e-4 (absolute,
or relative for values above 1: |ours - ref| <= 1e-4 * max(1, |ref|)). Our forwards run on the
BatchNorm-folded twin and the references on the model itself, so they differ by float rounding only.

* ROAD: pytorch-grad-cam's ``ROADMostRelevantFirst`` / ``ROADLeastRelevantFirst`` (``percentile=p``
  removes ``100 - p`` %), one call per level after seeding torch's global generator once. Our single
  seeded generator then draws the same imputation noise in the same order (MoRF levels, then LeRF).
  The combination is pgc's ``ROADCombined`` formula. Maps are tie-free (pgc's threshold rule and our
  ranks then pick the same pixels).
* Average Drop / Increase in Confidence: TorchCAM's ``ClassificationMetric``, fed our map by a
  minimal extractor. Also pytorch-grad-cam, whose ``DropInConfidence`` omits the paper's division
  by ``Y`` (checked as ``pgc == ours * Y``).
* Faithfulness correlation: Quantus, after ``np.random.seed(seed)`` (the subsets are the same
  ``choice`` draws). Quantus's default perturbation function evaluates ``np.random.uniform`` for its
  baseline table on every call, even for the ``"black"`` baseline, which shifts the draws. The same
  replacement function, without that draw, is passed as ``perturb_func``.
* Infidelity and max-sensitivity: Captum, with our perturbations passed through ``perturb_func``.
* Smooth / efficient MPRT, random logit: Quantus, with the same explanation function on both sides.
  Quantus's ``SmoothMPRT`` ignores ``explain_func`` when it denoises and calls ``quantus.explain``,
  so our explainer is ``quantus.explain(method="Saliency")`` there. Quantus's ``RandomLogit``
  computes SSIM on flattened maps; ours is the paper's 2-D SSIM, so Quantus is given its own
  ``ssim`` applied to the 2-D maps as ``similarity_func``.
"""
from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from torch import nn

from cnnviz_core import load_model
from cnnviz_core.hooks import hook_count
from cnnviz_core.metrics import METRICS, method_explainer
from cnnviz_core.metrics.faithfulness import gaussian_perturbations
from cnnviz_core.metrics.robustness import uniform_perturbations
from metric_models import tiny_handle

pgc_road = pytest.importorskip("pytorch_grad_cam.metrics.road")
pgc_conf = pytest.importorskip("pytorch_grad_cam.metrics.cam_mult_image")
torchcam_metrics = pytest.importorskip("torchcam.metrics")
captum_metrics = pytest.importorskip("captum.metrics")
quantus = pytest.importorskip("quantus")
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget  # noqa: E402
from quantus.functions.similarity_func import ssim as quantus_ssim  # noqa: E402


def close(ours: float, ref: float, tol: float = 1e-4) -> bool:
    return abs(float(ours) - float(ref)) <= tol * max(1.0, abs(float(ref)))


def compute(key, handle, x, saliency, target, **kwargs):
    metric = METRICS[key]
    params = metric.params_type(**{k: kwargs.pop(k) for k in list(kwargs) if k in metric.params})
    return metric.compute(handle, x, saliency, target, params, **kwargs)


@pytest.fixture(scope="module")
def resnet():
    handle = load_model("resnet18", weights=None)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    logits = handle.forward(x)[0]
    targets = [int(logits.argmax()), int(logits.argsort()[len(logits) // 2])]
    return handle, x, targets


@pytest.fixture(scope="module")
def tiny():
    handle = tiny_handle()
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    logits = handle.forward(x)[0]
    return handle, x, [int(logits.argmax()), int(logits.argmin())]


def tie_free_map(size: int, seed: int) -> np.ndarray:
    """Distinct values k / n (exact in float32, and so is 1 - value): no ties at any threshold."""
    return (np.random.default_rng(seed).permutation(size * size).reshape(size, size) / (size * size)).astype(np.float32)


def smooth_map(size: int, seed: int) -> np.ndarray:
    """A blob-like map in [0, 1] (min 0, max 1), like a CAM."""
    g = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    m = sum(np.exp(-((yy - g.random()) ** 2 + (xx - g.random()) ** 2) / 0.02) for _ in range(3))
    return ((m - m.min()) / (m.max() - m.min())).astype(np.float32)


# ---- ROAD --------------------------------------------------------------------------------------
@pytest.mark.parametrize("model_name, output, levels", [("resnet", "logit", (10, 50, 90)),
                                                       ("tiny", "probability", (10, 30, 50, 70, 90))])
def test_road_matches_pytorch_grad_cam(request, model_name, output, levels):
    handle, x, targets = request.getfixturevalue(model_name)
    target, cam = targets[0], tie_free_map(x.shape[-1], len(levels))
    ours = compute("road", handle, x, cam, target, percentages=levels, output=output, seed=7)
    ref_target = [(ClassifierOutputTarget if output == "logit" else ClassifierOutputSoftmaxTarget)(target)]
    torch.manual_seed(7)
    morf = [pgc_road.ROADMostRelevantFirst(100 - q)(x, cam[None], ref_target, handle.model)[0] for q in levels]
    lerf = [pgc_road.ROADLeastRelevantFirst(100 - q)(x, cam[None], ref_target, handle.model)[0] for q in levels]
    before = ours.details["original"]
    for got, want in zip(ours.curves["morf"].y - before, morf):
        assert close(got, want), (got, want)
    for got, want in zip(ours.curves["lerf"].y - before, lerf):
        assert close(got, want), (got, want)
    assert close(ours.value, (np.mean(lerf) - np.mean(morf)) / 2)  # pgc's ROADCombined
    assert max(abs(v) for v in morf + lerf) > 1e-4  # removal changes the score: a real comparison
    # the noise matters: another seed gives other imputations
    other = compute("road", handle, x, cam, target, percentages=levels[:1], output=output, seed=8)
    assert abs(other.curves["morf"].y[0] - ours.curves["morf"].y[0]) > 1e-7


# ---- Average Drop / Increase in Confidence ------------------------------------------------------
class _MapExtractor:
    """The smallest TorchCAM extractor: returns a fixed map (TorchCAM resizes and uses it as is)."""

    def __init__(self, model: nn.Module, cam: np.ndarray) -> None:
        self.model, self.cam = model, torch.from_numpy(cam)[None]

    def __call__(self, class_idx=None, scores=None, normalized=True, **kwargs):
        return [self.cam]

    def fuse_cams(self, cams):
        return cams[0]

    @contextlib.contextmanager
    def _hooks_off(self):
        yield


@pytest.mark.parametrize("model_name", [pytest.param("resnet", marks=pytest.mark.slow), "tiny"])
def test_average_drop_and_increase_in_confidence_match_torchcam_and_pgc(request, model_name):
    handle, x, targets = request.getfixturevalue(model_name)
    size = x.shape[-1]
    increases = set()
    for i, target in enumerate(targets):
        for cam in (smooth_map(size, i), 1 - smooth_map(size, i)):
            drop = compute("average_drop", handle, x, cam, target)
            inc = compute("increase_in_confidence", handle, x, cam, target)
            softmax = lambda t: torch.softmax(t, -1)  # noqa: E731
            ref = torchcam_metrics.ClassificationMetric(_MapExtractor(handle.model, cam), softmax)
            ref.update(x, class_idx=target)
            summary = ref.summary()
            assert close(drop.value, summary["avg_drop"]), (drop.value, summary)
            assert inc.value == summary["conf_increase"]
            y = drop.details["original"]
            pgc_target = [ClassifierOutputSoftmaxTarget(target)]
            pgc_drop = pgc_conf.DropInConfidence()(x, cam[None], pgc_target, handle.model)[0]
            assert close(drop.value * y, pgc_drop, 1e-5)  # pgc: max(0, Y - O), not divided by Y
            assert inc.value == pgc_conf.IncreaseInConfidence()(x, cam[None], pgc_target, handle.model)[0]
            increases.add(inc.value)
    assert increases == {0.0, 1.0} or model_name == "resnet"  # tiny: both outcomes are compared


# ---- faithfulness correlation -------------------------------------------------------------------
def _replace_with_min(arr, indices, **kwargs):
    """Quantus's batch_baseline_replacement_by_indices with the "black" (minimum) baseline, minus
    its unused np.random.uniform draw."""
    out = arr.copy()
    out[np.arange(len(arr))[:, None], indices] = arr.min(axis=1)[:, None]
    return out


@pytest.mark.parametrize("model_name, kind", [("resnet", "cam"), ("tiny", "gradient")])
def test_faithfulness_correlation_matches_quantus(request, model_name, kind):
    handle, x, targets = request.getfixturevalue(model_name)
    target, size = targets[0], x.shape[-1]
    if kind == "cam":
        a, a_ref = smooth_map(size, 5), smooth_map(size, 5)[None, None]
    else:
        a = np.random.default_rng(6).normal(size=(3, size, size)).astype(np.float32)
        a_ref = a[None]
    ours = compute("faithfulness_correlation", handle, x, a, target, samples=16, subset=300, seed=11)
    metric = quantus.FaithfulnessCorrelation(nr_runs=16, subset_size=300, perturb_func=_replace_with_min,
                                             return_aggregate=False, disable_warnings=True)
    np.random.seed(11)
    ref = metric(model=handle.model, x_batch=x.numpy(), y_batch=np.array([target]), a_batch=a_ref, softmax=False,
                 device="cpu")[0]
    assert close(ours.value, ref), (ours.value, ref)
    assert abs(ours.value) > 1e-3  # a real correlation is compared, not two zeros


# ---- infidelity ---------------------------------------------------------------------------------
@pytest.mark.parametrize("model_name, normalize", [("resnet", True), ("tiny", False), ("tiny", True)])
def test_infidelity_matches_captum(request, model_name, normalize):
    handle, x, targets = request.getfixturevalue(model_name)
    size = x.shape[-1]
    for target, a in ((targets[0], smooth_map(size, 7)),
                      (targets[1], np.random.default_rng(8).normal(size=(3, size, size)).astype(np.float32) * 0.1)):
        noise = gaussian_perturbations((3, size, size), 8, 0.1, seed=3)
        ours = compute("infidelity", handle, x, a, target, normalize=normalize, perturbations=noise)
        attribution = torch.from_numpy(a).expand(3, size, size)[None] if a.ndim == 2 else torch.from_numpy(a)[None]

        def perturb(inputs):
            return noise, inputs - noise

        ref = captum_metrics.infidelity(handle.model, perturb, x, attribution, target=target, n_perturb_samples=8,
                                        normalize=normalize)
        assert close(ours.value, float(ref[0])), (ours.value, float(ref[0]))
        assert ours.value > 0
    # drawn from the seed when no perturbations are given: the same noise, the same value
    assert compute("infidelity", handle, x, a, target, normalize=normalize, samples=8, perturbation_std=0.1,
                   seed=3).value == pytest.approx(ours.value, rel=1e-9)


# ---- max-sensitivity ----------------------------------------------------------------------------
@pytest.mark.parametrize("model_name, method", [("resnet", "gradcam"), ("tiny", "saliency")])
def test_max_sensitivity_matches_captum(request, model_name, method):
    handle, x, targets = request.getfixturevalue(model_name)
    target, size = targets[0], x.shape[-1]
    explain = method_explainer(handle, method)
    noise = uniform_perturbations((3, size, size), 4, 0.02, seed=5)
    m0 = explain(handle.model, x, target)
    ours = compute("max_sensitivity", handle, x, m0, target, explain=explain, perturbations=noise)

    def explanation_func(inputs):
        inputs = inputs[0] if isinstance(inputs, tuple) else inputs  # Captum passes the original as (x,)
        return (torch.stack([torch.as_tensor(explain(handle.model, xi[None], target)) for xi in inputs]),)

    ref = captum_metrics.sensitivity_max(explanation_func, x, perturb_func=lambda inputs: inputs + noise,
                                         n_perturb_samples=4)
    assert close(ours.value, float(ref[0])), (ours.value, float(ref[0]))
    assert ours.value > 0


# ---- randomization: smooth MPRT, efficient MPRT, random logit -----------------------------------
def _quantus_saliency(model, x, target):
    return quantus.explain(model, x.detach().cpu().numpy(), np.array([target]), method="Saliency")[0]


def _shared_model_untouched(handle, before):
    return all(torch.equal(a, b) for a, b in zip(before, handle.model.state_dict().values())) and \
        hook_count(handle.model) == 0


@pytest.mark.parametrize("all_layers", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_smooth_mprt_matches_quantus(tiny, all_layers):
    handle, x, targets = tiny
    target = targets[0]
    before = [t.clone() for t in handle.model.state_dict().values()]
    ours = compute("smooth_mprt", handle, x, np.zeros((32, 32), np.float32), target, explain=_quantus_saliency,
                   samples=4, noise=0.1, seed=42, all_layers=all_layers)
    assert _shared_model_untouched(handle, before)
    metric = quantus.SmoothMPRT(nr_samples=4, noise_magnitude=0.1, seed=42, layer_order="bottom_up",
                                skip_layers=not all_layers, disable_warnings=True)
    np.random.seed(42)
    ref = metric(model=handle.model, x_batch=x.numpy(), y_batch=np.array([target]),
                 a_batch=ours.maps["original"][None], explain_func=quantus.explain,
                 explain_func_kwargs={"method": "Saliency"}, softmax=False, device="cpu")
    # Quantus re-denoises the original with the same noise draws: the same map (rank correlation 1)
    assert ref["original"][0] == pytest.approx(1.0, abs=1e-6)
    per_layer = [v[0] for k, v in ref.items() if k != "original"]
    assert close(ours.value, per_layer[-1]), (ours.value, per_layer[-1])
    if all_layers:
        assert len(per_layer) == len(ours.curves["per_layer"].y) == 5
        assert all(close(a, b) for a, b in zip(ours.curves["per_layer"].y, per_layer))
    assert ours.value < 0.9  # randomized weights change the saliency map


@pytest.mark.parametrize("all_layers", [False, True])
def test_efficient_mprt_matches_quantus(tiny, all_layers):
    handle, x, targets = tiny
    target = targets[1]
    explain = method_explainer(handle, "saliency")
    before = [t.clone() for t in handle.model.state_dict().values()]
    a = explain(handle.model, x, target)
    ours = compute("efficient_mprt", handle, x, a, target, explain=explain, all_layers=all_layers)
    assert _shared_model_untouched(handle, before)

    def explain_func(model, inputs, targets, **kwargs):
        return np.stack([explain(model, torch.from_numpy(inputs[i:i + 1]), int(targets[i]))
                         for i in range(len(inputs))])

    metric = quantus.EfficientMPRT(seed=42, layer_order="bottom_up", skip_layers=not all_layers,
                                   complexity_func_kwargs={"n_bins": 100}, disable_warnings=True)
    ref = metric(model=handle.model, x_batch=x.numpy(), y_batch=np.array([target]), a_batch=a[None],
                 explain_func=explain_func, softmax=True, device="cpu")[0]  # softmax: its model-entropy side score
    assert close(ours.value, ref), (ours.value, ref)
    if all_layers:
        layers = [v[0] for k, v in metric.explanation_scores_by_layer.items() if k != "orig"]
        assert all(close(a, b) for a, b in zip(ours.curves["per_layer"].y, layers)) and len(layers) == 5
    assert ours.value != 0


@pytest.mark.parametrize("model_name", ["resnet", "tiny"])
def test_random_logit_matches_quantus_with_2d_ssim(request, model_name):
    handle, x, targets = request.getfixturevalue(model_name)
    size = x.shape[-1]
    explain = method_explainer(handle, "gradcam")
    seen = []

    def explain_func(model, inputs, targets, **kwargs):
        seen.extend(int(t) for t in targets)
        return np.stack([explain(model, torch.from_numpy(inputs[i:i + 1]), int(targets[i]))
                         for i in range(len(inputs))])

    def ssim_2d(a, b, batched=False, **kwargs):
        return [quantus_ssim(aa.reshape(size, size), bb.reshape(size, size)) for aa, bb in zip(a, b)]

    for target in targets:
        a = explain(handle.model, x, target)
        ours = compute("random_logit", handle, x, a, target, explain=explain, seed=42)
        seen.clear()
        metric = quantus.RandomLogit(num_classes=handle.num_classes, seed=42, similarity_func=ssim_2d,
                                     disable_warnings=True)
        ref = metric(model=handle.model, x_batch=x.numpy(), y_batch=np.array([target]), a_batch=a[None],
                     explain_func=explain_func, softmax=False, device="cpu")[0]
        assert seen == [ours.details["off_class"]] and ours.details["off_class"] != target
        assert close(ours.value, ref), (ours.value, ref)
