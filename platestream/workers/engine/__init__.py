"""Recognition engines: the default (ONNX, no native dependency) and the OpenALPR adapter."""

from __future__ import annotations

from platestream.settings import EngineSettings
from platestream.workers.engine.base import Box, Candidate, Engine, Image, ImageResult, Options, PlateRead, Point
from platestream.workers.engine.images import ImageError, ImageTooLargeError, decode_image, vehicle_crop

ENGINES = ("default", "openalpr")


def make_engine(name: str = "default", **settings: object) -> Engine:
    """An engine by name, as chosen in settings."""
    if name == "default":
        from platestream.workers.engine.default import DefaultEngine

        return DefaultEngine(**settings)  # type: ignore[arg-type]
    if name == "openalpr":
        from platestream.workers.engine.openalpr import OpenAlprEngine

        return OpenAlprEngine(**settings)  # type: ignore[arg-type]
    raise ValueError(f"unknown engine {name!r}; known: {', '.join(ENGINES)}")


def engine_from_settings(settings: EngineSettings) -> Engine:
    """The engine the settings name, built with their options."""
    if settings.engine == "openalpr":
        return make_engine(
            "openalpr", country=settings.country, config=settings.openalpr_config,
            runtime_data=settings.openalpr_runtime_data, state=settings.state,
        )  # fmt: skip
    return make_engine(
        "default", detector_size=settings.detector_size, threads=settings.engine_threads, gpu=settings.gpu,
        reader=settings.reader, second_look=settings.detector_second_look,
    )  # fmt: skip


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
    "engine_from_settings",
    "make_engine",
    "vehicle_crop",
]
