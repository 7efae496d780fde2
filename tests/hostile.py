"""A corpus of hostile and unusual images, made here: what cameras, phones and attackers send.

Each case is (name, bytes, outcome): "ok" for an image the engine must analyse, otherwise the
dead-letter reason it must end in.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from platestream.workers.engine.base import Image as Pixels


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    outcome: str  # "ok", or the dead letter's reason


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height, with a few bytes of pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + _chunk(b"IEND", b""))  # fmt: skip


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header is changed to declare width x height."""
    ok, buffer = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))
    assert ok
    data = bytearray(buffer.tobytes())
    start = data.find(b"\xff\xc0")
    data[start + 5 : start + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def webp_declaring(width: int, height: int) -> bytes:
    """An extended-format WebP (VP8X) whose canvas is width x height (at most 16384 a side)."""
    canvas = struct.pack("<I", width - 1)[:3] + struct.pack("<I", height - 1)[:3]
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00" + canvas
    return b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x


def saved(image: Image.Image, kind: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, kind, **options)
    return out.getvalue()


def with_orientation(scene: Pixels, orientation: int) -> bytes:
    """A JPEG stored turned as a phone stores it, with the EXIF orientation that turns it upright."""
    stored = {6: cv2.ROTATE_90_COUNTERCLOCKWISE, 8: cv2.ROTATE_90_CLOCKWISE, 3: cv2.ROTATE_180}[orientation]
    turned = Image.fromarray(cv2.cvtColor(cv2.rotate(scene, stored), cv2.COLOR_BGR2RGB))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return saved(turned, "JPEG", quality=92, exif=exif)


def corpus(scene: Pixels) -> list[Case]:
    """Every kind of image a door of the pipeline may be handed; `scene` is a good photo to vary."""
    rgb = Image.fromarray(cv2.cvtColor(scene, cv2.COLOR_BGR2RGB))
    jpeg = saved(rgb, "JPEG", quality=92)
    noise = bytes(np.random.default_rng(5).integers(0, 256, 4096, dtype=np.uint8))
    deep = cv2.imencode(".png", scene.astype(np.uint16) * 257)[1].tobytes()
    return [
        Case("png declaring 50000x50000", png_declaring(50_000, 50_000), "image_too_large"),
        Case("jpeg declaring 50000x50000", jpeg_declaring(50_000, 50_000), "image_too_large"),
        Case("webp declaring 16384x16384", webp_declaring(16_384, 16_384), "image_too_large"),
        Case("png declaring 0x0", png_declaring(0, 0), "undecodable_image"),
        Case("empty", b"", "undecodable_image"),
        Case("random bytes", noise, "undecodable_image"),
        Case("jpeg cut in half", jpeg[: len(jpeg) // 2], "undecodable_image"),
        Case("jpeg header only", jpeg[:600], "undecodable_image"),
        Case("png cut short", saved(rgb, "PNG")[:-200], "undecodable_image"),
        Case("jpeg", jpeg, "ok"),
        Case("cmyk jpeg", saved(rgb.convert("CMYK"), "JPEG", quality=92), "ok"),
        Case("16-bit png", deep, "ok"),
        Case("grey png", saved(rgb.convert("L"), "PNG"), "ok"),
        Case("png with alpha", saved(rgb.convert("RGBA"), "PNG"), "ok"),
        Case("palette png", saved(rgb.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"), "ok"),
        Case("animated gif", saved(rgb.convert("P"), "GIF", save_all=True, append_images=[rgb.convert("P")]), "ok"),
        Case("tiff", saved(rgb, "TIFF"), "ok"),
        Case("webp", saved(rgb, "WEBP", quality=92), "ok"),
        Case("bmp", saved(rgb, "BMP"), "ok"),
        Case("jpeg turned, exif orientation 6", with_orientation(scene, 6), "ok"),
        Case("jpeg turned, exif orientation 8", with_orientation(scene, 8), "ok"),
        Case("jpeg upside down, exif orientation 3", with_orientation(scene, 3), "ok"),
    ]
