"""What each layer learned, as a picture: Zeiler & Fergus (2014) Fig. 2 remade on our scenes.

``python -m cnnviz_core.attribution.layerfig --out layers.png [--model shapes-cnn] [--scenes 1000]
[--channels 4] [--k 4] [--layers stage1.conv1,stage2.conv1,...]`` writes one PNG: a block per layer,
a row per channel (the layer's most active channels over the scenes), and for each of the channel's
top activations (at most one per scene) its deconvnet projection beside the scene patch under its
receptive field. Patches are enlarged to one size per layer (nearest neighbour), so the growth of
the receptive field from layer to layer shows as coarser pixels.
"""
from __future__ import annotations

import argparse
import io
from typing import Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw

from ..models import ModelHandle, load_model
from ..progress import stderr_progress
from .topk import ImageSet, channel_maxima, projection_image, top_activations

SIDE = 64


def _fit(rgb: np.ndarray, side: int = SIDE) -> Image.Image:
    return Image.fromarray(rgb).resize((side, side), Image.NEAREST)


def layer_figure(handle: ModelHandle, images: ImageSet, layers: Sequence[str], channels: int = 4, k: int = 4,
                 progress: Optional[object] = None) -> Image.Image:
    """The figure (see the module doc) as a PIL image."""
    pad, label = 4, 16
    blocks = []
    for layer in layers:
        maxima = channel_maxima(handle, images, layer, progress=progress)  # type: ignore[arg-type]
        rows = [top_activations(handle, images, layer, c, k=k) for c in maxima.top_channels(channels)]
        width = pad + k * (2 * SIDE + 3 * pad)
        canvas = Image.new("RGB", (width, label + len(rows) * (SIDE + pad) + pad), "white")
        draw = ImageDraw.Draw(canvas)
        boxes = [t.receptive_field for top in rows for t in top]  # the largest is the unclipped field
        size = f"{max(b[2] - b[0] for b in boxes)}x{max(b[3] - b[1] for b in boxes)} px field" if boxes else ""
        draw.text((pad, 2), f"{layer} ({size}): top {k} of {len(images)} scenes for its {len(rows)} most active "
                            "channels - projection | patch", fill=(20, 20, 20))
        for r, top in enumerate(rows):
            y = label + r * (SIDE + pad)
            for i, t in enumerate(top):
                x = pad + i * (2 * SIDE + 3 * pad)
                canvas.paste(_fit(projection_image(t.projection)), (x, y))
                canvas.paste(_fit(t.patch), (x + SIDE + pad, y))
        blocks.append(canvas)
    out = Image.new("RGB", (max(b.width for b in blocks), sum(b.height for b in blocks)), "white")
    y = 0
    for b in blocks:
        out.paste(b, (0, y))
        y += b.height
    return out


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cnnviz_core.attribution.layerfig", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--model", default="shapes-cnn")
    p.add_argument("--scenes", type=int, default=1000, help="held-out two-object scenes (seed 30000)")
    p.add_argument("--channels", type=int, default=4)
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--layers", default=None, help="comma-separated (default: every convolution's stage, in order)")
    args = p.parse_args(argv)
    handle = load_model(args.model)
    layers = args.layers.split(",") if args.layers else _default_layers(handle)
    images = ImageSet.from_scenes(args.scenes, 30_000, size=handle.spec.input_size, objects=2)
    figure = layer_figure(handle, images, layers, args.channels, args.k, progress=stderr_progress("layers "))
    buf = io.BytesIO()
    figure.save(buf, format="PNG")
    with open(args.out, "wb") as fh:
        fh.write(buf.getvalue())
    print(f"{args.out}: {', '.join(layers)} ({handle.name}, {handle.weights_label}, {args.scenes} scenes)")
    return 0


def _default_layers(handle: ModelHandle) -> list[str]:
    """The first convolution of each top-level stage, then the CAM layer (shapes-cnn: stage1..4, fusion)."""
    seen, out = set(), []
    for path in handle.conv_layers:
        stage = path.split(".")[0]
        if stage not in seen and stage != handle.default_layer.split(".")[0]:
            seen.add(stage)
            out.append(path)
    return out + [handle.default_layer]


if __name__ == "__main__":
    raise SystemExit(main())
