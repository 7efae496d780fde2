"""The OpenALPR adapter: the native engine through its Python binding, behind the Engine interface.

Needs the native library and the `openalpr` binding (`pip install 'platestream[openalpr]'` on an
image that ships libopenalpr, e.g. the project's Docker image built with OpenALPR).
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from platestream.errors import PlatestreamError
from platestream.workers.engine.base import (
    Box,
    Candidate,
    Engine,
    Image,
    ImageResult,
    Options,
    PlateRead,
    Point,
    per_image_options,
)

NATIVE_LIBRARY = "libopenalprpy.so"  # what the binding loads on Linux


class OpenAlprError(PlatestreamError):
    """The native OpenALPR engine could not be loaded or failed on an image."""


def region_code(region: str, country: str) -> str:
    """A region in Plate Recognizer's and Rekor's form: a US state as `us-md` (the open-source
    library says `md`), a country by its own code (`de`, `br`)."""
    region = region.strip().lower()
    if country.lower() == "us" and len(region) == 2:
        return f"us-{region}"
    return region


def plate_read(result: Mapping[str, Any], country: str = "") -> PlateRead:
    """One element of OpenALPR's `results[]` as a PlateRead."""
    corners = [Point(int(c["x"]), int(c["y"])) for c in result.get("coordinates", [])]
    if len(corners) != 4:
        raise OpenAlprError(f"OpenALPR returned {len(corners)} corners for plate {result.get('plate')!r}")
    region = result.get("vehicle_region")
    return PlateRead(
        plate=str(result["plate"]),
        confidence=float(result["confidence"]),
        matches_template=bool(result.get("matches_template", 0)),
        region=region_code(str(result.get("region", "")), country),
        region_confidence=float(result.get("region_confidence", 0)),
        coordinates=(corners[0], corners[1], corners[2], corners[3]),
        candidates=tuple(
            Candidate(str(c["plate"]), float(c["confidence"]), bool(c.get("matches_template", 0)))
            for c in result.get("candidates", [])
        ),
        processing_time_ms=float(result.get("processing_time_ms", 0.0)),
        requested_topn=int(result.get("requested_topn", 0)),
        vehicle_region=(
            Box(int(region["x"]), int(region["y"]), int(region["width"]), int(region["height"])) if region else None
        ),
    )


def image_result(response: Mapping[str, Any], country: str = "") -> ImageResult:
    """OpenALPR's alpr_results JSON (as `alpr -j` or recognize_ndarray return it) as an ImageResult."""
    return ImageResult(
        width=int(response["img_width"]),
        height=int(response["img_height"]),
        plates=tuple(
            plate_read(r, country) for r in sorted(response.get("results", []), key=lambda r: r.get("plate_index", 0))
        ),
        processing_time_ms=float(response.get("processing_time_ms", 0.0)),
        regions_of_interest=tuple(
            Box(int(r["x"]), int(r["y"]), int(r["width"]), int(r["height"]))
            for r in response.get("regions_of_interest", [])
        ),
    )


def _check_paths(config: str, runtime_data: str) -> None:
    """OpenALPR ignores a config file that does not exist and only warns about runtime data it cannot
    read: say so once, clearly, before it is loaded."""
    if not Path(config).is_file():
        raise OpenAlprError(
            f"OpenALPR config file {config!r} does not exist (PLATESTREAM_OPENALPR_CONFIG, --openalpr-config)"
        )
    missing = [name for name in ("region", "ocr", "config") if not (Path(runtime_data) / name).is_dir()]
    if missing:
        raise OpenAlprError(
            f"OpenALPR runtime data folder {runtime_data!r} lacks {', '.join(missing)}"
            " (PLATESTREAM_OPENALPR_RUNTIME_DATA, --openalpr-runtime-data): point it at OpenALPR's runtime_data"
        )


def _check_native_library() -> None:
    """Load the binding's native library before the binding does: when it is missing, the binding's
    half-built object prints a traceback of its own at exit, after our error."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(NATIVE_LIBRARY)
    except OSError as error:
        raise OpenAlprError(
            f"the native OpenALPR library cannot be loaded ({error}): install OpenALPR with its Python"
            " binding's library, or run the OpenALPR image (deploy/docker/openalpr.Dockerfile)"
        ) from None


class OpenAlprEngine(Engine):
    name = "openalpr"

    def __init__(
        self,
        *,
        country: str = "us",
        config: str = "/etc/openalpr/openalpr.conf",
        runtime_data: str = "/usr/share/openalpr/runtime_data",
        state: str | None = None,
    ) -> None:
        _check_paths(config, runtime_data)
        try:
            from openalpr import Alpr
        except ImportError:
            raise OpenAlprError(
                "the OpenALPR Python binding is not installed: install the one in OpenALPR's source tree"
                " (src/bindings/python) beside the open-source library, or `pip install 'platestream[openalpr]'`"
                " for the commercial one; the OpenALPR image (deploy/docker/openalpr.Dockerfile) has it"
            ) from None
        self._factory = Alpr
        self._config = config
        self._runtime_data = runtime_data
        self._engines: dict[str, Any] = {}
        self._default_country = country
        self._default_state = state
        self._load(country)

    def _load(self, country: str) -> Any:
        if country not in self._engines:
            _check_native_library()
            try:
                alpr = self._factory(country, self._config, self._runtime_data)
            except OSError as error:  # the binding raises this when libopenalpr is missing
                raise OpenAlprError(f"the native OpenALPR library cannot be loaded: {error}") from None
            except AttributeError as error:  # a function the binding calls is not in this library
                raise OpenAlprError(
                    f"the OpenALPR Python binding does not match the native library ({error}): the open-source"
                    " library needs the binding from its own source tree, not the one on PyPI"
                ) from None
            if not alpr.is_loaded():
                raise OpenAlprError(
                    f"OpenALPR did not load for country {country!r} (config {self._config}, "
                    f"runtime data {self._runtime_data})"
                )
            self._engines[country] = alpr
        return self._engines[country]

    def recognize(self, images: Sequence[Image], options: Options | Sequence[Options] = Options()) -> list[ImageResult]:
        results = []
        for image, opts in zip(images, per_image_options(options, len(images)), strict=True):
            country = opts.country or self._default_country
            alpr = self._load(country)
            alpr.set_top_n(opts.topn)
            alpr.set_default_region(opts.state or self._default_state or "")
            response = alpr.recognize_ndarray(image)
            if not isinstance(response, Mapping):
                raise OpenAlprError(f"OpenALPR returned {type(response).__name__}, not a result")
            results.append(image_result(response, country))
        return results

    def close(self) -> None:
        for alpr in self._engines.values():
            alpr.unload()
        self._engines.clear()
