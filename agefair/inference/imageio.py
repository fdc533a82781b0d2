"""Robust loading of user photos into RGB ``uint8`` arrays.

Photos reach the library from files, uploads (bytes), file-like objects, PIL images and numpy
arrays. :func:`load_image` turns any of them into one predictable format, an ``H x W x 3`` RGB
``uint8`` array, and refuses bad input with :class:`ImageError` (a ``ValueError``) whose message
names the input and what was wrong with it:

* EXIF orientation is applied, so a phone photo taken in portrait comes out upright.
* Grayscale, palette, CMYK, 16-bit and transparent images are converted (transparency is
  composited onto white, see :func:`load_image`).
* Decompression bombs are refused from the header, before any pixel is decoded.
* Very large JPEGs can be decoded at a reduced scale (``max_side``) so memory stays bounded.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["DEFAULT_MAX_PIXELS", "ImageError", "ImageSource", "image_size", "load_image"]

#: Largest number of pixels decoded by default: about a 8660 x 5770 photo, which is beyond any
#: phone camera (~48 MP at most) but stops a few-kilobyte PNG that claims to be gigapixels.
DEFAULT_MAX_PIXELS = 50_000_000

# EXIF orientations 5-8 swap width and height (transposes and 90-degree rotations).
_EXIF_ORIENTATION_TAG = 0x0112
_SWAPPING_ORIENTATIONS = {5, 6, 7, 8}

#: Everything :func:`load_image` accepts.
ImageSource = (
    str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes] | Image.Image | np.ndarray
)


class ImageError(ValueError):
    """The input is not an image this library can use (unreadable, truncated, too large...)."""


def describe_source(source: Any) -> str:
    """A short human-readable name of an image source, for error messages.

    Args:
        source: Anything passed to :func:`load_image`.

    Returns:
        For example ``'photo.jpg'``, ``'<2,048 bytes>'`` or ``'<array (10, 10) float64>'``.
    """
    if isinstance(source, str | os.PathLike):
        return repr(os.fspath(source))
    if isinstance(source, bytes | bytearray | memoryview):
        return f"<{len(source):,} bytes>"
    if isinstance(source, Image.Image):
        return f"<PIL image {source.mode} {source.size[0]}x{source.size[1]}>"
    if isinstance(source, np.ndarray):
        return f"<array {source.shape} {source.dtype}>"
    name = getattr(source, "name", None)
    if isinstance(name, str):
        return repr(name)
    return f"<{type(source).__name__}>"


def _open(source: Any, what: str, formats: Sequence[str] | None = None) -> Image.Image:
    """Opens ``source`` lazily with PIL: only the header is read, no pixel is decoded.
    ``formats`` (PIL's names, e.g. ``("JPEG", "PNG")``) limits the decoders tried; None: all."""
    try:
        if isinstance(source, str | os.PathLike):
            path = Path(source)
            if not path.is_file():
                raise ImageError(f"cannot read image {what}: no such file")
            return Image.open(path, formats=formats)
        if isinstance(source, bytes | bytearray | memoryview):
            return Image.open(io.BytesIO(bytes(source)), formats=formats)
        if hasattr(source, "read"):
            return Image.open(source, formats=formats)
    except ImageError:
        raise
    except UnidentifiedImageError as exc:
        kinds = f"one of {', '.join(formats)}" if formats else "a recognised image format"
        raise ImageError(f"cannot read image {what}: not {kinds}") from exc
    except Image.DecompressionBombError as exc:
        # PIL's own guard fires at open time for enormous headers; report it like ours.
        raise ImageError(f"refusing image {what}: {exc}") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"cannot read image {what}: {exc}") from exc
    raise ImageError(
        f"cannot read image {what}: expected a path, bytes, a binary file object, a PIL image or "
        f"a numpy array, got {type(source).__name__}"
    )


def _displayed_size(img: Image.Image) -> tuple[int, int]:
    """(width, height) after the EXIF orientation is applied, read without decoding pixels."""
    width, height = img.size
    try:
        orientation = img.getexif().get(_EXIF_ORIENTATION_TAG, 1)
    except Exception:  # a broken EXIF block must not make a readable image unreadable
        orientation = 1
    if orientation in _SWAPPING_ORIENTATIONS:
        return height, width
    return width, height


def image_size(source: ImageSource, formats: Sequence[str] | None = None) -> tuple[int, int]:
    """Reads an image's size from its header without decoding the pixels.

    Args:
        source: A path, bytes, a binary file object, a PIL image or a numpy array.
        formats: The file formats accepted (PIL's names); None accepts any PIL reads.

    Returns:
        ``(width, height)`` as :func:`load_image` would return it, that is after the EXIF
        orientation is applied (a portrait phone photo stored sideways reports its upright size).

    Raises:
        ImageError: If the input is not a readable image.
    """
    what = describe_source(source)
    if isinstance(source, np.ndarray):
        if source.ndim not in (2, 3):
            raise ImageError(f"cannot use image {what}: expected a 2-D or 3-D array")
        return int(source.shape[1]), int(source.shape[0])
    if isinstance(source, Image.Image):
        return _displayed_size(source)
    with _open(source, what, formats) as img:
        return _displayed_size(img)


def _check_pixels(width: int, height: int, max_pixels: int | None, what: str) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise ImageError(
            f"refusing image {what}: {width}x{height} = {width * height:,} pixels is more than "
            f"max_pixels={max_pixels:,} (a decompression bomb or a needlessly large photo; "
            "pass max_side to decode a large JPEG at reduced scale, or raise max_pixels)"
        )


def _sixteen_bit_to_uint8(arr: np.ndarray) -> np.ndarray:
    """Maps 0..65535 onto 0..255 by rounding ``v / 257``, so 65535 -> 255 and 257 -> 1 exactly.

    Taking the low byte (what a plain ``astype(uint8)`` does) would wrap bright pixels around to
    dark ones, and clipping to 255 would make almost every pixel white.
    """
    arr = np.clip(arr.astype(np.float64), 0, 65535)
    return np.rint(arr / 257.0).astype(np.uint8)


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """Blends an RGBA ``uint8`` array onto a white background."""
    rgb = rgba[..., :3].astype(np.float32)
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    out = rgb * alpha + 255.0 * (1.0 - alpha)
    return np.rint(out).astype(np.uint8)


def _pil_to_rgb(img: Image.Image, what: str) -> np.ndarray:
    """Converts a decoded PIL image of any common mode to an RGB ``uint8`` array."""
    mode = img.mode
    if mode == "RGB":
        return np.asarray(img, dtype=np.uint8).copy()
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit grayscale PNG/TIFF: PIL keeps the full range, scale it down properly.
        gray = _sixteen_bit_to_uint8(np.asarray(img))
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "F":
        raise ImageError(
            f"cannot use image {what}: 32-bit float images have no defined brightness range"
        )
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        mode in ("P", "L", "RGB") and "transparency" in img.info
    )
    if has_alpha:
        return _composite_on_white(np.asarray(img.convert("RGBA"), dtype=np.uint8))
    try:
        # L, 1, P, CMYK, YCbCr and the rest: PIL knows the conversion (CMYK JPEGs from Adobe
        # software are stored inverted; PIL's JPEG decoder already undoes that).
        return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    except (ValueError, OSError) as exc:
        raise ImageError(f"cannot use image {what}: unsupported mode {mode!r}") from exc


def _array_to_rgb(arr: np.ndarray, what: str, max_pixels: int | None) -> np.ndarray:
    """Validates and converts a numpy array (assumed RGB/RGBA channel order) to RGB uint8."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ImageError(
            f"cannot use image {what}: expected H x W (gray), H x W x 3 (RGB) or H x W x 4 (RGBA)"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageError(f"cannot use image {what}: it has no pixels")
    _check_pixels(arr.shape[1], arr.shape[0], max_pixels, what)
    if arr.dtype == np.uint16:
        arr = _sixteen_bit_to_uint8(arr)
    elif arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype != np.uint8:
        # Floats could mean 0..1 or 0..255; guessing would silently darken or blow out photos.
        raise ImageError(
            f"cannot use image {what}: expected dtype uint8 or uint16; convert floats explicitly"
        )
    if arr.ndim == 2:
        return np.repeat(arr[..., None], 3, axis=2)
    if arr.shape[2] == 4:
        return _composite_on_white(arr)
    return np.ascontiguousarray(arr).copy()


def _shrink(rgb: np.ndarray, max_side: int | None) -> np.ndarray:
    """Downscales so the longer side is at most ``max_side`` (never upscales)."""
    height, width = rgb.shape[:2]
    if max_side is None or max(height, width) <= max_side:
        return rgb
    factor = max_side / max(height, width)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    # LANCZOS with reducing_gap: a fast integer pre-reduction then an antialiased resample.
    small = Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return np.asarray(small, dtype=np.uint8).copy()


def load_image(
    source: ImageSource,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_side: int | None = None,
) -> np.ndarray:
    """Loads a photo as an RGB ``uint8`` array of shape ``(height, width, 3)``.

    Conversions: EXIF orientation is applied; grayscale and palette images are expanded to RGB;
    CMYK is converted; 16-bit images are scaled to 8 bits (``round(v / 257)``), not truncated.
    Transparent images (RGBA, LA, palette with transparency) are composited onto WHITE rather than
    having the alpha dropped: pixels under full transparency often store black or leftover colours
    that were never meant to be seen, so dropping alpha can put a face on an arbitrary background,
    while white is what viewers show and is a neutral, deterministic backdrop. Numpy arrays are
    taken as RGB (or RGBA) in that channel order.

    Memory: the pixel count is checked from the header BEFORE decoding, so a small file claiming
    to be huge (a decompression bomb) is refused cheaply. With ``max_side``, JPEGs are decoded at
    a reduced scale (1/2, 1/4 or 1/8, PIL's ``draft``) when that still gives at least ``max_side``
    pixels on the longer side, and ``max_pixels`` applies to the reduced decode: a 40-megapixel
    JPEG needed at 1024 px costs about 1/16 of the memory. The result is then resized so its longer
    side is at most ``max_side``. Other formats are decoded in full before resizing.

    Args:
        source: A path, bytes (e.g. an upload), a binary file object, a PIL image or an array.
        max_pixels: Refuse images that would decode to more pixels than this; None disables it.
        max_side: If set, the longer side of the returned image is at most this (never upscaled).

    Returns:
        A new, C-contiguous ``uint8`` array of shape ``(height, width, 3)`` in RGB order.

    Raises:
        ImageError: If the input is not an image, is truncated or corrupt, has an unsupported
            mode or dtype, or has more pixels than ``max_pixels``.
    """
    what = describe_source(source)
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side must be a positive integer or None, got {max_side}")
    if isinstance(source, np.ndarray):
        return _shrink(_array_to_rgb(source, what, max_pixels), max_side)

    if isinstance(source, Image.Image):
        img = source
        close = False
    else:
        img = _open(source, what)
        close = True
    try:
        # draft() reconfigures the decoder, so only on an image opened here (never the caller's).
        if close and max_side is not None and img.format == "JPEG":
            width, height = img.size
            factor = max_side / max(width, height)
            if factor < 1:
                # draft() keeps the decode at least this large, so quality is not lost. Rounded
                # down: PIL picks the scale by integer division, so rounding up would miss it.
                requested = (max(1, int(width * factor)), max(1, int(height * factor)))
                img.draft(None, requested)
        _check_pixels(img.size[0], img.size[1], max_pixels, what)
        try:
            img.load()
            if close:
                # Our own image object: transpose in place rather than holding two copies.
                ImageOps.exif_transpose(img, in_place=True)
                upright = img
            else:
                upright = ImageOps.exif_transpose(img)
        except Image.DecompressionBombError as exc:
            raise ImageError(f"refusing image {what}: {exc}") from exc
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            # PIL raises OSError("image file is truncated ...") for cut-off files.
            raise ImageError(f"cannot decode image {what}: {exc}") from exc
        rgb = _pil_to_rgb(upright, what)
    finally:
        if close:
            img.close()
    return _shrink(rgb, max_side)
