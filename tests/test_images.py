"""Image decoding: every bad kind refused with one line; odd colour modes converted correctly."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from cnnviz_core.errors import ImageError
from cnnviz_core.images import MAX_FILE_BYTES, SAMPLES, image_digest, load_image, sample_image


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def rgb(w: int = 40, h: int = 30) -> Image.Image:
    arr = np.zeros((h, w, 3), np.uint8)
    arr[..., 0] = np.arange(w, dtype=np.uint8)[None, :] * 5
    arr[..., 1] = 100
    return Image.fromarray(arr)


def assert_one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert msg and "\n" not in msg
    return msg


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "TIFF"])
def test_supported_formats_decode_to_rgb(fmt):
    img = load_image(encode(rgb(), fmt))
    assert img.mode == "RGB" and img.size == (40, 30)


def test_empty_file_refused():
    with pytest.raises(ImageError) as exc:
        load_image(b"")
    assert "empty" in assert_one_line(exc)


def test_corrupt_bytes_refused():
    with pytest.raises(ImageError) as exc:
        load_image(b"this is not an image at all" * 10)
    assert "not a readable image" in assert_one_line(exc)


def test_truncated_png_refused():
    data = encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)), "PNG")
    with pytest.raises(ImageError) as exc:
        load_image(data[: len(data) // 2])
    assert "corrupt or truncated" in assert_one_line(exc)


def test_truncated_jpeg_refused():
    data = encode(Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)), "JPEG")
    with pytest.raises(ImageError):
        load_image(data[: len(data) // 3])


def test_decompression_bomb_refused():
    # 12000 x 12000 one-bit image: ~18 KB on disk, 144 megapixels when decoded.
    data = encode(Image.new("1", (12000, 12000)), "PNG")
    assert len(data) < 100_000
    with pytest.raises(ImageError) as exc:
        load_image(data)
    assert "too large" in assert_one_line(exc) or "bomb" in str(exc.value)


def test_oversize_file_refused():
    with pytest.raises(ImageError) as exc:
        load_image(b"\x89PNG" + b"\0" * MAX_FILE_BYTES)
    assert "limit" in assert_one_line(exc)


def test_oversize_path_refused_without_reading(tmp_path):
    path = tmp_path / "huge.png"
    with open(path, "wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)
    with pytest.raises(ImageError, match="limit"):
        load_image(path)


def test_unsupported_format_refused():
    with pytest.raises(ImageError) as exc:
        load_image(encode(rgb(), "GIF"))
    assert "GIF" in assert_one_line(exc)


def test_too_small_refused():
    with pytest.raises(ImageError, match="too small"):
        load_image(encode(rgb(4, 4), "PNG"))


def test_missing_path_refused(tmp_path):
    with pytest.raises(ImageError, match="no such image"):
        load_image(tmp_path / "nope.png")


def test_grayscale_becomes_equal_rgb_channels():
    gray = Image.fromarray(np.tile(np.arange(0, 250, 5, dtype=np.uint8), (20, 1)), mode="L")
    out = np.asarray(load_image(encode(gray, "PNG")))
    assert out.shape == (20, 50, 3)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    assert out[0, 10, 0] == 50


def test_rgba_transparent_composited_on_white():
    arr = np.zeros((20, 20, 4), np.uint8)
    arr[..., 0] = 255
    arr[:, :10, 3] = 255  # left half opaque red, right half fully transparent
    out = np.asarray(load_image(encode(Image.fromarray(arr, "RGBA"), "PNG")))
    assert tuple(out[5, 2]) == (255, 0, 0)
    assert tuple(out[5, 15]) == (255, 255, 255)


def test_palette_image_keeps_colours():
    img = rgb().convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    out = np.asarray(load_image(encode(img, "PNG")))
    expected = np.asarray(img.convert("RGB"))
    assert np.array_equal(out, expected)


def test_cmyk_jpeg_converted():
    cmyk = Image.new("CMYK", (32, 32), (0, 255, 255, 0))  # pure red in CMYK
    out = np.asarray(load_image(encode(cmyk, "JPEG", quality=95)))
    r, g, b = out[16, 16].astype(int)
    assert r > 200 and g < 60 and b < 60


def test_16bit_grayscale_scaled_not_clipped():
    arr = np.full((16, 16), 65535, np.uint16)
    arr[:, :8] = 32896  # 128 * 257
    img = Image.fromarray(arr)
    assert img.mode.startswith("I;16")
    out = np.asarray(load_image(encode(img, "PNG")))
    assert out[0, 0, 0] == 128 and out[0, 12, 0] == 255


def test_exif_orientation_applied():
    img = rgb(40, 20)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    out = load_image(encode(img, "JPEG", exif=exif.tobytes()))
    assert out.size == (20, 40)


def test_large_image_downscaled_keeping_aspect():
    out = load_image(encode(Image.new("RGB", (3000, 1500), (10, 20, 30)), "PNG"), max_side=1000)
    assert out.size == (1000, 500)


def test_digest_depends_on_pixels():
    a, b = rgb(), rgb()
    assert image_digest(a) == image_digest(b)
    b.putpixel((0, 0), (1, 2, 3))
    assert image_digest(a) != image_digest(b)


@pytest.mark.parametrize("name", [n for n in SAMPLES if n.startswith("Photo")])
def test_photo_samples_load(name):
    img = sample_image(name)
    assert img.mode == "RGB" and min(img.size) >= 64


def test_unknown_sample_refused():
    with pytest.raises(ImageError, match="unknown sample"):
        sample_image("nope")
