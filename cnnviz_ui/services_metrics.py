"""Services of the evaluation views (sanity check, pointing game) on **any** model: ours, ImageNet or
the visitor's own, and the pointing game on the visitor's own image + mask pairs (uploaded, or a
folder under the data roots). Typed parameters, arrays and dataclasses only; no Streamlit calls.

Mask pairs: an image ``NAME.EXT`` and its mask ``NAME.mask.png`` (any non-zero pixel is the object),
beside each other or, for a folder, in its ``masks/`` subfolder (the audit's ``--masks`` rule). The
target of each pair is the model's top-1 class for that image (what the model says it sees); the
mask is cropped exactly like the image, so map and mask line up pixel for pixel.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PIL import Image

from cnnviz_core import CnnvizError, ModelHandle, image_digest, load_image

MASK_SUFFIX = ".mask.png"
MAX_PAIRS = 64


@dataclass(frozen=True)
class MaskedImage:
    """One image with its object mask (bool, the image's own size)."""

    name: str
    image: Image.Image
    mask: np.ndarray
    digest: str


@dataclass(frozen=True)
class SanityParams:
    model: str
    image: str
    methods: tuple[str, ...]


@dataclass(frozen=True)
class PointingParams:
    model: str
    methods: tuple[str, ...]
    source: str
    count: int = 0
    objects: int = 1
    pairs: tuple[str, ...] = ()  # digests of the image + mask pairs


def read_mask(data: bytes, name: str = "mask") -> np.ndarray:
    """A mask file's bytes -> bool ``(H, W)`` (non-zero = the object); one-line error if unreadable."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            values = np.asarray(im.convert("L"))
    except (OSError, ValueError) as exc:
        raise CnnvizError(f"{name}: not a readable mask image ({type(exc).__name__})") from None
    return values > 0


def _pair(name: str, image: Image.Image, mask: np.ndarray) -> MaskedImage:
    if mask.shape != (image.height, image.width):
        mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(image.size, Image.NEAREST)) > 0
    digest = image_digest(image) + ":" + image_digest(Image.fromarray(mask.astype(np.uint8) * 255))
    return MaskedImage(name, image, mask, digest)


def _stem(name: str) -> str:
    base = Path(name).name
    if base.lower().endswith(MASK_SUFFIX):
        return base[: -len(MASK_SUFFIX)]
    return base.rsplit(".", 1)[0] if "." in base else base


def pairs_from_files(files: Sequence[tuple[str, bytes]]) -> tuple[list[MaskedImage], list[str]]:
    """``(name, bytes)`` files -> pairs (``NAME.EXT`` + ``NAME.mask.png``) and one note per file left
    out (no mask, no image, unreadable)."""
    masks = {_stem(n): d for n, d in files if n.lower().endswith(MASK_SUFFIX)}
    images = [(n, d) for n, d in files if not n.lower().endswith(MASK_SUFFIX)]
    pairs, notes = [], []
    for name, data in images:
        stem = _stem(name)
        if stem not in masks:
            notes.append(f"{name}: no {stem}{MASK_SUFFIX}")
            continue
        try:
            pairs.append(_pair(name, load_image(data, max_side=1024), read_mask(masks[stem], f"{stem}{MASK_SUFFIX}")))
        except CnnvizError as exc:
            notes.append(" ".join(str(exc).split()))
    paired = {_stem(n) for n, _ in images}
    notes += [f"{stem}{MASK_SUFFIX}: no image" for stem in masks if stem not in paired]
    if len(pairs) > MAX_PAIRS:
        notes.append(f"only the first {MAX_PAIRS} of {len(pairs)} pairs are scored")
        pairs = pairs[:MAX_PAIRS]
    return pairs, notes


def pairs_from_folder(folder: Path) -> tuple[list[MaskedImage], list[str]]:
    """The pairs of a folder (already confined to the data roots): masks beside the images or in
    ``masks/``."""
    from cnnviz_core.audit.sources import list_images

    if not folder.is_dir():
        raise CnnvizError(f"not a folder: {folder.name}")
    masks = folder / "masks" if (folder / "masks").is_dir() else folder
    items = list_images(str(folder), masks=str(masks))
    pairs, notes = [], []
    for item in items:
        name = Path(item.path).name
        if not item.mask:
            notes.append(f"{name}: no mask")
            continue
        if len(pairs) >= MAX_PAIRS:
            notes.append(f"only the first {MAX_PAIRS} pairs are scored")
            break
        try:
            pairs.append(_pair(name, load_image(Path(item.path).read_bytes(), max_side=1024),
                               read_mask(Path(item.mask).read_bytes(), Path(item.mask).name)))
        except (CnnvizError, OSError) as exc:
            notes.append(f"{name}: {' '.join(str(exc).split())}")
    return pairs, notes


def mask_view(handle: ModelHandle, mask: np.ndarray) -> np.ndarray:
    """The mask cropped like the image (the model's view), bool ``(S, S)``."""
    view = np.asarray(handle.crop(Image.fromarray(mask.astype(np.uint8) * 255).convert("RGB")))[..., 0]
    return view >= 128


def pointing_on_pairs(handle: ModelHandle, methods: Sequence[str], pairs: Sequence[MaskedImage], *,
                      tolerance: float, layer: Optional[str] = None, progress=None, cancel=None):
    """The pointing-game rows (:class:`cnnviz_core.metrics.PointingRow`) of ``methods`` on ``pairs``,
    each explained for the model's top-1 class of the image."""
    from cnnviz_core.attribution import METHODS, explain
    from cnnviz_core.audit.faithfulness import resize_mask
    from cnnviz_core.metrics import PointingRow, energy_in_mask, pointing_game, saliency_2d
    from cnnviz_core.progress import check_cancel, report

    hits = {m: [] for m in methods}
    energy = {m: [] for m in methods}
    for i, pair in enumerate(pairs):
        check_cancel(cancel)
        target = handle.predict(pair.image, 1)[0][0]
        maps = explain(handle, handle.preprocess(pair.image), list(methods), target=target, layer=layer, cache=None)
        own = mask_view(handle, pair.mask)
        for m in methods:
            shape = tuple(saliency_2d(maps[m]).shape)
            mask = resize_mask(own, shape)
            hits[m].append(pointing_game(maps[m], mask, tolerance))
            energy[m].append(energy_in_mask(maps[m], mask))
        report(progress, i + 1, len(pairs), "pointing game on your masks")
    return [PointingRow(m, float(np.mean(hits[m])) if hits[m] else 0.0, float(np.mean(energy[m])) if energy[m] else 0.0,
                        float("nan"), len(hits[m]), METHODS[m].class_discriminative,
                        {float(tolerance): float(np.mean(hits[m])) if hits[m] else 0.0})
            for m in methods]


def applicable_methods(handle: ModelHandle, methods: Sequence[str]) -> list[str]:
    """``methods`` that apply to ``handle`` (CAM needs a GAP head, layer methods a hookable model ...),
    decided by the engine's own refusal on a grey image (a forward or two per refused method;
    the cost of the methods that apply is paid later anyway)."""
    from cnnviz_core.attribution import METHODS, explain_detailed
    from cnnviz_core.errors import MethodUnavailableError

    x = Image.new("RGB", (handle.input_size, handle.input_size), (128, 128, 128))
    usable = []
    for m in methods:
        if METHODS[m].long_running:  # a refusal comes before the costly part; try it on the cheap ones only
            usable.append(m)
            continue
        try:
            result = explain_detailed(handle, x, [m], target=0, cache=None, on_error="collect")[m]
        except MethodUnavailableError:
            continue
        if result.error is None:
            usable.append(m)
    return usable


def leaderboard_rows(rows) -> list[dict]:
    """Pointing rows sorted best first, as the table shown and exported."""
    from cnnviz_core.attribution import METHODS

    return [{"method": METHODS[r.method].display_name, "pointing": round(r.pointing, 4),
             "energy in object mask": round(r.energy, 4),
             "own object > other object": None if r.energy_wins != r.energy_wins else round(r.energy_wins, 4),
             "class-discriminative": "yes" if r.class_discriminative else "no", "n": r.n}
            for r in sorted(rows, key=lambda r: -r.pointing)]


def sanity_rows(result: dict) -> list[dict]:
    """``{method: [RandomizationStep]}`` -> one row per (method, step) for the CSV."""
    from cnnviz_core.attribution import METHODS

    return [{"method": METHODS[m].display_name, "step": i + 1, "randomized down to": s.layer,
             "spearman": round(s.spearman, 5), "ssim": round(s.ssim, 5)}
            for m, steps in result.items() for i, s in enumerate(steps)]


def sanity_cost(handle: ModelHandle, methods: Sequence[str]) -> str:
    """What the cascade costs on ``handle``: the copy of the model and the explanations."""
    from cnnviz_core.metrics import default_layers

    mb = sum(p.numel() * p.element_size() for p in handle.model.parameters()) / 2**20
    steps = len(default_layers(handle.model))
    return (f"copies the model once ({mb:.0f} MB) and explains the image {1 + steps} times per method "
            f"(the original and {steps} randomization steps): {len(methods) * (1 + steps)} explanations.")


def run_sanity(handle: ModelHandle, image: Image.Image, methods: Sequence[str], progress=None, cancel=None) -> dict:
    """``{method: [RandomizationStep]}`` of the cascade on ``image``."""
    from cnnviz_core.metrics import randomization_check
    from cnnviz_core.progress import Progress, report
    from cnnviz_core.attribution import METHODS

    x = handle.preprocess(image)
    out = {}
    for i, m in enumerate(methods):
        def step(p: Progress, i=i, m=m) -> None:
            report(progress, i * p.total + p.step, len(methods) * p.total, f"{METHODS[m].display_name}: {p.message}")
        out[m] = randomization_check(handle, x, m, progress=step, cancel=cancel)
    return out


def scene_classes_match(handle: ModelHandle) -> bool:
    """Whether ``handle``'s classes are the generated scenes' (so scenes can score it)."""
    from cnnviz_core.scenes import CLASSES

    return list(handle.class_names) == list(CLASSES)
