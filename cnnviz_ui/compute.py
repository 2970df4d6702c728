"""Cached engine calls used by several pages (results live in the engine's shared LRU cache).

Cache keys are ``(tag, model key, image digest, parameters...)``: display-only controls never
enter a key, so changing a colormap or an opacity reruns no model pass.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from PIL import Image

from cnnviz_core import ModelHandle
from cnnviz_core.models import Prediction

from .state import Selection, cached


def model_view(handle: ModelHandle, sel: Selection) -> np.ndarray:
    """The ``(S, S, 3)`` uint8 crop of the selected image that the model actually sees."""
    return cached(("view", handle.key, sel.digest), lambda: np.asarray(handle.crop(sel.image), dtype=np.uint8))


def model_view_image(handle: ModelHandle, image: Image.Image, digest: str) -> np.ndarray:
    """:func:`model_view` for any image identified by ``digest`` (e.g. one of an uploaded set)."""
    return cached(("view", handle.key, digest), lambda: np.asarray(handle.crop(image), dtype=np.uint8))


def predict(handle: ModelHandle, sel: Selection, topk: int = 5) -> list[Prediction]:
    """Top-``topk`` predictions for the selected image."""
    return cached(("predict", handle.key, sel.digest, topk), lambda: handle.predict(sel.image, topk))


def predict_image(handle: ModelHandle, image: Image.Image, digest: str, topk: int = 5) -> list[Prediction]:
    """Top-``topk`` predictions for any image (e.g. a generated scene) identified by ``digest``."""
    return cached(("predict", handle.key, digest, topk), lambda: handle.predict(image, topk))


def feature_maps(handle: ModelHandle, sel: Selection, layers: Sequence[str]) -> dict[str, np.ndarray]:
    """``layer -> (C, H, W)`` float32 activations of the selected image (one forward for all)."""
    from cnnviz_core.featureviz.feature_maps import feature_maps as compute

    def run() -> dict[str, np.ndarray]:
        return {k: v.numpy() for k, v in compute(handle, sel.image, list(layers)).items()}

    return cached(("fmaps", handle.key, sel.digest, tuple(layers)), run)


def layer_table(handle: ModelHandle) -> list[dict]:
    """Per-layer facts (type, output shape, params, MACs, receptive field) of the model."""
    from cnnviz_core.featureviz.architecture import layer_table as compute

    return cached(("layers", handle.key), lambda: compute(handle))


def scene(seed: int, index: int, tag: str):
    """Generated scene ``index`` of ``seed`` (one object, corner ``tag``): ``(Scene, PIL image, digest)``."""
    from cnnviz_core import image_digest
    from cnnviz_core.scenes import generate_scene

    def make():
        s = generate_scene(seed, index, objects=1, tag=tag)
        image = Image.fromarray(s.image)
        return s, image, image_digest(image)

    return cached(("scene", seed, index, tag), make)


def class_label(handle: ModelHandle, index: Optional[int]) -> str:
    if index is None:
        return "top class"
    return handle.class_name(index)


def explain_image(handle: ModelHandle, image: Image.Image, methods: Sequence[str], target: Optional[int],
                  layer: Optional[str], **kwargs):
    """``{method: MethodResult}`` for ``image`` (cached by the attribution engine; a method that does
    not apply to the model comes back with ``.error`` set instead of raising)."""
    from cnnviz_core.attribution import explain_detailed

    return explain_detailed(handle, image, list(methods), target, layer, on_error="collect", **kwargs)


def explain_results(handle: ModelHandle, sel: Selection, methods: Sequence[str], target: Optional[int],
                    layer: Optional[str], **kwargs):
    """:func:`explain_image` for the sidebar's image."""
    return explain_image(handle, sel.image, methods, target, layer, **kwargs)
