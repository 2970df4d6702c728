"""GPU readiness: ``python -m cnnviz_core.gpucheck`` (``make gpu-check``) on a machine with CUDA.

1. Parity: every method of :data:`cnnviz_core.METHODS`, then the unit-target methods on a channel
   (where the engine has unit targets), on CUDA against CPU with the same weights, input and class:
   random-weight resnet18 / vgg16 at 112 px and the bundled shapes-cnn. Pearson r of the raw maps
   >= :data:`R_MIN`, in strict fp32 (TF32 off), SmoothGrad noise 0 (the devices' generators differ).
2. A few Deep Dream (resnet18) and style-transfer (vgg16) steps: r >= :data:`R_MIN_IMAGE` of the images.
3. Bench: median ms (after a warm-up, synchronized) of a Grad-CAM comparison request, a batched
   forward, Deep Dream and style transfer (random weights) in strict fp32, fp32 with TF32
   convolutions (torch's default), channels-last, autocast fp16 and bf16 (n/a where it does not apply).

Each check runs in its own try/except, the last line sums up, and the exit status is 1 only if a
check failed on CUDA. Without CUDA the script says so in one line and exits 0.
"""
from __future__ import annotations

import contextlib
import statistics
import sys
import time
import traceback
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch
import torch.nn.functional as F

from .attribution import METHODS, explain_detailed
from .bench import SIX
from .featureviz.dream import deep_dream
from .featureviz.style import style_transfer
from .images import SAMPLES, sample_image
from .models import load_model

try:  # unit targets are newer than the rest of the engine
    from .attribution import ChannelTarget
except ImportError:  # pragma: no cover - depends on the engine's version
    ChannelTarget = None

R_MIN, R_MIN_IMAGE = 0.999, 0.99
MODELS = ("shapes-cnn", "resnet18", "vgg16")
SIZE = 112  # input side of the ImageNet models in the parity check (shapes-cnn keeps its own)
FLAT = dict(samples=8, noise=0.0, steps=16)  # SmoothGrad / Integrated Gradients, kept small
MODES = ("fp32 strict", "fp32 TF32", "channels-last", "fp16", "bf16")
NO_CUDA = "gpu-check: no CUDA device here (torch.cuda.is_available() is False); nothing to check."


def pearson(a: Any, b: Any) -> float:
    """Pearson r of two flattened maps (NaN for different shapes; a constant map: 1.0 if equal, else 0.0)."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.shape != b.shape:
        return float("nan")
    da, db = a - a.mean(), b - b.mean()
    na, nb = float(np.sqrt(da @ da)), float(np.sqrt(db @ db))
    if na == 0.0 or nb == 0.0:
        return 1.0 if np.allclose(a, b, rtol=1e-4, atol=1e-6) else 0.0
    return float(da @ db / (na * nb))


def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float]:
    """``{method: r}`` over the union of two ``{method: map}`` dicts. A method only one side has gives NaN."""
    return {k: pearson(a[k], b[k]) if k in a and k in b else float("nan") for k in {**a, **b}}


def model_maps(handle: Any, x: torch.Tensor, target: Any, methods: Any) -> tuple[dict[str, np.ndarray], set]:
    """``({method: raw map}, {methods the model cannot apply})`` for one input on ``handle``'s device."""
    res = explain_detailed(handle, x.to(handle.device), list(methods), target, cache=None, on_error="collect",
                           **FLAT)
    return {k: r.raw for k, r in res.items() if r.error is None}, {k for k, r in res.items() if r.error}


def _inputs(handle: Any) -> tuple[Any, torch.Tensor]:
    scene = handle.name.startswith("shapes")
    img = sample_image(next(k for k in SAMPLES if k.startswith("Scene" if scene else "Photo")))
    x = handle.preprocess(img).cpu()
    return img, x if scene else F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", antialias=True)


def parity(name: str, devices: tuple[str, str] = ("cpu", "cuda")) -> list[tuple[str, str, float, str]]:
    """``[(model, method, r, note)]``: the maps of every method (then the unit methods) on
    ``devices[1]`` against ``devices[0]``. The note is "" when the pair is checked, or says why not."""
    ref, other = (load_model(name, "default" if name.startswith("shapes") else None, d) for d in devices)
    _, x = _inputs(ref)
    with torch.no_grad():
        cls = int(ref.forward(x.to(ref.device)).argmax(1)[0])
    runs = [(cls, tuple(METHODS), "")]
    if ChannelTarget is not None:
        unit_methods = tuple(k for k, m in METHODS.items() if getattr(m, "unit_targets", False))
        runs.append((ChannelTarget(ref.default_layer, 0), unit_methods, " @channel 0"))
    rows = [] if ChannelTarget else [(name, "unit projection", float("nan"), "skipped: no ChannelTarget in the engine")]
    for target, methods, tag in runs:
        (a, na_a), (b, na_b) = (model_maps(h, x, target, methods) for h in (ref, other))
        rows += [(name, method + tag, r, "") for method, r in compare(a, b).items()]
        rows += [(name, m + tag, float("nan"), "n/a on both") for m in sorted(na_a & na_b)]
    return rows


def _images(devices: tuple[str, str] = ("cpu", "cuda")) -> Iterator[tuple[str, str, float, str]]:
    """Rows like :func:`parity`'s: the r of the images a few Deep Dream / style steps make on each device."""
    dream = lambda h, img: deep_dream(h, img, h.default_layer, steps=3, octaves=2, max_side=96)  # noqa: E731
    style = lambda h, img: style_transfer(h, img, img.rotate(90), steps=3, size=64, optimizer="adam")  # noqa: E731
    for name, label, run in (("resnet18", "deep_dream", dream), ("vgg16", "style_transfer", style)):
        a, b = (run(h, _inputs(h)[0]).image for h in (load_model(name, None, d) for d in devices))
        yield name, label, pearson(a, b), "image"


@contextlib.contextmanager
def _mode(mode: str, model: torch.nn.Module) -> Iterator[tuple[str, bool]]:
    """Apply a bench mode; yields ``(precision, channels_last)`` for the APIs that take them."""
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = mode != "fp32 strict"
    half = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(mode)
    if mode == "channels-last":
        model.to(memory_format=torch.channels_last)
    try:
        with torch.autocast("cuda", dtype=half) if half else contextlib.nullcontext():
            yield {"fp16": "float16", "bf16": "bfloat16"}.get(mode, "float32"), mode == "channels-last"
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
        model.to(memory_format=torch.contiguous_format)


def _ms(fn: Callable[[], Any], repeats: int = 5) -> float:
    """Median wall time in ms of ``repeats`` synchronized runs, after one warm-up run."""
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:]) * 1000


def bench() -> tuple[list[tuple[str, list[str]]], list[str]]:
    """``([(case, [cell per mode])], [why a cell is n/a])``."""
    r50, vgg = load_model("resnet50", None, "cuda"), load_model("vgg16", None, "cuda")
    img = _inputs(r50)[0]
    x = r50.preprocess(img).to(r50.device)
    batch, forward = x.repeat(64, 1, 1, 1), torch.inference_mode()(r50.model.__call__)
    cl = lambda t, on: t.contiguous(memory_format=torch.channels_last) if on else t  # noqa: E731
    cases = {
        f"Grad-CAM compare ({len(SIX)} methods), resnet50 224 px": (r50, lambda p, c: explain_detailed(
            r50, cl(x, c), SIX, 0, cache=None)),
        "batched forward, resnet50, 64 x 224 px": (r50, lambda p, c: forward(cl(batch, c))),
        "Deep Dream, resnet50, 10 steps 256 px": (r50, lambda p, c: deep_dream(
            r50, img, r50.default_layer, steps=10, octaves=1, max_side=256, precision=p, channels_last=c)),
        "style transfer, vgg16, 10 Adam steps 256 px": (vgg, lambda p, c: style_transfer(
            vgg, img, img.rotate(90), steps=10, size=256, optimizer="adam", precision=p, channels_last=c)),
    }
    rows, notes = [], []
    for label, (handle, fn) in cases.items():
        cells = []
        for mode in MODES:
            try:
                with _mode(mode, handle.model) as (precision, channels_last):
                    cells.append(f"{_ms(lambda: fn(precision, channels_last)):.1f} ms")
            except Exception as exc:  # noqa: BLE001 - a mode that does not apply is a cell, not a crash
                cells.append("n/a")
                notes.append(f"  n/a {label}, {mode}: {type(exc).__name__}: {' '.join(str(exc).split())[:160]}")
        rows.append((label, cells))
    return rows, notes


def main(argv: Optional[list[str]] = None) -> int:
    if not torch.cuda.is_available():
        print(NO_CUDA)
        return 0
    print(f"gpu-check on {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    failed: list[str] = []
    checks: list[tuple[str, Callable[[], Any], float]] = [
        *((f"parity {m}", lambda m=m: parity(m), R_MIN) for m in MODELS), ("dream/style", _images, R_MIN_IMAGE)]
    tf32, torch.backends.cudnn.allow_tf32 = torch.backends.cudnn.allow_tf32, False  # parity in strict fp32
    print(f"{'model':<12} {'method':<32} {'r (CUDA vs CPU)':>16}  status")
    for check, run, r_min in checks:
        try:
            for model, method, r, note in run():
                ok = note.startswith(("n/a", "skipped")) or r >= r_min
                failed += [] if ok else [f"{model}/{method}"]
                print(f"{model:<12} {method:<32} {r:>16.6f}  {'ok' if ok else f'FAIL (< {r_min})'} {note}")
        except Exception:  # noqa: BLE001 - one broken check must not hide the others
            failed.append(check)
            print(f"{check}: FAILED\n{traceback.format_exc(limit=-3)}")
    torch.backends.cudnn.allow_tf32 = tf32
    try:
        rows, notes = bench()
        print(f"\n{'bench (median of 5)':<46}" + "".join(f"{m:>15}" for m in MODES))
        for label, cells in rows:
            print(f"{label:<46}" + "".join(f"{c:>15}" for c in cells))
            failed += [f"bench {label}"] if cells[0] == "n/a" else []  # fp32 strict must always run
        print("\n".join(notes))
    except Exception:  # noqa: BLE001
        failed.append("bench")
        print(f"bench: FAILED\n{traceback.format_exc(limit=-3)}")
    print(f"gpu-check: {'FAILED: ' + ', '.join(failed) if failed else 'all checks passed'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
