"""Tests of agefair.inference.imageio on images generated in a temporary folder."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageFile

from agefair.inference.imageio import ImageError, image_size, load_image


def _halves(width: int = 40, height: int = 20) -> Image.Image:
    """Left half red, right half blue: shows which way an image was rotated."""
    arr = np.zeros((height, width, 3), np.uint8)
    arr[:, : width // 2] = (255, 0, 0)
    arr[:, width // 2 :] = (0, 0, 255)
    return Image.fromarray(arr)


def test_exif_orientation_is_applied(tmp_path):
    path = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display after rotating 90 degrees clockwise
    _halves().save(path, exif=exif, quality=95)

    img = load_image(path)
    assert img.shape == (40, 20, 3)  # upright portrait
    assert image_size(path) == (20, 40)
    top, bottom = img[:15].reshape(-1, 3).mean(0), img[-15:].reshape(-1, 3).mean(0)
    assert top[0] > 200 and top[2] < 60  # the stored left (red) is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_cmyk_jpeg(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path, quality=95)  # pure red in CMYK
    img = load_image(path)
    assert img.shape == (16, 16, 3) and img.dtype == np.uint8
    r, g, b = img.reshape(-1, 3).mean(0)
    assert r > 220 and g < 40 and b < 40


def test_rgba_png_is_composited_on_white(tmp_path):
    arr = np.zeros((2, 2, 4), np.uint8)
    arr[0, 0] = (255, 0, 0, 0)  # fully transparent red -> white
    arr[0, 1] = (0, 0, 255, 255)  # opaque blue stays blue
    arr[1, 0] = (0, 0, 0, 128)  # half-transparent black -> mid grey
    arr[1, 1] = (0, 255, 0, 255)
    path = tmp_path / "alpha.png"
    Image.fromarray(arr, "RGBA").save(path)

    img = load_image(path)
    assert img.shape == (2, 2, 3)
    assert tuple(img[0, 0]) == (255, 255, 255)
    assert tuple(img[0, 1]) == (0, 0, 255)
    assert all(abs(int(v) - 127) <= 1 for v in img[1, 0])
    assert tuple(img[1, 1]) == (0, 255, 0)


def test_palette_with_transparency(tmp_path):
    img = Image.new("P", (4, 4), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.putpixel((1, 1), 1)
    img.info["transparency"] = 0  # palette entry 0 (black) is transparent
    path = tmp_path / "palette.png"
    img.save(path, transparency=0)
    out = load_image(path)
    assert tuple(out[0, 0]) == (255, 255, 255)
    assert tuple(out[1, 1]) == (255, 0, 0)


def test_sixteen_bit_png_is_scaled_not_truncated(tmp_path):
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")  # really stored as 16-bit

    img = load_image(path)
    assert img.shape == (1, 4, 3)
    assert img[0, :, 0].tolist() == [0, 1, 128, 255]
    assert (img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all()


def test_grayscale_becomes_three_equal_channels(tmp_path):
    path = tmp_path / "gray.png"
    Image.fromarray(np.arange(0, 250, 10, dtype=np.uint8).reshape(5, 5), "L").save(path)
    img = load_image(path)
    assert img.shape == (5, 5, 3)
    assert (img[..., 0] == img[..., 2]).all()
    assert img[0, 1, 0] == 10


def test_truncated_jpeg_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    full = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(full, "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(full.getvalue()[: len(full.getvalue()) // 2])
    with pytest.raises(ImageError, match=r"cut\.jpg.*truncated"):
        load_image(path)


def test_text_file_named_jpg_is_refused(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("not an image at all\n")
    with pytest.raises(ImageError, match=r"notes\.jpg.*not a recognised image"):
        load_image(path)
    with pytest.raises(ValueError):  # ImageError is a ValueError for callers that expect one
        load_image(path.read_bytes())


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "absent.png")


def test_decompression_bomb_refused_from_header(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.new("1", (9000, 9000), 1).save(path)  # 81 megapixels, a few kB on disk
    assert path.stat().st_size < 100_000

    def no_decoding(self, *args, **kwargs):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    assert image_size(path) == (9000, 9000)  # the header alone
    with pytest.raises(ImageError, match=r"bomb\.png.*81,000,000 pixels.*max_pixels"):
        load_image(path)
    with pytest.raises(ImageError, match="max_pixels"):
        load_image(path.read_bytes(), max_pixels=1_000_000)


def test_bytes_file_object_pil_and_array_inputs(tmp_path):
    buf = io.BytesIO()
    _halves().save(buf, "PNG")
    data = buf.getvalue()
    expected = np.asarray(_halves())

    for source in (data, bytearray(data), io.BytesIO(data), _halves(), expected):
        img = load_image(source)
        assert img.dtype == np.uint8 and img.flags["C_CONTIGUOUS"]
        np.testing.assert_array_equal(img, expected)


def test_array_inputs_are_converted_or_refused():
    gray = np.full((3, 4), 7, np.uint8)
    assert load_image(gray).shape == (3, 4, 3)
    deep = np.full((2, 2, 3), 65535, np.uint16)
    assert (load_image(deep) == 255).all()
    rgba = np.zeros((2, 2, 4), np.uint8)  # fully transparent -> white
    assert (load_image(rgba) == 255).all()
    with pytest.raises(ImageError, match="float"):
        load_image(np.zeros((2, 2, 3), np.float32))
    with pytest.raises(ImageError, match="H x W"):
        load_image(np.zeros((2, 2, 5), np.uint8))
    with pytest.raises(ImageError, match="path, bytes"):
        load_image(12345)  # type: ignore[arg-type]


def test_max_side_decodes_large_jpeg_at_reduced_scale(tmp_path):
    arr = np.empty((3000, 4000, 3), np.uint8)
    arr[..., 0] = np.linspace(0, 255, 4000).astype(np.uint8)[None, :]
    arr[..., 1] = np.linspace(0, 255, 3000).astype(np.uint8)[:, None]
    arr[..., 2] = 90
    path = tmp_path / "large.jpg"
    Image.fromarray(arr).save(path, quality=85)

    # 12 megapixels: too many for this budget when decoded in full...
    with pytest.raises(ImageError, match="max_pixels"):
        load_image(path, max_pixels=1_000_000)
    # ...but draft() decodes at 1/4 scale (1000 x 750) when only 800 px are needed.
    img = load_image(path, max_pixels=1_000_000, max_side=800)
    assert img.shape == (600, 800, 3)
    assert abs(int(img[300, 400, 0]) - 127) <= 4  # the gradient survives: same picture
    # Non-JPEG and small images: max_side only shrinks, never enlarges.
    assert load_image(np.zeros((50, 100, 3), np.uint8), max_side=40).shape == (20, 40, 3)
    assert load_image(np.zeros((50, 100, 3), np.uint8), max_side=400).shape == (50, 100, 3)
