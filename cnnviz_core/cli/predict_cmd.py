"""``predict IMAGE... --model NAME [--weights W] [--topk K] [--json]``."""
from __future__ import annotations

import argparse

from ..errors import ParameterError
from ..images import load_image
from .common import add_model_args, load_model_from_args, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="top-k predictions for one or more images")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    add_model_args(p)
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.topk <= 1000:
        raise ParameterError(f"--topk must be between 1 and 1000, got {args.topk}")
    images = [load_image(path) for path in args.images]  # validate all before loading the model
    handle = load_model_from_args(args)
    results = []
    for path, image in zip(args.images, images):
        preds = handle.predict(handle.preprocess(image), topk=args.topk)
        results.append({"image": path, "model": handle.name, "weights": handle.weights_label,
                        "top": [{"index": i, "class": name, "probability": p} for i, name, p in preds]})
    if args.json:
        print_json(results)
        return 0
    for r in results:
        print(f"{r['image']}  ({r['model']}, {r['weights']})")
        for t in r["top"]:
            print(f"  {t['probability']:7.2%}  {t['index']:>4}  {t['class']}")
    return 0
