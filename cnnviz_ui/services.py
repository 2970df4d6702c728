"""Services of the feature-visualization and foundation pages (basics, architectures, filters, Deep
Dream, style transfer): typed, cached calls into :mod:`cnnviz_core` that return arrays, figures or
dataclasses, so that pages never touch torch tensors or a model's modules.

* long tasks take frozen parameter dataclasses (:class:`MaximizeParams`, :class:`DreamParams`,
  :class:`StyleParams`): they are the run's identity (``TaskState.params``) and the arguments of the
  ``run_*`` function that does the work;
* every model is loaded on the sidebar's device (``Selection.device``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import streamlit as st
from PIL import Image

from cnnviz_core import ModelHandle

from .state import Selection, cached, get_engine

POOLS = ("MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d")


def offline() -> bool:
    return bool(os.environ.get("CNNVIZ_OFFLINE"))


def fixed_model(name: str, device: str) -> ModelHandle:
    """Catalog model ``name`` on ``device`` with its trained weights when they are here, else random
    weights (check ``handle.weights_label``): for pages that compare fixed models, never waiting
    for a download."""
    from cnnviz_core import get_entry

    return get_engine().model(name, get_entry(name).available_weights(), device)


# ---- kernels (Filters page, Architecture page) ---------------------------------------------------


@dataclass(frozen=True)
class KernelFacts:
    """A convolution's weight shape ``(filters, inputs, kernel, kernel)`` and the views it allows."""

    filters: int
    inputs: int
    kernel: int
    views: tuple[str, ...]


@dataclass(frozen=True)
class KernelImage:
    """The montage of a layer's kernels (uint8 RGB) and the view actually used."""

    image: np.ndarray
    view: str


def kernel_facts(handle: ModelHandle, layer: str) -> KernelFacts:
    from cnnviz_core.featureviz.filters import conv_weight

    shape = tuple(conv_weight(handle, layer).shape)
    views = ("auto", "rgb", "per_channel", "summary") if shape[1] == 3 else ("auto", "per_channel", "summary")
    return KernelFacts(int(shape[0]), int(shape[1]), int(shape[-1]), views)


def kernel_image(handle: ModelHandle, layer: str, view: str, scaling: str, n_filters: int) -> KernelImage:
    """The kernels of ``layer`` as one RGB montage (cached by model, layer and view)."""
    from cnnviz_core.featureviz.filters import conv_weight, kernel_montage, kernel_view

    used = kernel_view(conv_weight(handle, layer), view)
    k = kernel_facts(handle, layer).kernel
    image = cached(("kernels", handle.key, layer, used, scaling, n_filters),
                   lambda: kernel_montage(handle, layer, view=used, scaling=scaling, max_filters=n_filters,
                                          max_channels=16, upscale=max(2, 30 // k), pad=3))
    rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
    return KernelImage(rgb, used)


def kernel_weights(handle: ModelHandle, layer: str) -> np.ndarray:
    """``(filters, inputs, k, k)`` float32 weights of ``layer`` (for the NumPy download)."""
    from cnnviz_core.featureviz.filters import conv_weight

    return conv_weight(handle, layer).numpy()


@dataclass(frozen=True)
class FirstLayer:
    image: np.ndarray
    layer: str
    weights_label: str


def first_layer_kernels(name: str, device: str) -> FirstLayer:
    """The montage of catalog model ``name``'s first convolution (through the engine's model cache,
    on ``device``; the montage is cached)."""
    from cnnviz_core import get_entry
    from cnnviz_core.featureviz.filters import kernel_montage

    trained = get_entry(name).available_weights() is not None

    def compute() -> FirstLayer:
        handle = fixed_model(name, device)
        layer = handle.conv_layers[0]
        k = kernel_facts(handle, layer).kernel
        image = kernel_montage(handle, layer, view="rgb", max_filters=64, upscale=max(1, 33 // k), pad=2)
        return FirstLayer(image, layer, handle.weights_label)

    return cached(("conv1-montage", name, trained), compute)


def architecture_table(rows: Sequence[dict]) -> list[dict]:
    """The comparison rows (``architecture_comparison``) as the table the page shows and exports."""
    return [{
        "model": r["name"], "year": r["year"], "weight layers": r["depth"], "parameters (M)": round(r["params"] / 1e6, 1),
        "GFLOPS": round(r["gflops"], 2), "ImageNet top-1 %": None if r["acc1"] is None else round(r["acc1"], 1),
        "top-5 %": None if r["acc5"] is None else round(r["acc5"], 1),
        "conv1": f"{r['conv1_kernel']}×{r['conv1_kernel']} / stride {r['conv1_stride']}",
    } for r in rows]


# ---- layers (Basics page) ------------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    """One step of a conv stage: ``name`` (Convolution, ReLU, Pooling) and its layer-table row."""

    name: str
    row: dict = field(hash=False, compare=False)

    @property
    def path(self) -> str:
        return str(self.row["path"])


def conv_choices(rows: Sequence[dict]) -> dict[int, str]:
    """``{row index: label}`` of the convolutions in the layer table."""
    return {i: f"{r['path']}  ({r['kernel']}×{r['kernel']}, stride {r['stride']}, {r['output_shape'][0]} filters)"
            for i, r in enumerate(rows) if r["type"] == "Conv2d"}


def conv_stage(rows: Sequence[dict], conv_i: int) -> list[Stage]:
    """The convolution at row ``conv_i``, the first ReLU after it and the first pooling up to the
    next convolution (when there are any)."""
    convs = [i for i, r in enumerate(rows) if r["type"] == "Conv2d"]
    nxt = next((i for i in convs if i > conv_i), len(rows))
    relu_i = next((i for i in range(conv_i + 1, nxt) if rows[i]["type"] == "ReLU"), None)
    pool_i = next((i for i in range(conv_i + 1, min(nxt + 1, len(rows))) if rows[i]["type"] in POOLS), None)
    return [Stage("Convolution", rows[conv_i])] + ([Stage("ReLU", rows[relu_i])] if relu_i is not None else []) \
        + ([Stage("Pooling", rows[pool_i])] if pool_i is not None else [])


@dataclass(frozen=True)
class Classifier:
    """The last fully connected layer's row, the row before it (or None) and whether global average
    pooling precedes it."""

    last: dict = field(hash=False)
    before: Optional[dict] = field(hash=False)
    gap: bool


def classifier(rows: Sequence[dict]) -> Optional[Classifier]:
    fc = [i for i, r in enumerate(rows) if r["type"] == "Linear"]
    if not fc:
        return None
    return Classifier(rows[fc[-1]], rows[fc[-1] - 1] if fc[-1] > 0 else None,
                      any(r["type"] == "AdaptiveAvgPool2d" for r in rows))


def layer_table_rows(rows: Sequence[dict]) -> list[dict]:
    """The layer table as shown and exported."""
    return [{
        "layer": r["path"], "type": r["type"], "output shape": " × ".join(str(s) for s in r["output_shape"]),
        "parameters": r["params"], "MACs (M)": round(r["macs"] / 1e6, 2),
        "receptive field (px)": str(r["rf"]) if r["rf"] is not None else "whole image",
    } for r in rows]


def ranked_channels(fmap: np.ndarray, n: int, rank: str = "mean") -> np.ndarray:
    """Indices of the ``n`` channels of a ``(C, H, W)`` map with the largest mean (or max)."""
    flat = fmap.reshape(fmap.shape[0], -1)
    scores = flat.mean(axis=1) if rank == "mean" else flat.max(axis=1)
    return np.argsort(-scores, kind="stable")[:n]


# ---- activation maximization (Filters page) ------------------------------------------------------

AM_TARGETS = ("Channel", "Neuron", "Class logit")
AM_COST = {
    "Channel": "runs the network up to the layer each step",
    "Neuron": "runs the network up to the layer each step (same as a channel; one cell of its map)",
    "Class logit": "runs the **whole** network each step: slower than a layer target, most on deep models",
}


@dataclass(frozen=True)
class MaximizeParams:
    """One activation-maximization run: a ``layer`` channel / neuron (``position`` ``(y, x)`` or
    ``"center"``), or a class logit (``class_index``, no layer)."""

    model: str
    kind: str
    layer: Optional[str]
    channel: Optional[int]
    position: Optional[object]
    class_index: Optional[int]
    steps: int
    parametrization: str
    lr: float

    @property
    def label(self) -> str:
        if self.kind == "Class logit":
            return f"class {self.class_index} logit"
        where = f" at {self.position}" if self.position is not None else ""
        return f"{self.layer} channel {self.channel}{where}"


def maximize_params(handle: ModelHandle, kind: str, layer: str, channel: int, position, class_index: Optional[int],
                    steps: int, parametrization: str, lr: float) -> MaximizeParams:
    if kind == "Class logit":
        return MaximizeParams(handle.key, kind, None, None, None, int(class_index or 0), int(steps), parametrization,
                              float(lr))
    return MaximizeParams(handle.key, kind, layer, int(channel), position if kind == "Neuron" else None, None,
                          int(steps), parametrization, float(lr))


def run_maximize(handle: ModelHandle, p: MaximizeParams, progress=None, cancel=None):
    """:func:`cnnviz_core.featureviz.maximize_activation` for ``p`` (a ``SynthesisResult``)."""
    from cnnviz_core.featureviz import Robustness, maximize_activation

    return maximize_activation(handle, p.layer, p.channel, position=p.position, class_index=p.class_index,
                               steps=p.steps, parametrization=p.parametrization, lr=p.lr, robustness=Robustness(),
                               preview_every=max(1, p.steps // 16), progress=progress, cancel=cancel)


def layer_grid_side(handle: ModelHandle, sel: Selection, layer: str) -> tuple[int, int, int]:
    """``(C, h, w)`` of ``layer``'s output for the selected image."""
    from .compute import feature_maps

    return tuple(feature_maps(handle, sel, [layer])[layer].shape)  # type: ignore[return-value]


# ---- Deep Dream ----------------------------------------------------------------------------------


def layer_channels(handle: ModelHandle, layer: str) -> int:
    """Output channels of convolution ``layer``."""
    return kernel_facts(handle, layer).filters


@dataclass(frozen=True)
class DreamParams:
    model: str
    image: str  # digest
    layer: Optional[str]
    channel: Optional[int]
    class_index: Optional[int]
    guide: Optional[str]  # digest of the guide image, or None
    octaves: int
    octave_scale: float
    steps: int
    step_size: float
    jitter: int
    max_side: int


def dream_cost(p: DreamParams, size: tuple[int, int]) -> str:
    """What ``p`` costs on an image of ``size`` (w, h): the octave sizes, the steps and the pixels
    pushed through the network relative to one pass at full size."""
    from cnnviz_core.featureviz.dream import octave_sizes

    w, h = size
    scale = min(1.0, p.max_side / max(w, h))
    full = (max(1, round(h * scale)), max(1, round(w * scale)))
    sizes = octave_sizes(full[0], full[1], p.octaves, p.octave_scale)
    work = sum(a * b for a, b in sizes) / float(full[0] * full[1])
    dropped = p.octaves - len(sizes)
    text = (f"{len(sizes)} octave{'s' if len(sizes) != 1 else ''} ({', '.join(f'{b}×{a}' for a, b in sizes)} px) × "
            f"{p.steps} steps = {len(sizes) * p.steps} gradient steps, ≈ {work * p.steps:.1f} full-size passes")
    if dropped:
        text += f"; {dropped} octave{'s' if dropped > 1 else ''} dropped (under 32 px)"
    if p.guide is not None:
        text += "; the guide adds one forward pass"
    return text + "."


def run_dream(handle: ModelHandle, image: Image.Image, guide: Optional[Image.Image], p: DreamParams,
              progress=None, cancel=None):
    from cnnviz_core.featureviz import deep_dream

    return deep_dream(handle, image, p.layer, p.channel, class_index=p.class_index, guide=guide, octaves=p.octaves,
                      octave_scale=p.octave_scale, steps=p.steps, step_size=p.step_size, jitter=p.jitter,
                      max_side=p.max_side, preview_every=max(1, min(4, p.steps // 2)), progress=progress,
                      cancel=cancel)


# ---- style transfer ------------------------------------------------------------------------------

STYLE_MODEL = "vgg19"


@dataclass(frozen=True)
class StyleNetwork:
    """VGG-19's readiness: ``ready`` (weights in the cache), ``download_mb``, ``where`` (how to get
    the weights offline, e.g. the checkpoint path)."""

    ready: bool
    download_mb: float
    where: str


def style_network() -> StyleNetwork:
    from cnnviz_core import get_entry

    entry = get_entry(STYLE_MODEL)
    ready = entry.readiness()
    return StyleNetwork(ready.status == "ready", float(ready.download_mb or 0.0), entry.default_source.where())


@dataclass(frozen=True)
class StyleParams:
    weights: Optional[str]  # "default" or None (random)
    device: str
    content: str  # digest
    style: str  # digest
    style_exp: int
    tv_weight: float
    preserve_color: bool
    style_layers: tuple[str, ...]
    layer_weights: tuple[float, ...]
    content_layer: str
    steps: int
    size: int
    optimizer: str
    init: str

    @property
    def style_weight(self) -> float:
        return 10.0 ** self.style_exp


def run_style(content: Image.Image, style: Image.Image, p: StyleParams, progress=None, cancel=None):
    """Load VGG-19 on ``p.device`` (downloading its weights only when online) and transfer."""
    from cnnviz_core.featureviz import style_transfer

    handle = get_engine().model(STYLE_MODEL, p.weights, p.device,
                                allow_download=p.weights is not None and not offline())
    total = sum(p.layer_weights) or 1.0
    return style_transfer(handle, content, style, steps=p.steps, size=p.size, optimizer=p.optimizer, init=p.init,
                          content_weight=1.0, style_weight=p.style_weight, tv_weight=p.tv_weight,
                          style_layers=p.style_layers, style_layer_weights=[w / total for w in p.layer_weights],
                          content_layer=p.content_layer, preserve_color=p.preserve_color,
                          preview_every=max(1, p.steps // 10), progress=progress, cancel=cancel)


def thumbnail(image: Image.Image, side: int) -> np.ndarray:
    """The image with its longer side ``side`` (uint8 RGB)."""
    copy = image.copy()
    scale = side / max(copy.size)
    return np.asarray(copy.resize((max(1, round(copy.width * scale)), max(1, round(copy.height * scale)))))


# ---- "What each layer learned" (Filters page) ----------------------------------------------------


@dataclass(frozen=True)
class LearnParams:
    model: str
    layer: str
    source: str
    count: int
    channels: int
    top_k: int


def learned_panels(rows: dict, side: int = 96) -> dict[str, np.ndarray]:
    """The Fig. 2 grid of :func:`cnnviz_ui.services_units.layer_learned` as titled panels for
    :func:`cnnviz_ui.widgets.grid_png_bytes` (rows padded so each channel starts a grid row)."""
    cols = 2 * max((len(v) for v in rows.values()), default=1)
    panels: dict[str, np.ndarray] = {}
    blank = np.full((side, side, 3), 255, np.uint8)
    pad = 0
    for c, items in rows.items():
        n = 0
        for i, (proj, patch, caption) in enumerate(items):
            panels[f"ch {c} #{i + 1} projection"] = _fit(proj, side)
            panels[f"ch {c} #{i + 1} {caption}"] = _fit(patch, side)
            n += 2
        for _ in range(cols - n):
            pad += 1
            panels[" " * pad] = blank
    return panels


def _fit(rgb: np.ndarray, side: int) -> np.ndarray:
    return np.asarray(Image.fromarray(np.asarray(rgb, dtype=np.uint8)).resize((side, side), Image.NEAREST))



@st.cache_data(show_spinner="Tracing the architectures…")
def comparison_rows() -> list[dict]:
    """:func:`cnnviz_core.featureviz.architecture_comparison` of the classic models (traced once per
    process: nothing is downloaded)."""
    from cnnviz_core.featureviz.compare import DEFAULT_MODELS, architecture_comparison

    return architecture_comparison(DEFAULT_MODELS)
