"""``explain IMAGE --model NAME [--weights W] [--layer PATH] [--target IDX] --methods a,b --out DIR``.

Writes ``DIR/<method>.npy`` (the map: CAM family / occlusion ``(H, W)``, gradient family
``(3, H, W)``, float32), ``DIR/input.npy`` (the exact normalized input tensor used, ``(1, 3, H, W)``
float32) and ``DIR/summary.json`` (model, weights, layer, target, top-5 prediction, seconds per
method, method info). ``--json`` prints the summary on stdout. Bad input: one line on stderr, exit != 0.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ParameterError
from ..images import load_image
from ..progress import stderr_progress
from .common import add_model_args, load_model_from_args, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="attribution maps (CAM family, gradients, occlusion) for one image")
    p.add_argument("image", metavar="IMAGE")
    add_model_args(p)
    p.add_argument("--layer", default=None, help="module path of the CAM layer (default: the model's)")
    p.add_argument("--target", default=None, help="class index or name (default: the top-1 prediction)")
    p.add_argument("--methods", required=True, help="comma-separated method keys, e.g. gradcam,saliency")
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument("--scale", default="minmax", choices=("minmax", "none"),
                   help="CAM maps min-max scaled to [0, 1] (default) or raw")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="method parameter, e.g. --param channels=64 --param stride=16, or one method's: "
                        "--param scorecam.batch_size=8 (repeatable; `methods` lists them)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def _value(text: str) -> Any:
    """``none`` -> None, ``true``/``false`` -> bool, numbers -> int/float, ``1,2,3`` -> a tuple, else text."""
    value = text.strip()
    if value.lower() == "none":
        return None
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    if "," in value:
        return tuple(_value(v) for v in value.split(",") if v.strip())
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            continue
    return value


def parse_params(items: list[str]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``["steps=32", "baseline=black", "scorecam.channels=none"]`` -> flat parameters (every requested
    method with that field) and per-method ones: ``({"steps": 32, "baseline": "black"},
    {"scorecam": {"channels": None}})``."""
    params: dict[str, Any] = {}
    options: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ParameterError(f"--param expects KEY=VALUE or METHOD.KEY=VALUE, got {item!r}")
        method, dot, name = key.rpartition(".")
        if dot:
            options.setdefault(method, {})[name] = _value(text)
        else:
            params[key] = _value(text)
    return params, options


def run(args: argparse.Namespace) -> int:
    from ..attribution import explain_detailed, resolve_methods

    methods = [m.key for m in resolve_methods(args.methods)]  # validate before any heavy work
    params, options = parse_params(args.param)
    image = load_image(args.image)
    handle = load_model_from_args(args)
    x = handle.preprocess(image)
    results = explain_detailed(handle, x, methods, args.target, args.layer, progress=stderr_progress("explain "),
                               cache=None, options=options, **params)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "input.npy", x.detach().cpu().numpy().astype(np.float32))
    for key, res in results.items():
        np.save(out / f"{key}.npy", res.map(args.scale))
    first = next(iter(results.values()))
    summary = {
        "image": str(args.image), "model": handle.name, "weights": handle.weights_label,
        "layer": args.layer or handle.default_layer, "target": first.target,
        "target_name": first.info.get("target_name"), "scale": args.scale, "input_shape": list(x.shape),
        "top5": [{"index": i, "class": n, "probability": p} for i, n, p in handle.predict(x, 5)],
        "methods": {k: {"file": f"{k}.npy", "shape": list(r.raw.shape), "family": r.family,
                        "seconds": round(r.seconds, 4), "info": r.info} for k, r in results.items()},
        "seconds": {k: round(r.seconds, 4) for k, r in results.items()},
        "params": params, "method_params": options,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    if args.json:
        print_json(summary)
    else:
        print(f"{handle.name} ({handle.weights_label}), layer {summary['layer']}, "
              f"target {first.target} ({summary['target_name']})")
        for k, r in results.items():
            print(f"  {k:<22} {r.seconds:8.3f} s  -> {out / (k + '.npy')}")
        print(out / "summary.json")
    return 0
