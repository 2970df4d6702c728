"""Attribution benchmark: ``python -m cnnviz_core.bench [--models resnet50,vgg16] [--repeats 7] [--quick]``.

One process, random weights, CPU. Every timed case runs once as warm-up, then ``--repeats`` times
interleaved (case A, B, C, A, B, C, ...), each run on a freshly perturbed input so no cache can
answer; the median is reported. Floors, measured in the same process on the same model:

* CAM floor: one forward with the target layer's output captured (a leaf, so nothing before the
  layer is recorded) + the backward of the target logit to that layer only, parameters frozen;
* input floor: one forward + the backward of the target logit to the input, parameters frozen.

References (test/bench-only dependencies): pytorch-grad-cam ("pgc", used as its README shows: one
object per method, on a deep copy whose parameters require grad, as a user's model would) and captum.
Slow references run once: pgc's Ablation-CAM once per model (with ``--skip-slow-references`` it
ablates 10 % of the channels and is extrapolated x10, labelled), and the exact all-channel Score-CAM
comparison (ours vs pgc, batch 16 both) once on ``--scorecam-model`` at ``--scorecam-size``
(default resnet18, 112 px: 512 masked forwards each side), skipped with ``--quick``.

Peak memory: each measured call runs in a fresh subprocess (model and input built first); the heap is
trimmed (``malloc_trim``) and the kernel's peak-RSS mark reset (``/proc/self/clear_refs`` = 5), then
the figure is ``VmHWM`` after the call minus ``VmRSS`` before it; median of 3 processes (Linux).
(``ru_maxrss`` cannot be reset and is dominated by model construction; torch's CPU allocator has no
peak counter.)
``--units`` runs the unit benches of :mod:`cnnviz_core.attribution.unitbench` instead.
``--pointing-game N`` prints the pointing-game table of shapes-cnn on N held-out two-object scenes.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import ctypes
import io
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from typing import Callable

import torch
from torch import nn

from .attribution import explain
from .models import ModelHandle, load_model

SIX = ["gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "guided_backprop"]
PGC_SIX = ["GradCAM", "GradCAMPlusPlus", "XGradCAM", "LayerCAM", "HiResCAM"]


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
    ref = copy.deepcopy(model)
    for p in ref.parameters():
        p.requires_grad_(True)
    for m in ref.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False  # captum's ReLU hooks reject in-place ReLUs
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
    gen = torch.Generator().manual_seed(0)
    for fn in cases.values():  # warm-up
        fn(x + 1e-3 * torch.randn(x.shape, generator=gen))
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            xr = x + 1e-3 * torch.randn(x.shape, generator=gen)
            start = time.perf_counter()
            fn(xr)
            times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def once(fn: Callable[[], object]) -> float:
    """Seconds of one call; the reference libraries' tqdm bars (stderr) are swallowed."""
    start = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):
        fn()
    return time.perf_counter() - start


def slow_cases(handle: ModelHandle, x: torch.Tensor, layer: str, target: int, skip: bool) -> dict[str, float]:
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    ref = reference_model(handle.model)
    targets = [ClassifierOutputTarget(target)]
    out = {"ours ablationcam": statistics.median(
        once(lambda: explain(handle, x + 1e-3 * i, "ablationcam", target, cache=None)) for i in range(3))}
    ratio = 0.1 if skip else 1.0
    with pgc.AblationCAM(model=ref, target_layers=[ref.get_submodule(layer)], ratio_channels_to_ablate=ratio) as cam:
        out["pgc ablationcam" + (" (10% of channels, x10)" if skip else "")] = \
            once(lambda: cam(input_tensor=x, targets=targets)) / ratio
    out["ours scorecam top-64 (approx.)"] = once(lambda: explain(handle, x, "scorecam", target, cache=None,
                                                                channels=64, batch_size=16))
    return out


def scorecam_comparison(name: str, size: int) -> dict[str, float]:
    """Exact Score-CAM over all channels, ours vs pgc, batch 16 both, run once each (interleaved
    order ours, pgc, ours, pgc would double a many-minute run; one each, same input)."""
    import pytorch_grad_cam as pgc

    handle = load_model(name, weights=None)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(2))
    target, layer = int(handle.forward(x)[0].argmax()), handle.default_layer
    ref = reference_model(handle.model)
    explain(handle, x, "scorecam", target, cache=None, channels=16)  # warm-up
    out = {"ours": once(lambda: explain(handle, x, "scorecam", target, cache=None, batch_size=16))}
    with pgc.ScoreCAM(model=ref, target_layers=[ref.get_submodule(layer)]) as cam:
        cam.batch_size = 16
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        out["pgc"] = once(lambda: cam(input_tensor=x + 1e-3, targets=[ClassifierOutputTarget(target)]))
    print(f"\n== Score-CAM exact, {name} {size} px, batch 16: ours {out['ours']:.1f} s, pgc {out['pgc']:.1f} s "
          f"= ours {out['pgc'] / out['ours']:.2f}x faster ==", flush=True)
    return out


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


def bench_model(name: str, args: argparse.Namespace) -> dict[str, float]:
    handle = load_model(name, weights=None)
    x = torch.randn(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(1))
    layer = handle.default_layer
    target = int(handle.forward(x)[0].argmax())

    def forward(xr: torch.Tensor) -> object:
        with torch.inference_mode():
            return handle.model(xr)

    cases: dict[str, Callable[[torch.Tensor], object]] = {
        "forward": forward,
        "CAM floor": lambda xr: cam_floor(handle, xr, layer, target),
        "input floor": lambda xr: input_floor(handle, xr, target),
        "ours gradcam": lambda xr: explain(handle, xr, "gradcam", target, cache=None),
        "ours six": lambda xr: explain(handle, xr, SIX, target, cache=None),
        **reference_cases(handle, layer, target),
    }
    t = interleaved_medians(cases, x, args.repeats)
    t.update(slow_cases(handle, x, layer, target, args.skip_slow_references))
    t["memory input floor MiB"] = measured_memory(name, "input_floor", args.size)
    t["memory six MiB"] = measured_memory(name, ",".join(SIX), args.size)
    report(name, t, args)
    return t


def report(name: str, t: dict[str, float], args: argparse.Namespace) -> None:
    ms = {k: v * 1000 for k, v in t.items() if "MiB" not in k}
    print(f"\n== {name}: random weights, {args.size} px, CPU, {torch.get_num_threads()} threads, "
          f"median of {args.repeats} interleaved runs ==")
    for k in ("forward", "CAM floor", "input floor"):
        print(f"  {k:<24} {ms[k]:9.1f} ms")
    cf, inf = ms["CAM floor"], ms["input floor"]
    print(f"  gradcam   ours {ms['ours gradcam']:8.1f} ms = {ms['ours gradcam'] / cf:4.2f}x CAM floor | "
          f"pgc {ms['pgc gradcam']:8.1f} ms = {ms['pgc gradcam'] / cf:4.2f}x | "
          f"captum {ms['captum gradcam']:8.1f} ms = {ms['captum gradcam'] / cf:4.2f}x")
    print(f"  six       ours {ms['ours six']:8.1f} ms = {ms['ours six'] / inf:4.2f}x input floor | "
          f"pgc (6 objects) {ms['pgc six']:8.1f} ms = {ms['pgc six'] / ms['ours six']:4.1f}x slower than ours | "
          f"captum gradcam+guided only {ms['captum gradcam+guided']:8.1f} ms")
    for k, v in ms.items():
        if "ablation" in k or "scorecam" in k:
            print(f"  {k:<40} {v / 1000:9.2f} s")
    pgc_abl = next(v for k, v in ms.items() if k.startswith("pgc ablationcam"))
    print(f"  ablationcam: ours {pgc_abl / ms['ours ablationcam']:.0f}x faster than pgc")
    mem_in, mem_six = t["memory input floor MiB"], t["memory six MiB"]
    print(f"  peak memory: input floor +{mem_in:.0f} MiB, compare-six +{mem_six:.0f} MiB "
          f"= {mem_six / max(mem_in, 1e-9):.2f}x (peak-RSS delta, fresh process, median of 3)", flush=True)


def pointing_game(count: int) -> None:
    from .attribution import CAM_METHODS
    from .metrics import format_table, pointing_game_table
    from .models import get_entry
    from .scenes import generate_scene

    handle = load_model("shapes-cnn", weights=get_entry("shapes-cnn").available_weights())
    scenes = [generate_scene(20_000, i, objects=2) for i in range(count)]
    methods = [m for m in CAM_METHODS if m != "cam"] + ["cam", "guided_backprop"]
    print(f"shapes-cnn ({handle.weights_label}), {count} two-object scenes (seed 20000), one target per object")
    rows = pointing_game_table(handle, methods, scenes, tolerance=(0.0, 4.0), channels=None)
    print(format_table(rows), flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cnnviz_core.bench", description=__doc__.split("\n")[0])
    p.add_argument("--models", default=None, help="comma-separated (default resnet50,vgg16; --quick: resnet18)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--quick", action="store_true", help="resnet18, 3 repeats, slow references skipped")
    p.add_argument("--skip-slow-references", action="store_true",
                   help="pgc Ablation-CAM on 10%% of channels, extrapolated x10 (labelled)")
    p.add_argument("--scorecam-model", default="resnet50", help="model of the exact Score-CAM comparison")
    p.add_argument("--scorecam-size", type=int, default=224)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    p.add_argument("--pointing-game", type=int, default=0, metavar="N")
    p.add_argument("--units", action="store_true",
                   help="unit benches: a neuron's projections vs the full-network floor (--models, default "
                        "resnet50,vgg16), top activations over --scenes shapes-cnn scenes vs a plain batched forward")
    p.add_argument("--scenes", type=int, default=1000, help="scenes of the --units top-activations bench")
    p.add_argument("--memory-probe", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("TQDM_DISABLE", "1")  # pgc's progress bars
    warnings.filterwarnings("ignore", module="captum")
    warnings.filterwarnings("ignore", module="pytorch_grad_cam")
    if args.memory_probe:
        print(memory_probe(args.models, args.memory_probe, args.size))
        return 0
    if args.pointing_game:
        pointing_game(args.pointing_game)
        return 0
    if args.units:
        from .attribution import unitbench

        figures = unitbench.main((args.models or "resnet50,vgg16").split(","), args.size, min(args.repeats, 5),
                                 args.scenes)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(figures, fh, indent=2)
        return 0
    if args.quick:
        args.repeats = min(args.repeats, 3)
        args.skip_slow_references = True
    names = (args.models or ("resnet18" if args.quick else "resnet50,vgg16")).split(",")
    figures: dict[str, dict[str, float]] = {name: bench_model(name, args) for name in names}
    if not args.quick:
        figures["scorecam"] = scorecam_comparison(args.scorecam_model, args.scorecam_size)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
