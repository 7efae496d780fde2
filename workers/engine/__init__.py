"""Recognition engines: the default (ONNX, no native dependency) and the OpenALPR adapter."""

from __future__ import annotations

from workers.engine.base import Box, Candidate, Engine, Image, ImageResult, Options, PlateRead, Point
from workers.engine.images import ImageError, ImageTooLargeError, decode_image

ENGINES = ("default", "openalpr")


def make_engine(name: str = "default", **settings: object) -> Engine:
    """An engine by name, as chosen in settings."""
    if name == "default":
        from workers.engine.default import DefaultEngine

        return DefaultEngine(**settings)  # type: ignore[arg-type]
    if name == "openalpr":
        from workers.engine.openalpr import OpenAlprEngine

        return OpenAlprEngine(**settings)  # type: ignore[arg-type]
    raise ValueError(f"unknown engine {name!r}; known: {', '.join(ENGINES)}")


__all__ = [
    "ENGINES",
    "Box",
    "Candidate",
    "Engine",
    "Image",
    "ImageError",
    "ImageResult",
    "ImageTooLargeError",
    "Options",
    "PlateRead",
    "Point",
    "decode_image",
    "make_engine",
]
