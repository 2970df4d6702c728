"""Several images at once: many uploaded files and/or zip archives, read with bounds.

Bounds (stated in the sidebar): at most :data:`MAX_IMAGES` images, :data:`MAX_TOTAL_MB` of image bytes
in all (zip members counted uncompressed), each image at most 50 MB (``cnnviz_core.images``) and
``MAX_PIXELS``; a zip member whose compression ratio exceeds :data:`MAX_RATIO` is refused as a likely
zip bomb, and members are read with a hard byte cap whatever their headers claim. Directories,
hidden files (``.name``, ``__MACOSX/``) and non-image members are skipped silently or with one line
each; the good images are kept.
"""
from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Iterable, Optional

from PIL import Image

from cnnviz_core import CnnvizError, image_digest, load_image
from cnnviz_core.images import MAX_FILE_BYTES

IMAGE_TYPES = ["png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff"]
MAX_IMAGES = 32
MAX_TOTAL_MB = 200
MAX_RATIO = 100
MAX_PROBLEM_LINES = 8
MAX_SIDE = 1024  # decoded images are downscaled to this longer side (memory per session)


@dataclass(frozen=True)
class SetImage:
    """One image of the set: its label (file name, or ``archive.zip/member``), pixels and digest."""

    label: str
    image: Image.Image
    digest: str


@dataclass(frozen=True)
class ImageSet:
    images: tuple[SetImage, ...]
    problems: tuple[str, ...]  # one line per refused file or member


def _is_hidden(name: str) -> bool:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def _is_image_name(name: str) -> bool:
    return PurePosixPath(name).suffix.lower().lstrip(".") in IMAGE_TYPES


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    """At most ``limit`` bytes of a member (never trusting the header's size); ValueError past it."""
    with zf.open(info) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise ValueError("too large")
    return data


def _zip_members(label: str, data: bytes, budget: int, problems: list[str]) -> Iterable[tuple[str, bytes]]:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError):
        problems.append(f"{label}: not a readable zip archive")
        return
    with zf:
        for info in zf.infolist():
            name = info.filename
            if info.is_dir() or _is_hidden(name):
                continue
            shown = f"{label}/{name}"[:160]
            if not _is_image_name(name):
                problems.append(f"{shown}: skipped, not an image ({', '.join(IMAGE_TYPES)})")
                continue
            if info.flag_bits & 0x1:
                problems.append(f"{shown}: skipped, encrypted")
                continue
            if info.file_size > MAX_FILE_BYTES:
                problems.append(f"{shown}: skipped, {info.file_size / 2**20:.0f} MB (the limit is "
                                f"{MAX_FILE_BYTES // 2**20} MB per image)")
                continue
            if info.compress_size and info.file_size / info.compress_size > MAX_RATIO:
                problems.append(f"{shown}: skipped, compression ratio over {MAX_RATIO}:1 (a zip bomb?)")
                continue
            if budget <= 0:
                problems.append(f"{label}: the set reached {MAX_TOTAL_MB} MB; the remaining members are skipped")
                return
            limit = min(MAX_FILE_BYTES, budget)
            try:
                member = _read_member(zf, info, limit)
            except ValueError:
                problems.append(f"{shown}: skipped, more than {limit / 2**20:.0f} MB once unpacked")
                continue
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError):
                problems.append(f"{shown}: skipped, the archive member is damaged or uses an unknown compression")
                continue
            budget -= len(member)
            yield shown, member


def read_image_set(files: Iterable[tuple[str, bytes]], memo: Optional[dict] = None) -> ImageSet:
    """Decode uploaded ``(name, bytes)`` files (images or zips) into an :class:`ImageSet`.

    ``memo`` (per session) maps a file's sha256 to its decoded image (or error), so reruns do not decode
    again; it is pruned to this set's files."""
    memo = {} if memo is None else memo
    images: list[SetImage] = []
    problems: list[str] = []
    budget = MAX_TOTAL_MB * 2**20  # image bytes (zip members uncompressed)
    seen: set[str] = set()
    full = f"more than {MAX_IMAGES} images: the rest are skipped"

    used: set[str] = set()

    def add(label: str, data: bytes) -> None:
        key = hashlib.sha256(data).hexdigest()
        used.add(key)
        if key not in memo:
            try:
                memo[key] = load_image(data, max_side=MAX_SIDE)
            except CnnvizError as exc:
                memo[key] = exc
        value = memo[key]
        if isinstance(value, Exception):
            problems.append(" ".join(str(value).replace("upload:", f"{label}:", 1).split())[:300])
        elif key not in seen:  # the same picture twice is shown once
            seen.add(key)
            images.append(SetImage(label, value, image_digest(value)))

    for name, data in files:
        name = " ".join(str(name).split())[:160] or "upload"
        if len(images) >= MAX_IMAGES:
            problems.append(full)
            break
        if name.lower().endswith(".zip"):
            for label, member in _zip_members(name, data, budget, problems):
                if len(images) >= MAX_IMAGES:
                    problems.append(full)
                    break
                budget -= len(member)
                add(label, member)
        elif len(data) > budget:
            problems.append(f"{name}: skipped, the set would exceed {MAX_TOTAL_MB} MB")
        else:
            budget -= len(data)
            add(name, data)
    for stale in [k for k in memo if k not in used]:  # the memo holds this set only
        del memo[stale]
    problems = list(dict.fromkeys(problems))
    if len(problems) > MAX_PROBLEM_LINES:
        problems = problems[:MAX_PROBLEM_LINES] + [f"… and {len(problems) - MAX_PROBLEM_LINES} more files skipped"]
    return ImageSet(tuple(images), tuple(problems))


def limits_text() -> str:
    return (f"Up to {MAX_IMAGES} images (PNG, JPEG, WebP, BMP, TIFF) or zip archives of them; "
            f"≤ 50 MB per image, ≤ {MAX_TOTAL_MB} MB in all.")
