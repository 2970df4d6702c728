"""Benchmark: cost of one Deep Dream / style-transfer step against its compute floor.

``python -m cnnviz_core.featureviz.bench [--size 128] [--rounds 3] [--device cpu]
[--precision float32|float16|bfloat16] [--channels-last]``

Floors are measured in the same process, interleaved with the steps, median of all samples:

* Deep Dream step (VGG-16, random weights, dreaming on ``features.22`` = relu4_3) vs one forward +
  backward (to the input) of ``features[:23]`` alone (goal <= 1.2x) and of the full network;
* style-transfer step (VGG-19, Adam, one forward/backward per step) vs one forward + backward of
  ``features[:30]`` (to conv5_1's ReLU, the deepest layer used; goal <= 1.1x); L-BFGS steps are
  shown for information (a step may evaluate the loss several times in its line search).

A step's time is the interval between consecutive progress callbacks, so it includes everything
the step does (jitter, hooks, objective, update, bookkeeping). Figures are printed, not asserted.
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
from PIL import Image

from .. import load_model
from ..progress import Progress
from ..scenes import generate_scene
from .dream import deep_dream, image_tensor
from .params import as_model_input, compute_mode
from .style import style_transfer


def _step_times(run: Callable[[Callable[[Progress], None]], object]) -> list[float]:
    stamps: list[float] = []
    run(lambda _p: stamps.append(time.perf_counter()))
    return [b - a for a, b in zip(stamps, stamps[1:])]


def _floor(module: torch.nn.Module, x: torch.Tensor, precision: str, channels_last: bool, device: torch.device) -> float:
    start = time.perf_counter()
    inp = x.detach().clone().requires_grad_(True)
    with compute_mode(device, precision):
        out = module(as_model_input(inp, channels_last))
        (grad,) = torch.autograd.grad(out.float().pow(2).mean(), inp)
    float(grad.abs().mean())  # synchronize (GPU) the same way the loops do with .item()
    return time.perf_counter() - start


def _median_ms(samples: list[float]) -> float:
    return 1000 * statistics.median(samples)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m cnnviz_core.featureviz.bench")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=5, help="steps per timed run")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="float32")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    opts = {"precision": args.precision, "channels_last": args.channels_last}
    photo = Image.fromarray(generate_scene(1, objects=2, size=args.size).image)
    style_img = Image.fromarray(generate_scene(2, objects=2, size=args.size).image)

    vgg16, vgg19 = load_model("vgg16", None, args.device), load_model("vgg19", None, args.device)
    dev = vgg16.device
    x = vgg16.normalize(image_tensor(photo, args.size, dev))  # the resolution both loops run at
    dream_floor = vgg16.model.features[:23]
    style_floor = vgg19.model.features[:30]
    samples: dict[str, list[float]] = {k: [] for k in ("dream", "dream_floor", "full", "style_adam", "style_floor",
                                                       "style_lbfgs")}
    for _ in range(args.rounds):
        samples["dream"] += _step_times(lambda cb: deep_dream(
            vgg16, photo, "features.22", octaves=1, steps=args.steps + 1, max_side=args.size, progress=cb, **opts))
        for _ in range(args.steps):
            samples["dream_floor"].append(_floor(dream_floor, x, args.precision, args.channels_last, dev))
            samples["full"].append(_floor(vgg16.model, x, args.precision, args.channels_last, dev))
        samples["style_adam"] += _step_times(lambda cb: style_transfer(
            vgg19, photo, style_img, steps=args.steps + 1, size=args.size, optimizer="adam", progress=cb, **opts))
        for _ in range(args.steps):
            samples["style_floor"].append(_floor(style_floor, x, args.precision, args.channels_last, dev))
        samples["style_lbfgs"] += _step_times(lambda cb: style_transfer(
            vgg19, photo, style_img, steps=3, size=args.size, optimizer="lbfgs", progress=cb, **opts))

    ms = {k: _median_ms(v) for k, v in samples.items()}
    print(f"device {dev}, {torch.get_num_threads()} threads, {args.size} px, precision {args.precision}, "
          f"channels_last {args.channels_last}, {args.rounds} rounds x {args.steps} steps (medians)")
    print(f"Deep Dream step (vgg16 up to features.22)   {ms['dream']:8.1f} ms")
    print(f"  floor: fwd+bwd features[:23]              {ms['dream_floor']:8.1f} ms   ratio "
          f"{ms['dream'] / ms['dream_floor']:.2f}x (goal <= 1.2x)")
    print(f"  full network fwd+bwd                      {ms['full']:8.1f} ms   ratio {ms['dream'] / ms['full']:.2f}x")
    print(f"Style step, Adam (vgg19 up to conv5_1)      {ms['style_adam']:8.1f} ms")
    print(f"  floor: fwd+bwd features[:30]              {ms['style_floor']:8.1f} ms   ratio "
          f"{ms['style_adam'] / ms['style_floor']:.2f}x (goal <= 1.1x)")
    print(f"Style step, L-BFGS (incl. line search)      {ms['style_lbfgs']:8.1f} ms   "
          f"= {ms['style_lbfgs'] / ms['style_floor']:.2f} floors")


if __name__ == "__main__":
    main()
