"""Decoding untrusted image bytes: size limits are checked from the header, before decoding."""

from __future__ import annotations

import io
import warnings

import cv2
import numpy as np
from PIL import Image as PILImage

from platestream.errors import PlatestreamError
from platestream.workers.engine.base import Image

DEFAULT_MAX_BYTES = 25 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000  # 8K video is 33 Mpx


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
    width, height = _header_size(data, name)
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{name} is {width}x{height} = {width * height} pixels, over the limit of {max_pixels}"
        )
    pixels = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if pixels is None or pixels.size == 0:
        raise ImageError(f"{name} ({len(data)} bytes, {width}x{height} by its header) cannot be decoded")
    if pixels.shape[:2] != (height, width):
        raise ImageError(f"{name} decoded to {pixels.shape[1]}x{pixels.shape[0]}, its header says {width}x{height}")
    _check_complete(data, name)
    return pixels


def _header_size(data: bytes, name: str) -> tuple[int, int]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            with PILImage.open(io.BytesIO(data)) as probe:  # reads the header only
                return probe.size
    except PILImage.DecompressionBombError as error:
        raise ImageTooLargeError(f"{name}: {error}") from None
    except (OSError, ValueError, SyntaxError):
        # PIL's own message names its buffer object (<_io.BytesIO object at 0x...>), not the input.
        raise ImageError(
            f"{name} is not a recognised image ({len(data)} bytes, starts {data[:8]!r}):"
            " send JPEG, PNG, WebP, BMP or TIFF"
        ) from None


def _check_complete(data: bytes, name: str) -> None:
    """A JPEG cut short still decodes, grey below the cut; such a frame must not pass as good."""
    if data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-64:]:
        raise ImageError(f"{name} is a truncated JPEG ({len(data)} bytes, no end-of-image marker)")


def encode_jpeg(image: Image, quality: int = 90) -> bytes:
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ImageError(f"cannot encode a {image.shape} image as JPEG")
    return bytes(buffer)
