"""Procedural shape scenes with ground-truth masks, for training and auditing our own models.

A scene is an RGB image (``size`` x ``size``, default 128, 64..1024) holding 1 or 2 objects from
:data:`CLASSES` on a textured clutter background (smooth gradient + stripes + noise) with soft
non-class distractor blobs. Each object has a random colour chosen to differ from the background it
covers, a random size, rotation and position; objects never overlap each other nor the corner-tag
area (bounding boxes are kept ``margin`` pixels apart). An optional *corner tag* (a solid square of
:data:`TAG_COLORS` in the top-left corner, ~9 % of the side) encodes a class: ``"match"`` = the first
object's class, ``"shuffle"`` = a class none of the objects has, ``"random"`` = a uniformly random
class independent of the objects (used to train the unbiased model), ``"none"`` = no tag.

Scene ``index`` of ``seed`` is drawn from ``numpy.random.default_rng([seed, index])`` alone, so any
scene is reproducible without generating the ones before it. The tag area is kept free in every scene
and the tag class is drawn last, so the same ``(seed, index)`` under different ``tag`` modes gives the
same scene except for the tag pixels (paired comparisons). Pure numpy/PIL (no torch).

Conventions: ``mask`` is ``(H, W) uint8``, 0 = background, ``k`` = object ``k`` (1-based, the order of
``Scene.objects``). ``bbox = (x0, y0, x1, y1)`` is half-open (x1, y1 exclusive) and tight around the
object's mask, i.e. ``mask[y0:y1, x0:x1]`` contains every pixel of the object and touches all 4 sides.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .errors import ParameterError

CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "ring")
#: Tag colour of each class (RGB), pairwise far apart; index = class index.
TAG_COLORS: tuple[tuple[int, int, int], ...] = (
    (230, 25, 25), (25, 200, 40), (30, 60, 235), (250, 225, 20), (235, 30, 235), (20, 225, 230),
)
TAG_MODES: tuple[str, ...] = ("none", "match", "shuffle", "random")
TAG_FRACTION = 0.09  # tag side / image side
TAG_OFFSET = 2  # pixels between the image border and the tag
_SUPERSAMPLE = 4  # shapes are rasterized at 4x and box-filtered, then thresholded at 50 %


@dataclass(frozen=True)
class SceneStyle:
    """Difficulty knobs. Object diameter is ``diameter * size`` (per object count); ``min_contrast``
    .. ``max_contrast`` bounds the 10th-percentile RGB distance between the object colour and the
    background around it (``max_contrast=None``: no upper bound); ``clutter`` scales the stripes and
    noise of the background and ``blobs`` is the range of distractor blob counts."""

    diameter_one: tuple[float, float] = (0.30, 0.50)
    diameter_two: tuple[float, float] = (0.27, 0.40)
    min_contrast: float = 90.0
    max_contrast: float | None = None
    blobs: tuple[int, int] = (1, 3)
    clutter: float = 1.0


DEFAULT_STYLE = SceneStyle()


@dataclass(frozen=True)
class SceneObject:
    """One object: class, value in the mask, tight half-open box ``(x0, y0, x1, y1)``, RGB colour."""

    class_name: str
    class_index: int
    mask_value: int
    bbox: tuple[int, int, int, int]
    color: tuple[int, int, int] = (0, 0, 0)


@dataclass
class Scene:
    """``image`` (H, W, 3) uint8; ``mask`` (H, W) uint8 (0 = background, k = object k);
    ``tag_class`` is the class index the corner tag encodes, or None without a tag."""

    image: np.ndarray
    mask: np.ndarray
    objects: list[SceneObject] = field(default_factory=list)
    tag_class: int | None = None

    @property
    def class_indices(self) -> list[int]:
        return [o.class_index for o in self.objects]


def _check(seed: int, size: int, objects: int, tag: str, count: int = 1) -> None:
    if seed < 0:
        raise ParameterError(f"seed must be >= 0, got {seed}")
    if count <= 0:
        raise ParameterError(f"count must be >= 1, got {count}")
    if not 64 <= size <= 1024:
        raise ParameterError(f"size must be between 64 and 1024 pixels, got {size}")
    if objects not in (1, 2):
        raise ParameterError(f"objects must be 1 or 2, got {objects}")
    if tag not in TAG_MODES:
        raise ParameterError(f"unknown tag {tag!r}; expected one of {', '.join(TAG_MODES)}")


def tag_box(size: int) -> tuple[int, int, int, int]:
    """Half-open box ``(x0, y0, x1, y1)`` of the corner tag in a ``size`` px scene."""
    side = max(4, round(TAG_FRACTION * size))
    return (TAG_OFFSET, TAG_OFFSET, TAG_OFFSET + side, TAG_OFFSET + side)


def _background(rng: np.random.Generator, size: int, clutter: float = 1.0) -> np.ndarray:
    """(size, size, 3) float32 in [0, 255]: gradient between two colours + sinusoidal stripes +
    low- and high-frequency noise (the last three scaled by ``clutter``)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    theta = rng.uniform(0, 2 * np.pi)
    t = np.cos(theta) * xx + np.sin(theta) * yy
    t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    c0, c1 = rng.uniform(20, 235, (2, 3)).astype(np.float32)
    img = c0 + (c1 - c0) * t[..., None]
    phi, freq, phase = rng.uniform(0, 2 * np.pi), rng.uniform(3, 14), rng.uniform(0, 6.3)
    stripes = np.sin(2 * np.pi * freq * (np.cos(phi) * xx + np.sin(phi) * yy) + phase)
    amplitude = rng.uniform(0, 35) * clutter * rng.uniform(0.5, 1, 3)
    img += stripes[..., None] * amplitude.astype(np.float32)
    coarse = rng.normal(0, 1, (6, 6, 3)).astype(np.float32)
    low = np.asarray(Image.fromarray(((coarse + 4) * 32).clip(0, 255).astype(np.uint8))
                     .resize((size, size), Image.BICUBIC), dtype=np.float32) / 32 - 4
    img += low * np.float32(rng.uniform(0, 15) * clutter)
    noise = rng.standard_normal((size, size, 3), dtype=np.float32)
    img += noise * np.float32(rng.uniform(2, 14) * clutter)
    return img.clip(0, 255)


def _polygon(cls: str, radius: float, angle: float) -> list[np.ndarray]:
    """Outline(s) of a class centred at 0 with circumradius ``radius``: list of (n, 2) arrays.
    A second array (ring only) is a hole."""
    if cls in ("circle", "ring"):
        t = np.linspace(0, 2 * np.pi, 96, endpoint=False)
        unit = np.stack([np.cos(t), np.sin(t)], 1)
        return [unit * radius] + ([unit * radius * 0.55] if cls == "ring" else [])
    if cls == "square":
        t = np.pi / 4 + np.arange(4) * np.pi / 2
        pts = np.stack([np.cos(t), np.sin(t)], 1)
    elif cls == "triangle":
        t = -np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        pts = np.stack([np.cos(t), np.sin(t)], 1)
    elif cls == "star":
        t = -np.pi / 2 + np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
        pts = np.stack([np.cos(t) * r, np.sin(t) * r], 1)
    else:  # cross: plus sign with arms of half-width a
        a = 0.3
        q = [(a, -1), (a, -a), (1, -a), (1, a), (a, a), (a, 1), (-a, 1), (-a, a), (-1, a), (-1, -a),
             (-a, -a), (-a, -1)]
        pts = np.asarray(q, dtype=np.float64) / np.hypot(1, a)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return [pts @ rot.T * radius]


def _raster(polys: list[np.ndarray], center: tuple[float, float], size: int) -> np.ndarray:
    """Bool (size, size) mask of the filled first polygon minus the others (holes), rasterized at
    4x within the polygon's box, box-filtered and thresholded at 50 %."""
    s = _SUPERSAMPLE
    lo = np.clip(np.floor(polys[0].min(0) + center).astype(int) - 1, 0, size)
    hi = np.clip(np.ceil(polys[0].max(0) + center).astype(int) + 1, 0, size)
    out = np.zeros((size, size), bool)
    if (hi <= lo).any():
        return out
    canvas = Image.new("L", tuple((hi - lo) * s), 0)
    draw = ImageDraw.Draw(canvas)
    for i, poly in enumerate(polys):
        draw.polygon(((poly + center - lo) * s).ravel().tolist(), fill=0 if i else 255)
    small = canvas.resize(tuple(hi - lo), Image.BOX)
    out[lo[1]:hi[1], lo[0]:hi[0]] = np.asarray(small) >= 128
    return out


def _tight_bbox(m: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(m)
    return (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


def _overlaps(a: tuple[int, ...], b: tuple[int, ...], margin: int) -> bool:
    return not (a[2] + margin <= b[0] or b[2] + margin <= a[0]
                or a[3] + margin <= b[1] or b[3] + margin <= a[1])


def _pick_color(rng: np.random.Generator, under: np.ndarray, style: SceneStyle) -> np.ndarray:
    """Random RGB whose 10th-percentile distance to the pixels ``under`` (n, 3) lies in
    ``[style.min_contrast, style.max_contrast]``; the try nearest to that band of 40 otherwise."""
    hi = np.inf if style.max_contrast is None else style.max_contrast
    best, best_miss = None, np.inf
    for _ in range(40):
        c = rng.integers(0, 256, 3).astype(np.float32)
        score = float(np.percentile(np.linalg.norm(under - c, axis=1), 10))
        miss = max(style.min_contrast - score, score - hi, 0.0)
        if miss == 0.0:
            return c
        if miss < best_miss:
            best, best_miss = c, miss
    return best


def _add_blob(rng: np.random.Generator, img: np.ndarray, keep_out: list[tuple[int, ...]],
              diam: float) -> bool:
    """Blend an irregular, elongated soft smudge of random colour (none of the classes) into ``img``
    (H, W, 3) float32 in place, unless its extent reaches a box of ``keep_out``; returns if drawn."""
    size = img.shape[0]
    t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    r = 1 + sum(rng.uniform(0.05, 0.25) * np.sin(k * t + rng.uniform(0, 6.3)) for k in (2, 3))
    aspect, ang = rng.uniform(1.6, 2.6), rng.uniform(0, np.pi)
    pts = np.stack([np.cos(t) * r * aspect, np.sin(t) * r], 1) * diam / (2 * aspect)
    pts = pts @ np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]]).T
    pts += rng.uniform(0, size, 2)
    sigma, opacity = max(1.0, diam * rng.uniform(0.04, 0.12)), rng.uniform(0.5, 0.9)
    color = rng.uniform(0, 255, 3).astype(np.float32)
    pad = int(np.ceil(3 * sigma)) + 1
    box = (*(np.floor(pts.min(0)).astype(int) - pad), *(np.ceil(pts.max(0)).astype(int) + pad))
    if any(_overlaps(box, k, 0) for k in keep_out):
        return False
    x0, y0, x1, y1 = box
    canvas = Image.new("L", (x1 - x0, y1 - y0), 0)
    ImageDraw.Draw(canvas).polygon((pts - (x0, y0)).ravel().tolist(), fill=255)
    alpha = np.asarray(canvas.filter(ImageFilter.GaussianBlur(sigma)), np.float32) * (opacity / 255)
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, size), min(y1, size)
    if cx1 > cx0 and cy1 > cy0:
        a = alpha[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0, None]
        img[cy0:cy1, cx0:cx1] += (color - img[cy0:cy1, cx0:cx1]) * a
    return True


def _place_objects(rng: np.random.Generator, classes: list[int], size: int, margin: int,
                   diameters: tuple[float, float], tag_area: tuple[int, int, int, int],
                   ) -> list[tuple[np.ndarray, tuple[int, int, int, int]]]:
    """(mask, tight box) per class: random diameter (fraction of ``size``), rotation and position,
    redrawn until its box is ``margin`` px away from the boxes placed before and from the tag."""
    lo, hi = diameters
    placed: list[tuple[np.ndarray, tuple[int, int, int, int]]] = []
    for cls in classes:
        for _ in range(200):
            diam = rng.uniform(lo, hi) * size
            polys = _polygon(CLASSES[cls], diam / 2, rng.uniform(0, 2 * np.pi))
            ext = np.abs(polys[0]).max(0)
            cx = rng.uniform(margin + ext[0], size - margin - ext[0])
            cy = rng.uniform(margin + ext[1], size - margin - ext[1])
            m = _raster(polys, (cx, cy), size)
            if not m.any():
                continue
            box = _tight_bbox(m)
            if not any(_overlaps(box, b, margin) for b in [b for _, b in placed] + [tag_area]):
                placed.append((m, box))
                break
            lo, hi = lo * 0.97, hi * 0.97  # shrink slowly when crowded
        else:  # pragma: no cover - 200 failed placements cannot happen with the default ranges
            raise RuntimeError(f"could not place object {len(placed) + 1} of {len(classes)}")
    return placed


def generate_scene(seed: int, index: int = 0, *, size: int = 128, objects: int = 1,
                   tag: str = "none", style: SceneStyle = DEFAULT_STYLE) -> Scene:
    """Scene ``index`` of ``seed`` (see module docstring); ``objects`` in {1, 2} of distinct classes,
    ``tag`` in :data:`TAG_MODES`. Raises ParameterError on bad arguments."""
    _check(seed, size, objects, tag)
    if index < 0:
        raise ParameterError(f"index must be >= 0, got {index}")
    rng = np.random.default_rng([int(seed), int(index)])
    img = _background(rng, size, style.clutter)
    margin = max(3, size // 32)
    tag_area = tag_box(size)
    classes = [int(c) for c in rng.choice(len(CLASSES), objects, replace=False)]
    diameters = style.diameter_one if objects == 1 else style.diameter_two
    placed = _place_objects(rng, classes, size, margin, diameters, tag_area)
    tx0, ty0, tx1, ty1 = tag_area
    keep_out = [(b[0] - margin, b[1] - margin, b[2] + margin, b[3] + margin) for _, b in placed]
    keep_out.append((0, 0, tx1 + margin, ty1 + margin))
    for _ in range(int(rng.integers(style.blobs[0], style.blobs[1] + 1))):
        for _ in range(10):  # a blob that would reach an object or the tag is redrawn elsewhere
            if _add_blob(rng, img, keep_out, rng.uniform(0.15, 0.4) * size):
                break
    mask = np.zeros((size, size), np.uint8)
    objs: list[SceneObject] = []
    for k, (cls, (m, box)) in enumerate(zip(classes, placed), start=1):
        ring = np.zeros_like(m)
        x0, y0 = max(0, box[0] - margin), max(0, box[1] - margin)
        ring[y0:box[3] + margin, x0:box[2] + margin] = True
        color = _pick_color(rng, img[ring], style)
        img[m] = color
        mask[m] = k
        objs.append(SceneObject(CLASSES[cls], cls, k, box, tuple(int(v) for v in color)))
    tag_class = _tag_class(rng, tag, classes)
    if tag_class is not None:
        img[ty0:ty1, tx0:tx1] = TAG_COLORS[tag_class]
    return Scene(np.round(img).astype(np.uint8), mask, objs, tag_class)


def _tag_class(rng: np.random.Generator, tag: str, classes: list[int]) -> int | None:
    if tag == "none":
        return None
    if tag == "match":
        return classes[0]
    if tag == "shuffle":
        return int(rng.choice([c for c in range(len(CLASSES)) if c not in classes]))
    return int(rng.integers(len(CLASSES)))


def generate_scenes(count: int, seed: int, *, size: int = 128, objects: int = 1, tag: str = "none",
                    style: SceneStyle = DEFAULT_STYLE) -> list[Scene]:
    """Scenes ``0 .. count-1`` of ``seed`` (each equal to ``generate_scene(seed, i, ...)``)."""
    _check(seed, size, objects, tag, count)
    return [generate_scene(seed, i, size=size, objects=objects, tag=tag, style=style)
            for i in range(count)]


def write_scenes(scenes: Iterable[Scene], out_dir: str | Path, prefix: str = "scene",
                 **meta: object) -> Path:
    """Write ``PREFIX_NNNN.png`` (RGB), ``PREFIX_NNNN.mask.png`` (L, value k = object k) and
    ``scenes.json`` (``classes``, ``tag_colors``, the ``meta`` keywords, e.g. seed and size, and one
    entry per image). Returns the path of ``scenes.json``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for i, scene in enumerate(scenes):
        name = f"{prefix}_{i:04d}"
        Image.fromarray(scene.image, "RGB").save(out / f"{name}.png")
        Image.fromarray(scene.mask, "L").save(out / f"{name}.mask.png")
        entries.append({
            "image": f"{name}.png", "mask": f"{name}.mask.png", "tag_class": scene.tag_class,
            "objects": [{"class": o.class_name, "class_index": o.class_index,
                         "mask_value": o.mask_value, "bbox": list(o.bbox), "color": list(o.color)}
                        for o in scene.objects],
        })
    doc = {"classes": list(CLASSES), "tag_colors": [list(c) for c in TAG_COLORS],
           "bbox": "x0, y0, x1, y1 in pixels; x1 and y1 exclusive", **meta,
           "count": len(entries), "images": entries}
    path = out / "scenes.json"
    path.write_text(json.dumps(doc, indent=1))
    return path


def read_scenes(directory: str | Path) -> list[Scene]:
    """Load the scenes written by :func:`write_scenes` into ``directory`` (in file order)."""
    d = Path(directory)
    doc = json.loads((d / "scenes.json").read_text())
    scenes = []
    for e in doc["images"]:
        objs = [SceneObject(o["class"], o["class_index"], o["mask_value"], tuple(o["bbox"]),
                            tuple(o.get("color", (0, 0, 0)))) for o in e["objects"]]
        with Image.open(d / e["image"]) as im, Image.open(d / e["mask"]) as mk:
            image, mask = np.asarray(im.convert("RGB")), np.asarray(mk)
        scenes.append(Scene(image, mask, objs, e["tag_class"]))
    return scenes
