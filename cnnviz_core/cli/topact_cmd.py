"""``top-activations FOLDER --model M [--weights W] --layer PATH --channel C --k K --out DIR [--json]``.

The strongest activations of one channel over the images of a folder (Zeiler & Fergus 2014,
Fig. 2): at most one per image (the image's strongest location), sorted from the strongest.
Writes ``DIR/summary.json``, whose ``"top"`` is a list of ``{"image", "y", "x", "activation",
"receptive_field", "patch", "projection"}`` (``y``, ``x``: feature-map cells; ``receptive_field``:
``[top, left, bottom, right]`` input pixels, bottom and right exclusive; ``patch`` and
``projection``: PNG file names in DIR - the image patch under the receptive field and the unit's
deconvnet projection there, 0 = grey).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image

from ..errors import ParameterError
from ..progress import stderr_progress
from .common import add_model_args, load_model_from_args, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("top-activations", help="the strongest activations of a channel over a folder of images")
    p.add_argument("folder", metavar="FOLDER")
    add_model_args(p)
    p.add_argument("--layer", required=True, help="module path of the layer, e.g. features.10")
    p.add_argument("--channel", required=True, type=int, help="channel of the layer")
    p.add_argument("--k", type=int, default=9, help="how many (default 9)")
    p.add_argument("--method", default="deconvnet", choices=("deconvnet", "guided_backprop", "saliency"),
                   help="projection shown for each (default deconvnet)")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward (default 32)")
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..attribution.topk import ImageSet, projection_image, top_activations

    if args.k < 1:
        raise ParameterError(f"--k must be >= 1, got {args.k}")
    if args.channel < 0:
        raise ParameterError(f"--channel must be >= 0, got {args.channel}")
    images = ImageSet.from_folder(args.folder)
    handle = load_model_from_args(args)
    top = top_activations(handle, images, args.layer, args.channel, k=args.k, method=args.method,
                          batch_size=args.batch_size, progress=stderr_progress("top-activations "))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for t in top:
        patch, projection = f"patch_{t.rank:02d}.png", f"projection_{t.rank:02d}.png"
        Image.fromarray(t.patch).save(out / patch)
        Image.fromarray(projection_image(t.projection)).save(out / projection)
        rows.append({**t.as_dict(), "patch": patch, "projection": projection})
    summary = {"folder": str(args.folder), "model": handle.name, "weights": handle.weights_label,
               "layer": args.layer, "channel": args.channel, "k": args.k, "images": len(images),
               "method": args.method, "top": rows}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    if args.json:
        print_json(summary)
    else:
        print(f"{handle.name} ({handle.weights_label}) {args.layer}[{args.channel}] over {len(images)} images:")
        for r in rows:
            print(f"  {r['activation']:10.4g}  {r['image']}  at ({r['y']}, {r['x']})  field {r['receptive_field']}")
        print(out / "summary.json")
    return 0
