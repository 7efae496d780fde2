"""Untrusted image bytes: every bad input gets a precise error, and nothing huge is decoded."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from platestream.workers.engine import ImageError, ImageTooLargeError, decode_image


def jpeg(width: int = 64, height: int = 48) -> bytes:
    ok, data = cv2.imencode(".jpg", np.full((height, width, 3), 128, np.uint8))
    assert ok
    return bytes(data)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with a tiny body: a decompression bomb's shape."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def test_a_good_jpeg_decodes_to_bgr_pixels() -> None:
    assert decode_image(jpeg(64, 48)).shape == (48, 64, 3)


def test_empty_input() -> None:
    with pytest.raises(ImageError, match=r"empty \(0 bytes\)"):
        decode_image(b"", name="frame 7")


def test_bytes_that_are_not_an_image() -> None:
    with pytest.raises(ImageError, match="not a recognised image"):
        decode_image(b"GIF? no, just text pretending" * 10)


def test_truncated_jpeg() -> None:
    data = jpeg(640, 480)
    with pytest.raises(ImageError, match=r"truncated|cannot be decoded"):
        decode_image(data[: len(data) // 2])


def test_corrupt_jpeg_body() -> None:
    data = bytearray(jpeg(640, 480))
    data[200:-2] = b"\x00" * (len(data) - 202)
    with pytest.raises(ImageError):
        decode_image(bytes(data))


def test_a_20000_by_20000_image_is_refused_before_decoding() -> None:
    bomb = png_header_only(20_000, 20_000)
    assert len(bomb) < 200
    with pytest.raises(ImageTooLargeError, match="declares 400,000,000 pixels, over the limit"):
        decode_image(bomb)


def test_too_many_bytes() -> None:
    with pytest.raises(ImageTooLargeError, match="over the limit of 100"):
        decode_image(jpeg(), max_bytes=100)


def test_errors_carry_a_dead_letter_reason() -> None:
    assert ImageError("x").reason == "undecodable_image"
    assert ImageTooLargeError("x").reason == "image_too_large"
