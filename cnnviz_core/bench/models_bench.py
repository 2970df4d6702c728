"""Per-model figures: floors, Grad-CAM and the compare requests against pytorch-grad-cam and Captum,
Ablation-CAM against pytorch-grad-cam, peak memory.

Floors, measured in the same process on the same model:

* CAM floor: one forward with the target layer's output captured (a leaf, so nothing before the
  layer is recorded) + the backward of the target logit to that layer only, parameters frozen;
* input floor: one forward + the backward of the target logit to the input, parameters frozen.

The "compare all gradient-CAM variants" request is every registered CAM-family method that only
needs gradients and is not long-running (:func:`gradient_cam_variants`, read from ``METHODS``), as
ONE ``explain_detailed`` call, timed against the input floor.
"""
from __future__ import annotations

import argparse
import copy
import ctypes
import statistics
import subprocess
import sys
from typing import Any, Callable

import torch
from torch import nn

from ..attribution import METHODS, explain, explain_detailed
from ..attribution.passes import SHARED_PRODUCTS
from ..models import ModelHandle, load_model
from .timing import Timing, interleaved, ratio

SIX = ["gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "guided_backprop"]
PGC_SIX = ["GradCAM", "GradCAMPlusPlus", "XGradCAM", "LayerCAM", "HiResCAM"]
VARIANTS_GOAL = 1.35


def gradient_cam_variants() -> list[str]:
    """Registry keys of the "compare all gradient-CAM variants" request: CAM family, needs exactly
    ``("gradients",)``, not long-running, passes among the shared pass's products (in METHODS order)."""
    return [k for k, m in METHODS.items()
            if m.family == "cam" and set(m.needs) == {"gradients"} and not m.long_running
            and frozenset(m.passes) <= SHARED_PRODUCTS]


def cam_floor(handle: ModelHandle, x: torch.Tensor, layer: str, target: int) -> None:
    store: dict[str, torch.Tensor] = {}

    def leaf(_m: nn.Module, _i: object, out: torch.Tensor) -> torch.Tensor:
        store["a"] = out.detach().requires_grad_(True)
        return store["a"]

    hook = handle.module(layer).register_forward_hook(leaf)
    try:
        with torch.enable_grad():
            logits = handle.model(x)
            torch.autograd.grad(logits[0, target], store["a"])
    finally:
        hook.remove()


def input_floor(handle: ModelHandle, x: torch.Tensor, target: int) -> None:
    xi = x.detach().requires_grad_(True)
    with torch.enable_grad():
        torch.autograd.grad(handle.model(xi)[0, target], xi)


def reference_model(model: nn.Module) -> nn.Module:
    """A deep copy as a library user's model: parameters that require grad, no in-place ReLU
    (captum's ReLU hooks reject them)."""
    ref = copy.deepcopy(model)
    for p in ref.parameters():
        p.requires_grad_(True)
    for m in ref.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    return ref.eval()


def reference_cases(handle: ModelHandle, layer: str, target: int) -> dict[str, Callable[[torch.Tensor], object]]:
    import pytorch_grad_cam as pgc
    from captum.attr import GuidedBackprop, LayerAttribution, LayerGradCam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    ref = reference_model(handle.model)
    ref_layer = ref.get_submodule(layer)
    targets = [ClassifierOutputTarget(target)]

    def pgc_cam(name: str, x: torch.Tensor):
        with getattr(pgc, name)(model=ref, target_layers=[ref_layer]) as cam:
            return cam(input_tensor=x, targets=targets)

    def pgc_six(x: torch.Tensor):
        for name in PGC_SIX:
            pgc_cam(name, x)
        return pgc.GuidedBackpropReLUModel(copy.deepcopy(ref), device=x.device)(x, target)

    def captum_gradcam(x: torch.Tensor):
        attr = LayerGradCam(ref, ref_layer).attribute(x, target=target, relu_attributions=True)
        return LayerAttribution.interpolate(attr, x.shape[-2:], interpolate_mode="bilinear")

    def captum_two(x: torch.Tensor):
        return captum_gradcam(x), GuidedBackprop(ref).attribute(x, target=target)

    return {"pgc gradcam": lambda x: pgc_cam("GradCAM", x), "captum gradcam": captum_gradcam,
            "pgc six": pgc_six, "captum gradcam+guided": captum_two}


def interleaved_medians(cases: dict[str, Callable[[torch.Tensor], object]], x: torch.Tensor,
                        repeats: int) -> dict[str, float]:
    """Medians (s) of :func:`~.timing.interleaved` runs (one warm-up round)."""
    return {k: t.median for k, t in interleaved(cases, x, repeats).items()}


class VariantsRequest:
    """The compare-all-variants request as a timed case; keeps each method's seconds per run."""

    def __init__(self, handle: ModelHandle, target: int, keys: list[str]) -> None:
        self.handle, self.target, self.keys = handle, target, keys
        self.seconds: dict[str, list[float]] = {k: [] for k in keys}
        self.errors: dict[str, str] = {}
        self.passes_run = 0

    def __call__(self, x: torch.Tensor) -> object:
        res = explain_detailed(self.handle, x, self.keys, self.target, cache=None, on_error="collect")
        for k, r in res.items():
            self.seconds[k].append(r.seconds)
            if r.error:
                self.errors[k] = r.error
        self.passes_run = max(int(r.info.get("passes_run", 0)) for r in res.values() if not r.error)
        return res

    def breakdown(self) -> str:
        parts = [f"{k} {1000 * statistics.median(v):.1f}" for k, v in self.seconds.items() if v]
        return "per method (median ms; the first includes the shared pass): " + ", ".join(parts)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field + ":"))


def reset_peak_rss() -> int:
    """Return freed heap to the OS, reset the peak RSS (Linux ``clear_refs`` 5), return RSS in KiB."""
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    return _status_kib("VmRSS")


def memory_probe(name: str, what: str, size: int) -> float:
    """Run in a fresh process: peak RSS increase (MiB) of one call of ``what`` (Linux only)."""
    handle = load_model(name, weights=None)
    x = torch.randn(1, 3, size, size)
    target, layer = 0, handle.default_layer
    before = reset_peak_rss()
    if what == "input_floor":
        input_floor(handle, x, target)
    elif what == "cam_floor":
        cam_floor(handle, x, layer, target)
    else:
        explain(handle, x, what.split(","), target, cache=None)
    return (_status_kib("VmHWM") - before) / 1024


def measured_memory(name: str, what: str, size: int, runs: int = 3) -> float:
    values = []
    for _ in range(runs):
        proc = subprocess.run([sys.executable, "-m", "cnnviz_core.bench", "--memory-probe", what, "--models", name,
                               "--size", str(size)], capture_output=True, text=True, check=True)
        values.append(float(proc.stdout.strip().splitlines()[-1]))
    return statistics.median(values)


def slow_cases(handle: ModelHandle, x: torch.Tensor, layer: str, target: int, skip: bool,
               repeats: int) -> dict[str, Timing]:
    """Ablation-CAM, ours vs pytorch-grad-cam (with ``skip``: theirs ablates 10 % of the channels and
    its times are multiplied by 10, labelled), and ours Score-CAM top-64, interleaved and repeated."""
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    ref = reference_model(handle.model)
    targets = [ClassifierOutputTarget(target)]
    share = 0.1 if skip else 1.0
    pgc_name = "pgc ablationcam" + (" (10% of channels, x10)" if skip else "")

    def pgc_ablation(xr: torch.Tensor) -> object:
        with pgc.AblationCAM(model=ref, target_layers=[ref.get_submodule(layer)],
                             ratio_channels_to_ablate=share) as cam:
            return cam(input_tensor=xr, targets=targets)

    cases: dict[str, Callable[[torch.Tensor], object]] = {
        "ours ablationcam": lambda xr: explain(handle, xr, "ablationcam", target, cache=None),
        pgc_name: pgc_ablation,
        "ours scorecam top-64 (approx.)": lambda xr: explain(handle, xr, "scorecam", target, cache=None,
                                                             channels=64, batch_size=16),
    }
    t = interleaved(cases, x, repeats, warmup=0)
    t[pgc_name] = Timing(tuple(v / share for v in t[pgc_name].samples))
    return t


def bench_model(name: str, args: argparse.Namespace) -> dict[str, Any]:
    handle = load_model(name, weights=None)
    x = torch.randn(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(1))
    layer = handle.default_layer
    target = int(handle.forward(x)[0].argmax())
    variants = VariantsRequest(handle, target, gradient_cam_variants())

    def forward(xr: torch.Tensor) -> object:
        with torch.inference_mode():
            return handle.model(xr)

    cases: dict[str, Callable[[torch.Tensor], object]] = {
        "forward": forward,
        "CAM floor": lambda xr: cam_floor(handle, xr, layer, target),
        "input floor": lambda xr: input_floor(handle, xr, target),
        "ours gradcam": lambda xr: explain(handle, xr, "gradcam", target, cache=None),
        "ours six": lambda xr: explain(handle, xr, SIX, target, cache=None),
        "ours gradient-CAM variants": variants,
        **reference_cases(handle, layer, target),
    }
    t = interleaved(cases, x, args.repeats)
    for k in variants.seconds:  # drop the warm-up round's seconds
        variants.seconds[k] = variants.seconds[k][1:]
    t.update(slow_cases(handle, x, layer, target, args.skip_slow_references, args.slow_repeats))
    memory = {"input floor": measured_memory(name, "input_floor", args.size),
              "six": measured_memory(name, ",".join(SIX), args.size)}
    report(name, t, variants, memory, args)
    return {"timings": {k: v.as_dict() for k, v in t.items()}, "memory_mib": memory,
            "variants": variants.keys, "variants_ratio": ratio(t["ours gradient-CAM variants"], t["input floor"])}


def report(name: str, t: dict[str, Timing], variants: VariantsRequest, memory: dict[str, float],
           args: argparse.Namespace) -> None:
    print(f"\n== {name}: random weights, {args.size} px, CPU, {torch.get_num_threads()} threads, "
          f"{args.repeats} interleaved rounds in alternating order: median [min-max, n] ==")
    for k in ("forward", "CAM floor", "input floor"):
        print(f"  {k:<24} {t[k].fmt('ms')}")
    cf, inf = t["CAM floor"], t["input floor"]
    print(f"  gradcam   ours {t['ours gradcam'].fmt('ms')} = {ratio(t['ours gradcam'], cf):4.2f}x CAM floor")
    print(f"            pgc {t['pgc gradcam'].fmt('ms')} = {ratio(t['pgc gradcam'], cf):4.2f}x | "
          f"captum {t['captum gradcam'].fmt('ms')} = {ratio(t['captum gradcam'], cf):4.2f}x")
    print(f"  six       ours {t['ours six'].fmt('ms')} = {ratio(t['ours six'], inf):4.2f}x input floor")
    print(f"            pgc (6 objects) {t['pgc six'].fmt('ms')} = {ratio(t['pgc six'], t['ours six']):4.1f}x "
          f"slower than ours | captum gradcam+guided only {t['captum gradcam+guided'].fmt('ms')}")
    v = t["ours gradient-CAM variants"]
    r = ratio(v, inf)
    print(f"  compare all gradient-CAM variants ({len(variants.keys)}: {', '.join(variants.keys)}; "
          f"{variants.passes_run} main pass(es))")
    print(f"            ours {v.fmt('ms')} = {r:4.2f}x input floor "
          f"(goal <= {VARIANTS_GOAL}x: {'met' if r <= VARIANTS_GOAL else 'NOT met'})")
    print(f"            {variants.breakdown()}")
    for k, err in variants.errors.items():
        print(f"            {k} unavailable here: {err}")
    print(f"  slow cases: {args.slow_repeats} interleaved rounds in alternating order")
    for k, tk in t.items():
        if "ablation" in k or "scorecam" in k:
            print(f"  {k:<40} {tk.fmt('s')}")
    pgc_abl = next(k for k in t if k.startswith("pgc ablationcam"))
    print(f"  ablationcam: ours {ratio(t[pgc_abl], t['ours ablationcam']):.0f}x faster than pgc (ratio of medians)")
    mem_in, mem_six = memory["input floor"], memory["six"]
    print(f"  peak memory: input floor +{mem_in:.0f} MiB, compare-six +{mem_six:.0f} MiB "
          f"= {mem_six / max(mem_in, 1e-9):.2f}x (peak-RSS delta, fresh process, median of 3)", flush=True)
