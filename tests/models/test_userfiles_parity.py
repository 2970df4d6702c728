"""Parity on user files (slow): Grad-CAM vs pytorch-grad-cam and guided backprop vs Captum, ours
computed through the loaded file (state_dict, checkpoint, safetensors, .pt2, timm), the references
on the ORIGINAL module, same input: Pearson r >= 0.99. TorchScript: saliency vs Captum."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from cnnviz_core import UserModelOptions, explain, load_model
from cnnviz_core.bench.models_bench import reference_model as reference_copy  # a library user's copy of the model
from user_model_files import (
    SIZE, export_program, fine_tuned, photo, save_safetensors, save_state, timm_model, trace_script,
)

pgc = pytest.importorskip("pytorch_grad_cam")
captum_attr = pytest.importorskip("captum.attr")

pytestmark = pytest.mark.slow
R_MIN = 0.99
PARITY_SIZE = 96  # state_dicts: a 3x3 layer4 map; the .pt2 runs at its own 64 px
FIGURES: dict[str, float] = {}


@pytest.fixture(scope="module", autouse=True)
def signature_cache(tmp_path_factory):
    path = tmp_path_factory.getbasetemp() / "cnnviz-cache"
    path.mkdir(exist_ok=True)
    old = os.environ.get("CNNVIZ_CACHE_DIR")
    os.environ["CNNVIZ_CACHE_DIR"] = str(path)
    yield
    print("\nparity r (min over targets):", {k: round(v, 5) for k, v in sorted(FIGURES.items())})
    if old is None:
        os.environ.pop("CNNVIZ_CACHE_DIR", None)
    else:
        os.environ["CNNVIZ_CACHE_DIR"] = old


def pearson(a, b) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.std() == 0 or b.std() == 0:  # e.g. a CAM that ReLU zeroes everywhere, on both sides
        return 1.0 if np.allclose(a, b) else 0.0
    return float(np.corrcoef(a, b)[0, 1])


def _minmax(m: np.ndarray) -> np.ndarray:
    m = np.maximum(m, 0)
    return (m - m.min()) / (m.max() - m.min()) if m.max() > m.min() else np.zeros_like(m)


# id -> (build original, write file, options, guided backprop comparable?)
CASES = {
    "resnet18-3.pth": (lambda: fine_tuned("resnet18", 3, 3), lambda m, d: save_state(m, d / "a.pth"), None, True),
    "mobilenet_v3_small-7.ckpt": (lambda: fine_tuned("mobilenet_v3_small", 7, 7),
                                  lambda m, d: save_state(m, d / "b.ckpt", wrapper="model_state_dict",
                                                          prefix="module."), None, True),
    "squeezenet1_1-6.safetensors": (lambda: fine_tuned("squeezenet1_1", 6, 6),
                                    lambda m, d: save_safetensors(m, d / "c.safetensors"), None, True),
    "efficientnet_b0-4.pth": (lambda: fine_tuned("efficientnet_b0", 4, 4), lambda m, d: save_state(m, d / "d.pth"),
                              None, False),  # SiLU only: guided backprop does not apply
    "resnet18-3.pt2": (lambda: fine_tuned("resnet18", 3, 3), lambda m, d: export_program(m, d / "e.pt2", SIZE),
                       None, True),
    "timm-mobilenetv3_small_050-5.pth": (lambda: timm_model("mobilenetv3_small_050", 5),
                                         lambda m, d: save_state(m, d / "f.pth"),
                                         UserModelOptions(arch="timm:mobilenetv3_small_050"), True),
}


@pytest.fixture(scope="module", params=list(CASES))
def case(request, tmp_path_factory):
    build, write, options, gb = CASES[request.param]
    model = build()
    path = write(model, tmp_path_factory.mktemp("parity"))
    at = None if path.suffix == ".pt2" else PARITY_SIZE  # a static program brings its own 64 px
    handle = load_model(path, device="cpu", options=(options or UserModelOptions()).over(
        UserModelOptions(input_size=at)))
    x = handle.preprocess(photo(4))
    with torch.no_grad():
        logits = model(x)[0]
    torch.testing.assert_close(handle.forward(x)[0], logits, rtol=1e-4, atol=1e-5)
    order = logits.argsort(descending=True)
    targets = [int(order[0]), int(order[1])]
    return request.param, handle, model, x, targets, gb


def test_gradcam_matches_pytorch_grad_cam(case):
    key, handle, model, x, targets, _ = case
    ref = reference_copy(model)
    layer = ref.get_submodule(handle.default_layer)  # the same path in the original module
    worst = 1.0
    for target in targets:
        ours = explain(handle, x, "gradcam", target=target, cache=None)["gradcam"]
        with pgc.GradCAM(model=ref, target_layers=[layer]) as cam:
            theirs = cam(input_tensor=x.clone(), targets=[lambda out, t=target: out[t] * 1e6])[0]
        r = pearson(ours, _minmax(theirs))
        worst = min(worst, r)
        assert r >= R_MIN, f"{key} gradcam target {target}: r={r:.4f}"
    FIGURES[f"gradcam {key}"] = worst


def test_guided_backprop_matches_captum(case):
    key, handle, model, x, targets, gb = case
    if not gb:
        pytest.skip("no ReLU: guided backprop is not defined for this network")
    ref = reference_copy(model)
    worst = 1.0
    for target in targets:
        ours = explain(handle, x, "guided_backprop", target=target, cache=None)["guided_backprop"]
        theirs = captum_attr.GuidedBackprop(ref).attribute(x.clone(), target=target)[0].detach().numpy()
        r = pearson(ours, theirs)
        worst = min(worst, r)
        assert r >= R_MIN, f"{key} guided backprop target {target}: r={r:.4f}"
    FIGURES[f"guided_backprop {key}"] = worst


def test_torchscript_saliency_matches_captum(tmp_path):
    model = fine_tuned("resnet18", 3, 3)
    handle = load_model(trace_script(model, tmp_path / "r.ts"), device="cpu", options=UserModelOptions(input_size=SIZE))
    x = handle.preprocess(photo(4))
    ref = reference_copy(model)
    for target in range(3):
        ours = explain(handle, x, "saliency", target=target, cache=None)["saliency"]
        theirs = captum_attr.Saliency(ref).attribute(x.clone(), target=target, abs=False)[0].numpy()
        r = pearson(ours, theirs)
        FIGURES[f"saliency r.ts t{target}"] = r
        assert r >= R_MIN
