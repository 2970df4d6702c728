"""``project IMAGE --model M [--weights W] --layer PATH --channel C [--at Y,X] --methods ... --out DIR [--json]``.

Projects one unit back to the image (Zeiler & Fergus 2014): the raw gradient-family projections of
the unit's activation w.r.t. the normalized input. Writes ``DIR/<method>.npy`` ``(3, H, W)`` float32,
``DIR/input.npy`` (the exact input, ``(1, 3, H, W)`` float32) and ``DIR/summary.json`` with
``"unit": {"layer", "channel", "y", "x", "activation"}`` and ``"receptive_field": [top, left,
bottom, right]`` (input pixels, bottom and right exclusive). Without ``--at`` the neuron is the
channel's strongest activation on the image. Positions are cells of the layer's feature map.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ..errors import ParameterError
from ..images import load_image
from .common import add_model_args, load_model_from_args, print_json

DEFAULT_METHODS = "deconvnet,guided_backprop,saliency"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("project", help="project one unit (layer, channel, position) back to the image")
    p.add_argument("image", metavar="IMAGE")
    add_model_args(p)
    p.add_argument("--layer", required=True, help="module path of the unit's layer, e.g. features.10")
    p.add_argument("--channel", required=True, type=int, help="channel of the layer")
    p.add_argument("--at", default=None, metavar="Y,X",
                   help="feature-map cell of the neuron (default: the channel's strongest activation)")
    p.add_argument("--methods", default=DEFAULT_METHODS,
                   help=f"comma-separated projections (default {DEFAULT_METHODS}; also smoothgrad, "
                        "integrated_gradients)")
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def parse_at(text: str | None) -> tuple[int, int] | tuple[None, None]:
    """``"3,4"`` -> ``(3, 4)``; ``None`` -> ``(None, None)``."""
    if text is None:
        return None, None
    parts = [t.strip() for t in text.split(",")]
    try:
        y, x = (int(t) for t in parts)
    except ValueError:
        raise ParameterError(f"--at expects Y,X (two integers, feature-map cells), got {text!r}") from None
    return y, x


def run(args: argparse.Namespace) -> int:
    from ..attribution import METHODS, NeuronTarget, explain_detailed, resolve_methods

    methods = resolve_methods(args.methods)
    wrong = [m.key for m in methods if m.family != "gradient" or not m.unit_targets]
    if wrong:
        able = ", ".join(k for k, m in METHODS.items() if m.family == "gradient" and m.unit_targets)
        raise ParameterError(f"{wrong[0]} is not a projection of a unit; choose from {able}")
    y, x = parse_at(args.at)
    target = NeuronTarget(args.layer, args.channel, y, x)  # validates channel and position
    image = load_image(args.image)
    handle = load_model_from_args(args)
    inp = handle.preprocess(image)
    results = explain_detailed(handle, inp, [m.key for m in methods], target, cache=None)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "input.npy", inp.detach().cpu().numpy().astype(np.float32))
    for key, res in results.items():
        np.save(out / f"{key}.npy", res.raw.astype(np.float32))
    first = next(iter(results.values()))
    summary = {
        "image": str(args.image), "model": handle.name, "weights": handle.weights_label,
        "input_shape": list(inp.shape), "unit": first.unit.as_dict(),
        "receptive_field": list(first.receptive_field) if first.receptive_field else None,
        "methods": {k: {"file": f"{k}.npy", "shape": list(r.raw.shape), "seconds": round(r.seconds, 4),
                        "info": r.info} for k, r in results.items()},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    if args.json:
        print_json(summary)
    else:
        u = summary["unit"]
        print(f"{handle.name} ({handle.weights_label}) {u['layer']}[{u['channel']}] at ({u['y']}, {u['x']}): "
              f"activation {u['activation']:.4g}, receptive field {summary['receptive_field']}")
        for k, r in results.items():
            print(f"  {k:<22} {r.seconds:8.3f} s  -> {out / (k + '.npy')}")
        print(out / "summary.json")
    return 0
