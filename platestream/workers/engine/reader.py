"""The plate reader the project trains itself (`platestream train reader`): one ONNX model that
reads a whole plate crop into fixed character slots and finds the registration's box in it.

The model ships inside the package with its SHA-256 pinned here; a missing, changed or corrupt file
is refused with an error that says so. Its metadata carries the alphabet, the pad class and the
input size, so a retrained model with another alphabet or size needs no code change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from platestream.errors import MissingExtraError, PlatestreamError
from platestream.workers.engine.base import Image
from platestream.workers.engine.candidates import Alternatives
from platestream.workers.engine.models import onnx_session, pinned_file

MODEL_FILE = Path(__file__).parent / "data" / "plate-reader.onnx"
MODEL_SHA256 = "8921790b920a7386652a285a4163a5f09f2ff51175f2595972b6a55cde9d3fd2"
# A detector's box is widened by these shares of its width and height before reading: the
# reader was trained on crops as loose as this and tighter.
PAD_X = 0.06
PAD_Y = 0.15
TOP_ALTERNATIVES = 3


class ReaderModelError(PlatestreamError):
    """The plate reader's model file is missing, changed or unreadable."""


def prepare(crop: Image, height: int, width: int) -> Image:
    """A BGR crop as the reader's input: RGB, `height` x `width` (stretched, not padded)."""
    interpolation = cv2.INTER_AREA if crop.shape[1] > width else cv2.INTER_LINEAR
    resized = cv2.resize(crop, (width, height), interpolation=interpolation)
    return np.ascontiguousarray(resized[:, :, ::-1])


def rectangle_crop(image: Image, box: tuple[float, float, float, float]) -> tuple[Image, tuple[int, int]]:
    """The pixels of a detector's box (x1, y1, x2, y2) widened by PAD_X and PAD_Y, the image's
    edge pixels repeated where the widened box leaves the image, and the crop's top-left corner
    in the image (negative where it lies outside)."""
    x1, y1, x2, y2 = box
    pad_x, pad_y = PAD_X * (x2 - x1), PAD_Y * (y2 - y1)
    left, top, right, bottom = (round(x1 - pad_x), round(y1 - pad_y), round(x2 + pad_x), round(y2 + pad_y))
    height, width = image.shape[:2]
    inside = image[max(0, top) : min(height, bottom), max(0, left) : min(width, right)]
    if inside.size == 0:
        return inside, (left, top)
    padded = cv2.copyMakeBorder(inside, max(0, -top), max(0, bottom - height), max(0, -left),
                                max(0, right - width), cv2.BORDER_REPLICATE)  # fmt: skip
    return np.asarray(padded, dtype=np.uint8), (left, top)


def verify(path: Path, expected: str) -> bytes:
    """The model's bytes, after checking them against `expected` (SHA-256, hex)."""
    return pinned_file(path, expected, what="the plate reader model", error=ReaderModelError,
                       if_missing="read with the default reader (PLATESTREAM_READER=ppocr-head) or PP-OCR alone "
                       "(PLATESTREAM_READER=ppocr)")  # fmt: skip


@dataclass(frozen=True)
class Reading:
    """One plate's characters, slot by slot (likeliest first, without the pad), and the box of the
    registration relative to the crop (x1, y1, x2, y2 in 0-1)."""

    positions: list[Alternatives]
    box: tuple[float, float, float, float]


class PlateReader:
    def __init__(self, *, threads: int, providers: Sequence[str], path: Path = MODEL_FILE,
                 sha256: str = MODEL_SHA256) -> None:  # fmt: skip
        data = verify(path, sha256)
        try:
            self.session: Any = onnx_session(data, threads, providers)
        except MissingExtraError:
            raise
        except Exception as error:  # ONNX Runtime raises its own, unexported types
            raise ReaderModelError(f"ONNX Runtime cannot load the plate reader model {path}: {error}") from error
        meta = self.session.get_modelmeta().custom_metadata_map
        self.alphabet = meta["alphabet"]
        self.pad = int(meta["pad_class"])
        self.height, self.width = int(meta["input_height"]), int(meta["input_width"])
        self.version = meta.get("version", "")
        self.characters = list(self.alphabet)
        self.characters.insert(self.pad, "")

    def read(self, crops: Sequence[Image]) -> list[Reading]:
        """Each crop's characters and registration box, in one batch."""
        if not crops:
            return []
        batch = np.stack([prepare(crop, self.height, self.width) for crop in crops]).astype(np.float32)
        batch = (batch / 255.0 - 0.5) / 0.5
        probabilities, boxes = self.session.run(None, {"image": batch.transpose(0, 3, 1, 2)})
        return [
            Reading(self._positions(p), (float(b[0]), float(b[1]), float(b[2]), float(b[3])))
            for p, b in zip(probabilities, boxes, strict=True)
        ]

    def _positions(self, slots: NDArray[np.float32]) -> list[Alternatives]:
        """Per slot, its likeliest characters; the pad's probability is what they leave (the chance
        the slot holds no character), which is how the candidates treat a dropped position."""
        positions: list[Alternatives] = []
        for slot in slots:
            order = [int(i) for i in np.argsort(-slot) if int(i) != self.pad][:TOP_ALTERNATIVES]
            positions.append([(self.characters[i], float(slot[i])) for i in order])
        return positions
