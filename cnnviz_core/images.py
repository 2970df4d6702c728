"""Image input: decode uploads safely into RGB PIL images, and the sample gallery.

Every decoding problem becomes an :class:`~cnnviz_core.errors.ImageError` with a one-line message:
empty, corrupt, truncated, unsupported format, over-size file, too many pixels (decompression bombs),
too small. EXIF orientation is applied; grayscale, alpha, palette, CMYK, 1-bit and 16-bit images are
converted to 8-bit RGB (16-bit values scaled by 1/257, not clipped; transparency composited on white).
"""
from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path
from typing import Callable, Union

import numpy as np
from PIL import Image, ImageOps

from .errors import ImageError

ImageSource = Union[bytes, bytearray, str, Path, Image.Image, np.ndarray]

ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "MPO")  # MPO: JPEG variant from cameras
MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_PIXELS = 40_000_000
MIN_SIDE = 8
DEFAULT_MAX_SIDE = 2048


def _read_bytes(source: Union[bytes, bytearray, str, Path]) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray)):
        return bytes(source), "upload"
    path = Path(source)
    if not path.is_file():
        raise ImageError(f"no such image file: {path}")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ImageError(f"{path.name}: file is {size / 2**20:.0f} MB, the limit is {MAX_FILE_BYTES // 2**20} MB")
    return path.read_bytes(), path.name


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB with correct value scaling."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if mode == "F":
            arr = arr * 255.0 if np.nanmax(arr) <= 1.0 else arr
        elif mode.startswith("I;16") or np.nanmax(arr) > 255:
            arr = arr / 257.0  # 0..65535 -> 0..255
        gray = np.clip(np.nan_to_num(arr), 0, 255).round().astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV


def load_image(source: ImageSource, *, max_side: int | None = DEFAULT_MAX_SIDE) -> Image.Image:
    """Decode ``source`` (bytes, path, PIL image or ``(H, W[, C])`` uint8 array) into an RGB image.

    Images whose longer side exceeds ``max_side`` are downscaled (Lanczos), keeping the aspect ratio.
    Raises :class:`ImageError` for anything that is not a usable image.
    """
    if isinstance(source, np.ndarray):
        if source.ndim not in (2, 3) or source.size == 0:
            raise ImageError(f"array image must be (H, W) or (H, W, C), got shape {source.shape}")
        arr = source if source.dtype == np.uint8 else np.clip(source, 0, 255).astype(np.uint8)
        img = Image.fromarray(arr[..., :3] if arr.ndim == 3 else arr)
        name = "array"
    elif isinstance(source, Image.Image):
        img, name = source, "image"
    else:
        data, name = _read_bytes(source)
        if not data:
            raise ImageError(f"{name}: the file is empty")
        if len(data) > MAX_FILE_BYTES:
            raise ImageError(f"{name}: file is {len(data) / 2**20:.0f} MB, the limit is {MAX_FILE_BYTES // 2**20} MB")
        img = _decode(data, name)
    w, h = img.size
    if w * h > MAX_PIXELS:
        raise ImageError(f"{name}: {w}x{h} pixels is too large (limit {MAX_PIXELS / 1e6:.0f} megapixels)")
    if min(w, h) < MIN_SIDE:
        raise ImageError(f"{name}: {w}x{h} pixels is too small (each side must be at least {MIN_SIDE} px)")
    rgb = _to_rgb(img)
    if max_side is not None and max(rgb.size) > max_side:
        scale = max_side / max(rgb.size)
        rgb = rgb.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)
    return rgb


def _decode(data: bytes, name: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = img.format or "unknown"
            if fmt not in ALLOWED_FORMATS:
                raise ImageError(f"{name}: format {fmt} is not supported (use PNG, JPEG, WebP, BMP or TIFF)")
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise ImageError(f"{name}: {w}x{h} pixels is too large (limit {MAX_PIXELS / 1e6:.0f} megapixels)")
            img.load()
            img = ImageOps.exif_transpose(img)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{name}: refused as a decompression bomb (too many pixels)") from None
    except Image.UnidentifiedImageError:
        raise ImageError(f"{name}: not a readable image (corrupt or unknown format)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageError(f"{name}: the image data is corrupt or truncated ({reason})") from None
    return img


def image_digest(image: Image.Image) -> str:
    """A short content hash of an RGB image (size + pixels), used as a cache key."""
    h = hashlib.blake2b(digest_size=12)
    h.update(f"{image.size}{image.mode}".encode())
    h.update(image.tobytes())
    return h.hexdigest()


def to_png_bytes(image: Union[Image.Image, np.ndarray]) -> bytes:
    """Encode an RGB image or ``(H, W, 3)`` uint8 array as PNG bytes (for downloads)."""
    img = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _skimage_sample(name: str) -> Callable[[], Image.Image]:
    def load() -> Image.Image:
        from skimage import data

        return load_image(getattr(data, name)())

    return load


def _scene_sample(seed: int, objects: int, tag: str = "none") -> Callable[[], Image.Image]:
    def load() -> Image.Image:
        from .scenes import generate_scene

        return Image.fromarray(generate_scene(seed, objects=objects, tag=tag).image)

    return load


#: The sample gallery: display name -> loader. Photos ship inside scikit-image's wheel; scenes are
#: generated by :mod:`cnnviz_core.scenes` (the first entry is the app's default image).
SAMPLES: dict[str, Callable[[], Image.Image]] = {
    "Scene: one shape (seed 3)": _scene_sample(3, 1),
    "Scene: two shapes (seed 11)": _scene_sample(11, 2),
    "Scene: tagged corner (seed 5)": _scene_sample(5, 1, "match"),
    "Photo: cat (chelsea)": _skimage_sample("chelsea"),
    "Photo: coffee": _skimage_sample("coffee"),
    "Photo: astronaut": _skimage_sample("astronaut"),
    "Photo: rocket": _skimage_sample("rocket"),
}


def sample_image(name: str) -> Image.Image:
    """Load a gallery image by its display name (see :data:`SAMPLES`)."""
    try:
        loader = SAMPLES[name]
    except KeyError:
        raise ImageError(f"unknown sample image {name!r}; choose one of {list(SAMPLES)}") from None
    return loader()
