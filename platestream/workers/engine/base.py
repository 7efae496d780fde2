"""The recognition engine interface: decoded images in, OpenALPR-shaped frozen results out."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from numpy.typing import NDArray

Image = NDArray[Any]  # H x W x 3 uint8, BGR, as OpenCV decodes


@dataclass(frozen=True)
class Options:
    """What a request may ask of the engine (OpenALPR `country`/`state`/`topn`, Plate Recognizer
    `regions` and `region: strict`)."""

    country: str = "us"
    state: str | None = None
    regions: tuple[str, ...] = ()
    region_strict: bool = False
    topn: int = 10
    plate_crop: bool = False


@dataclass(frozen=True)
class Point:
    x: int
    y: int


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True)
class Candidate:
    plate: str
    confidence: float  # 0-100
    matches_template: bool


@dataclass(frozen=True)
class PlateRead:
    """One plate in one image: OpenALPR's per-plate result."""

    plate: str
    confidence: float
    matches_template: bool
    region: str
    region_confidence: float
    coordinates: tuple[Point, Point, Point, Point]  # top-left, clockwise
    candidates: tuple[Candidate, ...]
    processing_time_ms: float
    requested_topn: int
    vehicle_region: Box | None = None
    plate_crop_jpeg: bytes | None = None
    detection_confidence: float | None = None  # 0-1, the detector's (Plate Recognizer's dscore)


@dataclass(frozen=True)
class ImageResult:
    width: int
    height: int
    plates: tuple[PlateRead, ...]
    processing_time_ms: float
    regions_of_interest: tuple[Box, ...] = field(default=())


class Engine(abc.ABC):
    """Recognises the plates of a batch of decoded images."""

    name: str = "engine"

    @abc.abstractmethod
    def recognize(self, images: Sequence[Image], options: Options | Sequence[Options] = Options()) -> list[ImageResult]:
        """One result per image, in order. `options` applies to all, or one per image."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release native resources."""


def per_image_options(options: Options | Sequence[Options], count: int) -> list[Options]:
    if isinstance(options, Options):
        return [options] * count
    if len(options) != count:
        raise ValueError(f"{len(options)} options for {count} images")
    return list(options)
