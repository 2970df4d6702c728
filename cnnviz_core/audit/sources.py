"""What an audit runs on: the list of images (a folder, a glob, one file, or a scenes folder).

Every image becomes one :class:`AuditItem` - a small, picklable record (paths and ints only; the
pixels are decoded later, inside the workers, so a corrupt file fails its own row and nothing else).

* a **scenes folder** (has ``scenes.json``, written by :func:`cnnviz_core.scenes.write_scenes`):
  each entry brings its ground-truth classes and its mask (value ``k`` = object ``k``), which
  give the pointing-game columns;
* a **folder**: the image files in it (sorted; not recursive; ``*.mask.png`` excluded);
* a **glob** (``data/**/*.jpg``, recursive ``**`` allowed) or a single file.

``masks=DIR`` pairs each image ``NAME.EXT`` with ``DIR/NAME.mask.png`` or ``DIR/NAME.png``
(any non-zero pixel = the object), so any folder can get pointing-game scores.
"""
from __future__ import annotations

import glob
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

from ..errors import ParameterError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
MASK_SUFFIX = ".mask.png"


@dataclass(frozen=True)
class AuditItem:
    """One image to audit. ``path``: the file (its string is the row key for resuming).
    ``label``: ground-truth class index or -1. ``mask``: mask file or "". ``object_classes`` /
    ``object_values``: for scene masks, the class index and mask value of each object (empty for
    binary masks, where every non-zero pixel is the object)."""

    path: str
    label: int = -1
    mask: str = ""
    object_classes: tuple[int, ...] = ()
    object_values: tuple[int, ...] = ()

    def to_row(self) -> dict[str, Any]:
        row = asdict(self)
        row["object_classes"], row["object_values"] = list(self.object_classes), list(self.object_values)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "AuditItem":
        return cls(str(row["path"]), int(row["label"]), str(row["mask"] or ""),
                   tuple(int(v) for v in row["object_classes"]), tuple(int(v) for v in row["object_values"]))


def _is_glob(spec: str) -> bool:
    return any(ch in spec for ch in "*?[")


def _is_image_file(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.lower().endswith(MASK_SUFFIX)


def scene_items(directory: Path) -> list[AuditItem]:
    """Items of a scenes folder; ``label`` = the first object's class (the scene's training label)."""
    try:
        doc = json.loads((directory / "scenes.json").read_text())
        entries = doc["images"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ParameterError(f"{directory / 'scenes.json'} is not a scenes file: {exc}") from None
    items = []
    for e in entries:
        objects = e.get("objects") or []
        items.append(AuditItem(
            path=str(directory / e["image"]),
            label=int(objects[0]["class_index"]) if objects else -1,
            mask=str(directory / e["mask"]) if e.get("mask") else "",
            object_classes=tuple(int(o["class_index"]) for o in objects),
            object_values=tuple(int(o["mask_value"]) for o in objects),
        ))
    return items


def _mask_for(image: Path, masks: Path) -> str:
    stem = image.name[: -len(image.suffix)] if image.suffix else image.name
    for candidate in (masks / f"{stem}{MASK_SUFFIX}", masks / f"{stem}.png"):
        if candidate.is_file() and candidate.resolve() != image.resolve():
            return str(candidate)
    return ""


def list_images(spec: str, *, masks: Optional[str] = None, limit: Optional[int] = None) -> list[AuditItem]:
    """The images named by ``spec`` (see module docstring), in a stable order, at most ``limit``.

    Raises :class:`ParameterError` when nothing matches or ``masks`` is not a folder.
    """
    if limit is not None and limit < 1:
        raise ParameterError(f"limit must be >= 1, got {limit}")
    root = Path(spec)
    if root.is_dir() and (root / "scenes.json").is_file():
        items = scene_items(root)
    else:
        if root.is_dir():
            files = sorted(p for p in root.iterdir() if _is_image_file(p))
        elif _is_glob(spec):
            files = sorted(p for p in map(Path, glob.glob(spec, recursive=True)) if _is_image_file(p))
        elif root.is_file():
            files = [root]
        else:
            raise ParameterError(f"no such folder, file or glob: {spec}")
        items = [AuditItem(str(p)) for p in files]
    if masks is not None:
        mask_dir = Path(masks)
        if not mask_dir.is_dir():
            raise ParameterError(f"--masks must be a folder, got {masks}")
        items = [AuditItem(i.path, i.label, _mask_for(Path(i.path), mask_dir)) if not i.mask else i
                 for i in items]
    if not items:
        raise ParameterError(f"no images found in {spec} (looked for {', '.join(IMAGE_SUFFIXES)})")
    return items[:limit] if limit else items
