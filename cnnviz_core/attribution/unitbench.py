"""Unit benches (``python -m cnnviz_core.bench --units``): projections of one unit and top activations.

1. **Unit projection vs the full-network floor** (random weights, 224 px): the input floor (one full
   forward + the backward of a logit to the input, parameters frozen), the *unit floor* (a forward
   stopped after the unit's layer + the backward of the neuron to the input, written by hand), and
   ours: saliency + deconvnet + guided backprop of the neuron in one ``explain_detailed`` (one
   truncated forward + one backward per rule), and deconvnet alone. The receptive field is computed
   once per (layer, input size, unit) and cached; its first-time cost is printed apart.
2. **Top activations over N scenes** (``shapes-cnn``, bundled weights when present): images per
   second of :func:`~.topk.channel_maxima` (preprocessing + batched forwards truncated after the
   layer, under ``inference_mode``) beside a plain batched forward of the same images (preprocessing
   + the whole network, same batch size), both from the same in-memory PIL images; and the forward
   alone on preprocessed tensors. Median of interleaved runs.

Timings are printed, never asserted in tests.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch

from ..hooks import forward_until
from ..inputs import as_model_batch
from ..models import ModelHandle, load_model
from .api import explain_detailed
from .targets import NeuronTarget
from .topk import ImageSet, channel_maxima

UNIT_LAYERS = {"resnet50": "layer2", "vgg16": "features.16", "resnet18": "layer2", "shapes-cnn": "stage3"}


def _medians(cases: dict[str, Callable[[torch.Tensor], object]], x: torch.Tensor, repeats: int) -> dict[str, float]:
    gen = torch.Generator().manual_seed(0)
    for fn in cases.values():  # warm-up (also fills the receptive-field cache)
        fn(x + 1e-3 * torch.randn(x.shape, generator=gen))
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            xr = x + 1e-3 * torch.randn(x.shape, generator=gen)
            start = time.perf_counter()
            fn(xr)
            times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def unit_projection(name: str, size: int = 224, repeats: int = 5) -> dict[str, float]:
    handle = load_model(name, weights=None)
    layer = UNIT_LAYERS.get(name, handle.default_layer)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        fmap = forward_until(handle.model, x, layer)
    c, h, w = fmap.shape[1:]
    unit = NeuronTarget(layer, int(fmap[0, :, h // 2, w // 2].argmax()), h // 2, w // 2)

    def input_floor(xr: torch.Tensor) -> None:
        xi = xr.detach().requires_grad_(True)
        with torch.enable_grad():
            torch.autograd.grad(handle.model(xi)[0, 0], xi)

    def unit_floor(xr: torch.Tensor) -> None:
        xi = xr.detach().requires_grad_(True)
        with handle.lock, torch.enable_grad():
            act = forward_until(handle.model, xi, layer)
            torch.autograd.grad(act[0, unit.channel, unit.y, unit.x], xi)

    def forward(xr: torch.Tensor) -> None:
        with torch.inference_mode():
            handle.model(xr)

    start = time.perf_counter()
    first = explain_detailed(handle, x, "deconvnet", target=unit, cache=None)["deconvnet"]
    first_call = time.perf_counter() - start
    cases = {
        "forward": forward,
        "input floor": input_floor,
        "unit floor": unit_floor,
        "ours 3 rules": lambda xr: explain_detailed(handle, xr, ["saliency", "deconvnet", "guided_backprop"],
                                                    target=unit, cache=None),
        "ours deconvnet": lambda xr: explain_detailed(handle, xr, "deconvnet", target=unit, cache=None),
    }
    t = _medians(cases, x, repeats)
    ms = {k: v * 1000 for k, v in t.items()}
    print(f"\n== unit projection, {name} {layer}[{unit.channel}] at ({unit.y}, {unit.x}) of {h}x{w}, {size} px, "
          f"random weights, {torch.get_num_threads()} threads, median of {repeats} ==")
    print(f"  forward {ms['forward']:.1f} ms | input floor (full forward + backward) {ms['input floor']:.1f} ms | "
          f"unit floor (truncated forward + backward) {ms['unit floor']:.1f} ms")
    print(f"  ours deconvnet {ms['ours deconvnet']:.1f} ms = {ms['ours deconvnet'] / ms['unit floor']:.2f}x unit floor"
          f" = {ms['ours deconvnet'] / ms['input floor']:.2f}x input floor")
    print(f"  ours saliency+deconvnet+guided {ms['ours 3 rules']:.1f} ms = "
          f"{ms['ours 3 rules'] / ms['unit floor']:.2f}x unit floor = {ms['ours 3 rules'] / ms['input floor']:.2f}x "
          f"input floor")
    print(f"  first call incl. the receptive field {first.receptive_field} (structural pass, then cached): "
          f"{first_call * 1000:.0f} ms", flush=True)
    t["first call"] = first_call
    return t


def top_activations_throughput(count: int = 1000, layer: str = "fusion", batch_size: int = 32,
                               repeats: int = 3) -> dict[str, float]:
    handle = _shapes()
    images = ImageSet.from_scenes(count, 30_000, objects=2)
    pil = [images[i] for i in range(count)]
    tensors = [as_model_batch(handle, pil[i:i + batch_size]) for i in range(0, count, batch_size)]

    def plain_from_images() -> None:
        with torch.inference_mode():
            for i in range(0, count, batch_size):
                handle.model(as_model_batch(handle, pil[i:i + batch_size]))

    def plain_from_tensors() -> None:
        with torch.inference_mode():
            for xb in tensors:
                handle.model(xb)

    def ours() -> None:
        channel_maxima(handle, images, layer, batch_size=batch_size, cache=None)

    cases = {"plain forward (images)": plain_from_images, "plain forward (tensors)": plain_from_tensors,
             "top activations": ours}
    for fn in cases.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(repeats):
        for k, fn in cases.items():
            start = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - start)
    rate = {k: count / statistics.median(v) for k, v in times.items()}
    print(f"\n== top activations, {handle.name} ({handle.weights_label}) at {layer}, {count} scenes, batch "
          f"{batch_size}, {torch.get_num_threads()} threads, median of {repeats} ==")
    print(f"  plain batched forward, from the images (preprocessing + whole network): "
          f"{rate['plain forward (images)']:.0f} images/s")
    print(f"  plain batched forward, preprocessed tensors: {rate['plain forward (tensors)']:.0f} images/s")
    print(f"  top activations (per-image channel maxima, preprocessing + forward stopped after {layer}): "
          f"{rate['top activations']:.0f} images/s = "
          f"{rate['top activations'] / rate['plain forward (images)']:.2f}x the plain forward (goal >= 0.8x)",
          flush=True)
    return rate


def _shapes() -> ModelHandle:
    try:
        return load_model("shapes-cnn")
    except Exception:  # noqa: BLE001 - untrained checkout: random weights still measure speed
        return load_model("shapes-cnn", weights=None)


def main(models: list[str], size: int, repeats: int, scenes: int) -> dict[str, dict[str, float]]:
    out = {f"unit {name}": unit_projection(name, size, repeats) for name in models}
    for layer in ("stage2", "fusion"):
        out[f"top activations {layer}"] = top_activations_throughput(scenes, layer)
    return out
