"""Live thumbnails of the home page's cards: one small picture per topic, made from the selected
model and image, each cheap (one forward, one backward or a few Deep Dream steps at 112 px) and
cached per model key + image digest in the engine's result cache (:func:`cnnviz_ui.state.cached`).

:func:`thumbnail` returns a :class:`Thumbnail` (``(H, W, 3)`` uint8 and a caption) or raises
:class:`ThumbnailUnavailable` with a one-line reason (e.g. a TorchScript model cannot be hooked).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image

from cnnviz_core import CnnvizError, ModelHandle
from cnnviz_core.plots.arrays import apply_colormap, gradient_magnitude, overlay

from .compute import explain_image, feature_maps, layer_table, model_view, scene
from .state import Selection, cached, cached_sample

SIDE = 160  # pixels of one square tile; every thumbnail is two tiles wide and one high
GAP = 3
WIDTH = 2 * SIDE + GAP
STYLE_SAMPLE = "Photo: coffee"


class ThumbnailUnavailable(Exception):
    """This topic has no thumbnail for the selected model (the message says why, in one line)."""


@dataclass(frozen=True)
class Thumbnail:
    image: np.ndarray  # (H, W, 3) uint8
    caption: str


def _square(rgb: np.ndarray, side: int = SIDE) -> np.ndarray:
    """``rgb`` (uint8, any size) resized to ``side`` x ``side``, nearest for small maps, else bilinear."""
    img = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))
    small = max(img.size) < side // 2
    return np.asarray(img.resize((side, side), Image.NEAREST if small else Image.BILINEAR))


def _fit(rgb: np.ndarray, width: int = WIDTH, height: int = SIDE) -> np.ndarray:
    """``rgb`` fitted into a white ``width`` x ``height`` box (aspect kept)."""
    img = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))
    scale = min(width / img.width, height / img.height)
    img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                     Image.NEAREST if scale >= 2 else Image.BILINEAR)
    canvas = Image.new("RGB", (width, height), "white")
    canvas.paste(img, ((width - img.width) // 2, (height - img.height) // 2))
    return np.asarray(canvas)


def _grid(tiles: list[np.ndarray], cols: int, gap: int = GAP) -> np.ndarray:
    """Equal-size uint8 tiles on a white grid."""
    h, w = tiles[0].shape[:2]
    rows = -(-len(tiles) // cols)
    out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap, 3), 255, dtype=np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        out[r * (h + gap): r * (h + gap) + h, c * (w + gap): c * (w + gap) + w] = tile
    return out


def _strongest(fmap: np.ndarray, n: int = 2) -> list[np.ndarray]:
    """The ``n`` ``(H, W)`` channels of a ``(C, H, W)`` activation with the largest means."""
    order = np.argsort(-fmap.reshape(fmap.shape[0], -1).mean(axis=1))
    return [fmap[int(i)] for i in order[:n]] + [np.zeros_like(fmap[0])] * max(0, n - fmap.shape[0])


def _convs(handle: ModelHandle) -> list[str]:
    if not handle.conv_layers:
        raise ThumbnailUnavailable(f"{handle.name} has no convolution layer to show")
    return handle.conv_layers


def _hookable(handle: ModelHandle) -> None:
    if not getattr(handle, "hookable", True):
        raise ThumbnailUnavailable("needs a model whose layers can be hooked (not TorchScript)")


def _basics(handle: ModelHandle, sel: Selection) -> Thumbnail:
    _hookable(handle)
    convs = _convs(handle)
    early, late = convs[0], convs[-1]
    maps = feature_maps(handle, sel, list(dict.fromkeys([early, late])))
    small = (SIDE - GAP) // 2
    tiles = [_square(apply_colormap(m, "Viridis"), small) for layer in (early, late) for m in _strongest(maps[layer])]
    right = _fit(_grid(tiles, 2), SIDE, SIDE)
    return Thumbnail(_grid([_square(model_view(handle, sel)), right], 2),
                     "the image and its strongest feature maps, early (top) and late")


def _architectures(handle: ModelHandle, sel: Selection) -> Thumbnail:
    rows = [r for r in layer_table(handle) if r["type"] == "Conv2d" and len(r["output_shape"]) == 3]
    if not rows:
        raise ThumbnailUnavailable(f"{handle.name} has no traced convolution layer")
    channels = np.array([r["output_shape"][0] for r in rows], dtype=np.float64)
    w, h = WIDTH, SIDE
    out = np.full((h, w, 3), 255, dtype=np.uint8)
    bar = w / len(rows)
    heights = np.log2(channels + 1) / np.log2(channels.max() + 1) * (h - 8)
    colors = apply_colormap(np.linspace(0, 1, len(rows))[None, :], "Inferno", 0.0, 1.3)[0]
    for i, (height, color) in enumerate(zip(heights, colors)):
        x0, x1 = int(i * bar), max(int(i * bar) + 1, int((i + 1) * bar) - (1 if bar >= 3 else 0))
        out[h - int(height): h, x0:x1] = color
    return Thumbnail(out, f"channels of its {len(rows)} convolutions, by depth")


def _filters(handle: ModelHandle, sel: Selection) -> Thumbnail:
    from cnnviz_core.featureviz.filters import kernel_montage

    layer = _convs(handle)[0]
    kernels = kernel_montage(handle, layer, view="auto", max_filters=32, upscale=4, pad=1)
    rgb = kernels if kernels.ndim == 3 else np.repeat(kernels[..., None], 3, axis=2)
    return Thumbnail(_fit(rgb), f"the first filters of {layer}")


def _backprop(handle: ModelHandle, sel: Selection) -> Thumbnail:
    result = explain_image(handle, sel.image, ["saliency"], None, None)["saliency"]
    if result.error:
        raise ThumbnailUnavailable(result.error)
    heat = gradient_magnitude(result.raw)
    return Thumbnail(_grid([_square(model_view(handle, sel)), _square(apply_colormap(heat, "Greys_r"))], 2),
                     "saliency of the top class")


def _deep_dream(handle: ModelHandle, sel: Selection) -> Thumbnail:
    from cnnviz_core.featureviz import deep_dream

    _hookable(handle)
    convs = _convs(handle)
    layer = convs[len(convs) // 2]
    dream = deep_dream(handle, sel.image, layer, octaves=1, steps=8, step_size=0.08, jitter=4, max_side=112)
    return Thumbnail(_grid([_square(np.asarray(sel.image.convert("RGB"))), _square(dream.image)], 2),
                     f"8 dream steps on {layer}")


def _style_transfer(handle: ModelHandle, sel: Selection) -> Thumbnail:
    style = cached_sample(STYLE_SAMPLE)
    tiles = [_square(np.asarray(sel.image.convert("RGB"))), _square(np.asarray(style.convert("RGB")))]
    return Thumbnail(_grid(tiles, 2), "content + style")


def _gradcam(handle: ModelHandle, image: Image.Image, view: np.ndarray) -> np.ndarray:
    result = explain_image(handle, image, ["gradcam"], None, None)["gradcam"]
    if result.error:
        raise ThumbnailUnavailable(result.error)
    return overlay(view, result.scaled, "Jet", 0.5, 0.0, 1.0)


def _cam(handle: ModelHandle, sel: Selection) -> Thumbnail:
    _hookable(handle)
    view = model_view(handle, sel)
    return Thumbnail(_grid([_square(view), _square(_gradcam(handle, sel.image, view))], 2),
                     "Grad-CAM of the top class")


def _applications(handle: ModelHandle, sel: Selection) -> Thumbnail:
    _hookable(handle)
    s, image, _ = scene(5, 0, "none")
    view = np.asarray(handle.crop(image), dtype=np.uint8)
    cam = _gradcam(handle, image, view)
    mask = np.asarray(handle.crop(Image.fromarray((s.mask > 0).astype(np.uint8) * 255)))[..., 0] > 127
    inner = mask.copy()
    for shift, axis in ((1, 0), (-1, 0), (1, 1), (-1, 1), (2, 0), (-2, 0), (2, 1), (-2, 1)):
        inner &= np.roll(mask, shift, axis)
    edge = mask & ~inner  # a 2-pixel outline
    outlined = cam.copy()
    outlined[edge] = (0, 255, 0)
    return Thumbnail(_grid([_square(s.image), _square(outlined)], 2),
                     "does the map hit the known object (green)?")


_MAKERS: dict[str, Callable[[ModelHandle, Selection], Thumbnail]] = {
    "basics": _basics, "architectures": _architectures, "filters": _filters, "backprop": _backprop,
    "deep-dream": _deep_dream, "style-transfer": _style_transfer, "cam": _cam, "applications": _applications,
}


def topics() -> tuple[str, ...]:
    """Page stems that have a thumbnail."""
    return tuple(_MAKERS)


def thumbnail(stem: str, handle: ModelHandle, sel: Selection) -> Thumbnail:
    """The card picture of page ``stem`` for the selected model and image (cached)."""
    make = _MAKERS[stem]

    def compute() -> Thumbnail:
        try:
            return make(handle, sel)
        except CnnvizError as exc:
            raise ThumbnailUnavailable(" ".join(str(exc).split())) from None

    return cached(("home-thumb", stem, handle.key, sel.digest), compute)
