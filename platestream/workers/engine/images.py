"""Decoding untrusted image bytes: size limits are checked from the header, before decoding."""

from __future__ import annotations

import io
import re
import struct
import warnings

import cv2
import numpy as np
from PIL import Image as PILImage

from platestream.errors import PlatestreamError
from platestream.workers.engine.base import Box, Image

DEFAULT_MAX_BYTES = 25 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000  # 8K video is 33 Mpx
EXIF_ORIENTATION = 0x0112


class ImageError(PlatestreamError):
    """The bytes are not an image the engine can analyse."""

    reason = "undecodable_image"


class ImageTooLargeError(ImageError):
    reason = "image_too_large"


def decode_image(
    data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, max_pixels: int = DEFAULT_MAX_PIXELS, name: str = "image"
) -> Image:
    """BGR pixels of an encoded image (JPEG, PNG, WebP, BMP, TIFF, ...)."""
    if not data:
        raise ImageError(f"{name} is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ImageTooLargeError(f"{name} is {len(data)} bytes, over the limit of {max_bytes}")
    width, height, orientation = _header(data, name, max_pixels)
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{name} is {width}x{height} = {width * height} pixels, over the limit of {max_pixels}"
        )
    pixels = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)  # turned upright by its EXIF
    if pixels is None or pixels.size == 0:
        raise ImageError(f"{name} ({len(data)} bytes, {width}x{height} by its header) cannot be decoded")
    # A quarter turn (EXIF orientations 5-8) swaps the sides; headers differ on whether they say so.
    sizes = {(height, width), (width, height)} if orientation in (5, 6, 7, 8) else {(height, width)}
    if pixels.shape[:2] not in sizes:
        raise ImageError(f"{name} decoded to {pixels.shape[1]}x{pixels.shape[0]}, its header says {width}x{height}")
    _check_complete(data, name)
    return pixels


def _header(data: bytes, name: str, max_pixels: int) -> tuple[int, int, int]:
    """Width, height and EXIF orientation (1: upright) as the header declares them."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # bombs and broken headers are reported as errors below
            with PILImage.open(io.BytesIO(data)) as probe:  # reads the header only
                width, height = probe.size
                return width, height, _orientation(probe)
    except PILImage.DecompressionBombError as error:
        declared = re.search(r"\((\d+) pixels\)", str(error))
        pixels = f"{int(declared.group(1)):,} pixels" if declared else "more pixels than Pillow allows"
        raise ImageTooLargeError(
            f"{name} declares {pixels}, over the limit of {max_pixels:,}: not decoded (a decompression bomb?)"
        ) from None
    except (OSError, ValueError, SyntaxError) as error:
        # PIL's message names its buffer object (<_io.BytesIO object at 0x...>), not the input.
        detail = "" if "BytesIO" in str(error) else f" ({error})"
        raise ImageError(
            f"{name} is not a recognised image ({len(data)} bytes, starts {data[:8]!r}){detail}:"
            " send JPEG, PNG, WebP, BMP or TIFF"
        ) from None


def _orientation(probe: PILImage.Image) -> int:
    try:
        value = probe.getexif().get(EXIF_ORIENTATION, 1)
    except (OSError, ValueError, SyntaxError, struct.error):
        return 1  # an EXIF block that cannot be read: the image is taken as it is stored
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _check_complete(data: bytes, name: str) -> None:
    """A JPEG cut short still decodes, grey below the cut; such a frame must not pass as good."""
    if data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-64:]:
        raise ImageError(f"{name} is a truncated JPEG ({len(data)} bytes, no end-of-image marker)")


def encode_jpeg(image: Image, quality: int = 90) -> bytes:
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ImageError(f"cannot encode a {image.shape} image as JPEG")
    return bytes(buffer)


VEHICLE_CROP_MAX_SIDE = 480  # a vehicle crop's longest side in pixels: a few tens of kB per plate


def vehicle_crop(image: Image, box: Box, max_side: int = VEHICLE_CROP_MAX_SIDE, quality: int = 80) -> bytes:
    """The JPEG of `box` cut from `image` (clipped to it), shrunk to `max_side` pixels at most."""
    height, width = image.shape[:2]
    left, top = max(0, box.x), max(0, box.y)
    right, bottom = min(width, box.x + box.width), min(height, box.y + box.height)
    if right <= left or bottom <= top:
        raise ImageError(f"vehicle region {box} lies outside the {width}x{height} image")
    crop = image[top:bottom, left:right]
    scale = max_side / max(crop.shape[:2])
    if scale < 1:
        size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    return encode_jpeg(crop, quality)
