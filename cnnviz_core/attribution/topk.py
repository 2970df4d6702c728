"""Top activations of a unit over an image set, each with its receptive-field patch and projection
(Zeiler & Fergus 2014, Fig. 2: "the top 9 activations in a random subset of feature maps across the
validation data, projected down to pixel space using our deconvolutional network approach").

* :func:`channel_maxima`: for every image of a set, every channel's strongest activation at a layer
  and where it is. Batched forwards under ``torch.inference_mode``, stopped right after the layer;
  progress after each batch, cancel between batches. Cached per (model key, layer, image-set
  digest), so browsing the channels of a layer costs no new pass.
* :func:`top_activations`: the top ``k`` images for one channel (its strongest location per image,
  at most one entry per image) or for one neuron (a fixed position), sorted from the strongest, each
  with the image, position, value, exact receptive field, the patch of the image it covers and the
  unit's projection (deconvnet by default) on that image - all k projections in ONE batched
  truncated forward and one backward.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image

from ..cache import LRUCache
from ..errors import MethodUnavailableError, ParameterError
from ..hooks import StopForward, capture
from ..inputs import as_model_batch
from ..models import ModelHandle
from ..progress import CancelToken, ProgressFn, check_cancel, report
from .passes import unit_pass
from .receptive_field import Box, neuron_seed, receptive_fields
from .registry import Product
from .targets import NeuronTarget

ImageLike = Union[Image.Image, torch.Tensor]
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
#: Per-image channel maxima, shared by every caller of the process.
MAXIMA = LRUCache(16)
PROJECTION_RULES = {"deconvnet": Product.DECONVNET, "guided_backprop": Product.GUIDED, "saliency": Product.INPUT_GRAD}


class ImageSet:
    """An ordered, named set of images, loaded on demand, with a content digest (the cache key).

    Build with :meth:`from_images` (PIL images or normalized ``(1, 3, H, W)`` tensors in memory),
    :meth:`from_folder` (image files, sorted by name) or :meth:`from_scenes` (generated scenes)."""

    def __init__(self, names: Sequence[str], load: Callable[[int], ImageLike], digest: str) -> None:
        if not names:
            raise ParameterError("the image set is empty")
        self.names = tuple(names)
        self._load = load
        self.digest = digest

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> ImageLike:
        return self._load(i)

    @classmethod
    def from_images(cls, images: Sequence[ImageLike], names: Optional[Sequence[str]] = None) -> "ImageSet":
        images = list(images)
        names = list(names) if names is not None else [f"image {i}" for i in range(len(images))]
        if len(names) != len(images):
            raise ParameterError(f"got {len(names)} names for {len(images)} images")
        h = hashlib.blake2b(digest_size=16)
        for name, img in zip(names, images):
            h.update(name.encode())
            if isinstance(img, Image.Image):
                h.update(f"{img.size}{img.mode}".encode())
                h.update(img.tobytes())
            elif isinstance(img, torch.Tensor):
                t = img.detach().to("cpu").contiguous()
                h.update(f"{tuple(t.shape)}{t.dtype}".encode())
                h.update(t.numpy().tobytes())
            else:
                raise ParameterError(f"expected PIL images or tensors, got {type(img).__name__}")
        return cls(names, images.__getitem__, h.hexdigest())

    @classmethod
    def from_folder(cls, folder: Union[str, Path]) -> "ImageSet":
        from ..images import load_image

        root = Path(folder)
        if not root.is_dir():
            raise ParameterError(f"{folder} is not a folder")
        files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                       and not p.name.lower().endswith(".mask.png"))
        if not files:
            raise ParameterError(f"no images found in {folder} (looked for {', '.join(IMAGE_SUFFIXES)})")
        h = hashlib.blake2b(digest_size=16)
        for p in files:
            h.update(p.name.encode())
            h.update(hashlib.blake2b(p.read_bytes(), digest_size=16).digest())
        return cls([p.name for p in files], lambda i: load_image(files[i]), h.hexdigest())

    @classmethod
    def from_scenes(cls, count: int, seed: int, **scene_args: object) -> "ImageSet":
        """``count`` generated scenes (:func:`cnnviz_core.scenes.generate_scenes`), made once, in memory."""
        from ..scenes import generate_scenes

        scenes = generate_scenes(count, seed, **scene_args)  # type: ignore[arg-type]
        return cls.from_images([Image.fromarray(s.image) for s in scenes],
                               [f"scene {seed}-{i}" for i in range(count)])


@dataclass(frozen=True)
class ChannelMaxima:
    """Per image and channel of ``layer``: the strongest activation ``values`` (N, C) float32 and its
    cell ``positions`` (N, C, 2) (y, x) int64 (first in raster order on ties); ``map_shape`` (h, w)
    of the feature map, ``input_hw`` of the model input."""

    layer: str
    values: np.ndarray
    positions: np.ndarray
    map_shape: tuple[int, int]
    input_hw: tuple[int, int]
    names: tuple[str, ...]

    def top_channels(self, k: int) -> list[int]:
        """The ``k`` channels with the largest mean of per-image maxima (the most active)."""
        return [int(c) for c in np.argsort(-self.values.mean(axis=0), kind="stable")[:k]]


def _batch_size(handle: ModelHandle, batch_size: int) -> int:
    if batch_size < 1:
        raise ParameterError(f"batch_size must be >= 1, got {batch_size}")
    limit = getattr(handle, "max_batch", None)
    return min(batch_size, limit) if limit else batch_size


def _batches(handle: ModelHandle, images: ImageSet, batch_size: int):
    for start in range(0, len(images), batch_size):
        yield start, as_model_batch(handle, [images[i] for i in range(start, min(len(images), start + batch_size))])


def _truncated(handle: ModelHandle, x: torch.Tensor, layer: str) -> torch.Tensor:
    """The layer's output for ``x``, the forward stopped right after it, under inference mode."""
    with handle.lock, torch.inference_mode(), capture(handle.model, [], stop_at=layer) as store:
        try:
            handle.model(x)
        except StopForward:
            pass
    if layer not in store:
        raise ParameterError(f"layer {layer!r} is not used by the forward pass of {handle.name!r}")
    act = store[layer]
    if act.ndim != 4:
        raise ParameterError(f"layer {layer!r} outputs shape {tuple(act.shape)}, not a (N, C, h, w) feature map")
    return act


def channel_maxima(handle: ModelHandle, images: Union[ImageSet, Sequence[ImageLike]], layer: str, *,
                   batch_size: int = 32, progress: Optional[ProgressFn] = None,
                   cancel: Optional[CancelToken] = None, cache: Optional[LRUCache] = MAXIMA) -> ChannelMaxima:
    """Every channel's strongest activation (and where) at ``layer`` on every image; see :class:`ChannelMaxima`."""
    images = images if isinstance(images, ImageSet) else ImageSet.from_images(images)
    handle.module(layer)
    key = (handle.key, layer, images.digest)
    if cache is not None:
        hit = cache.get(key)
        if hit is not None:
            return hit
    size = _batch_size(handle, batch_size)
    values, positions = [], []
    map_shape = input_hw = None
    for start, x in _batches(handle, images, size):
        check_cancel(cancel)
        act = _truncated(handle, x, layer)
        map_shape, input_hw = tuple(act.shape[-2:]), tuple(x.shape[-2:])
        v, i = act.flatten(2).max(dim=2)
        values.append(v.float().cpu())
        positions.append(torch.stack([i // act.shape[-1], i % act.shape[-1]], dim=-1).cpu())
        report(progress, start + len(x), len(images), f"top activations: images at {layer}")
    result = ChannelMaxima(layer, torch.cat(values).numpy(), torch.cat(positions).numpy(), map_shape,  # type: ignore[arg-type]
                           input_hw, images.names)  # type: ignore[arg-type]
    if cache is not None:
        cache.put(key, result)
    return result


def _neuron_values(handle: ModelHandle, images: ImageSet, layer: str, channel: int, y: int, x: int,
                   batch_size: int, progress: Optional[ProgressFn], cancel: Optional[CancelToken]) -> tuple:
    values = []
    map_shape = input_hw = None
    for start, xb in _batches(handle, images, _batch_size(handle, batch_size)):
        check_cancel(cancel)
        act = _truncated(handle, xb, layer)
        NeuronTarget(layer, channel, y, x).resolve(act)  # checks channel and position
        map_shape, input_hw = tuple(act.shape[-2:]), tuple(xb.shape[-2:])
        values.append(act[:, channel, y, x].float().cpu())
        report(progress, start + len(xb), len(images), f"top activations: images at {layer}")
    return torch.cat(values).numpy(), map_shape, input_hw


@dataclass(frozen=True)
class TopActivation:
    """One of the top activations: ``rank`` (0 = strongest), image ``index`` and ``image`` (name),
    cell ``y``, ``x`` of the layer's map, ``activation``, ``receptive_field`` ``(top, left, bottom,
    right)`` in input pixels (bottom, right exclusive), ``patch`` ``(h, w, 3)`` uint8 (the image as
    the model sees it, cropped to the field), ``projection`` ``(3, h, w)`` float32 (the unit's
    gradient-family projection, raw, w.r.t. the normalized input, cropped likewise: zero outside)."""

    rank: int
    index: int
    image: str
    y: int
    x: int
    activation: float
    receptive_field: Box
    patch: np.ndarray
    projection: np.ndarray

    def as_dict(self) -> dict:
        return {"image": self.image, "y": self.y, "x": self.x, "activation": self.activation,
                "receptive_field": list(self.receptive_field)}


def top_activations(handle: ModelHandle, images: Union[ImageSet, Sequence[ImageLike]], layer: str, channel: int,
                    k: int = 9, *, at: Optional[tuple[int, int]] = None, method: str = "deconvnet",
                    batch_size: int = 32, progress: Optional[ProgressFn] = None,
                    cancel: Optional[CancelToken] = None, cache: Optional[LRUCache] = MAXIMA) -> list[TopActivation]:
    """The ``k`` strongest activations of channel ``channel`` of ``layer`` over ``images`` (each
    image's strongest location; with ``at=(y, x)``, of that one neuron), sorted from the strongest,
    with patches and ``method`` projections (``deconvnet``, ``guided_backprop`` or ``saliency``)."""
    if k < 1:
        raise ParameterError(f"k must be >= 1, got {k}")
    if method not in PROJECTION_RULES:
        raise ParameterError(f"unknown projection {method!r}; choose from {', '.join(PROJECTION_RULES)}")
    images = images if isinstance(images, ImageSet) else ImageSet.from_images(images)
    if at is None:
        maxima = channel_maxima(handle, images, layer, batch_size=batch_size, progress=progress, cancel=cancel,
                                cache=cache)
        if not 0 <= channel < maxima.values.shape[1]:
            raise ParameterError(f"channel {channel} is out of range 0..{maxima.values.shape[1] - 1} for layer {layer!r}")
        values, cells = maxima.values[:, channel], maxima.positions[:, channel]
        map_shape, input_hw = maxima.map_shape, maxima.input_hw
    else:
        values, map_shape, input_hw = _neuron_values(handle, images, layer, channel, at[0], at[1], batch_size,
                                                     progress, cancel)
        cells = np.tile(np.asarray(at, np.int64), (len(values), 1))
    order = np.argsort(-values, kind="stable")[:k]
    check_cancel(cancel)
    x = as_model_batch(handle, [images[int(i)] for i in order])
    pos = torch.as_tensor(cells[order], dtype=torch.long)
    product = PROJECTION_RULES[method]
    chunk = _batch_size(handle, len(order))  # all k in one pass, unless the model takes smaller batches
    passes = [unit_pass(handle, x[i:i + chunk], NeuronTarget(layer, channel, 0, 0), {product},
                        positions=pos[i:i + chunk]) for i in range(0, len(order), chunk)]
    grads = torch.cat([p.products[product] for p in passes])
    c = passes[0].products[Product.ACTIVATION].shape[1]
    seeds = torch.stack([neuron_seed((c, *map_shape), channel, int(yy), int(xx)) for yy, xx in pos])
    try:
        boxes = receptive_fields(handle, layer, input_hw, seeds)
    except MethodUnavailableError:  # geometry not traceable: the whole image
        boxes = [None] * len(seeds)
    out = []
    for rank, (i, box) in enumerate(zip(order, boxes)):
        box = box or (0, 0, input_hw[0], input_hw[1])
        t, l, b, r = box
        rgb = handle.to_display(x[rank:rank + 1])
        out.append(TopActivation(rank, int(i), images.names[int(i)], int(pos[rank, 0]), int(pos[rank, 1]),
                                 float(values[i]), box, rgb[t:b, l:r].copy(),
                                 grads[rank, :, t:b, l:r].detach().to("cpu", torch.float32).numpy().copy()))
    return out


def projection_image(projection: np.ndarray) -> np.ndarray:
    """``(3, h, w)`` signed projection -> ``(h, w, 3)`` uint8, 0 = grey (the papers' rendering:
    ``g / (2 max|g|) + 0.5``)."""
    g = np.asarray(projection, np.float32)
    m = float(np.abs(g).max())
    img = g / (2 * m) + 0.5 if m > 0 else np.full_like(g, 0.5)
    return (np.clip(img, 0, 1).transpose(1, 2, 0) * 255).round().astype(np.uint8)
