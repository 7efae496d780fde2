"""The three HTTP dialects as pure functions: a request's parameters in, the engine's options out;
the engine's result in, each dialect's JSON out, field for field as its documentation shows."""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from platestream.workers.engine.base import ImageResult, Options
from platestream.workers.results import alpr_results

CLOUD_TASKS = ("plate", "color", "make", "makemodel")
COUNTRIES = ("us", "eu", "br")


class RequestError(ValueError):
    """A request the dialect refuses, with the HTTP status and the message its clients expect."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def decode_base64(text: str, field: str) -> bytes:
    """Base64 image bytes (a data URL's prefix is allowed, as browsers send it)."""
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, f"{field} is neither an uploaded file nor valid base64") from None


# OpenALPR Cloud API (seed 002) ------------------------------------------------------------------


@dataclass(frozen=True)
class CloudRequest:
    tasks: tuple[str, ...]
    countries: tuple[str, ...]
    state: str | None
    topn: int
    return_image: bool


def cloud_request(params: Mapping[str, str], *, vehicle_tasks: bool = False) -> CloudRequest:
    """The Cloud API's query parameters, checked as its documentation states them."""
    raw_tasks = params.get("tasks")
    if not raw_tasks:
        raise RequestError(400, "tasks is required: plate, color, make and/or makemodel, comma-separated")
    tasks = tuple(task.strip().lower() for task in raw_tasks.split(",") if task.strip())
    for task in tasks:
        if task not in CLOUD_TASKS:
            raise RequestError(400, f"unknown task {task!r}: valid tasks are {', '.join(CLOUD_TASKS)}")
        if task != "plate" and not vehicle_tasks:
            raise RequestError(400, f"task {task!r} is not available: no vehicle model is configured on this server")
    countries = tuple(c.strip().lower() for c in params.get("country", "").split(",") if c.strip())
    if "plate" in tasks and not countries:
        raise RequestError(400, "country is required with the plate task (us, eu or br; comma lists allowed)")
    for country in countries:
        if country not in COUNTRIES:
            raise RequestError(400, f"country {country!r} is not supported: use {', '.join(COUNTRIES)}")
    topn = integer(params.get("topn", "10"), "topn")
    if not 1 <= topn <= 1000:
        raise RequestError(400, f"topn must be between 1 and 1000, got {topn}")
    return_image = params.get("return_image", "0")
    if return_image not in ("0", "1"):
        raise RequestError(400, f"return_image must be 0 or 1, got {return_image!r}")
    state = params.get("state") or None
    return CloudRequest(tasks, countries, state.lower() if state else None, topn, return_image == "1")


def cloud_options(request: CloudRequest) -> list[Options]:
    """One engine pass per country asked for (`au,auwide` in OpenALPR; `us,eu` here)."""
    return [Options(country=country, state=request.state, topn=request.topn) for country in request.countries]


def cloud_response(
    request: CloudRequest,
    results: Sequence[ImageResult],
    *,
    processing_ms: float,
    epoch_ms: int,
    credits_used: int,
    credits_total: int,
    image: bytes | None,
) -> dict[str, Any]:
    """The Cloud API's answer: its envelope around one `alpr_results` (`plate`)."""
    first = results[0]
    plate = alpr_results(_merged(results), epoch_ms=epoch_ms)
    plate = {key: value for key, value in plate.items() if value is not None}
    for result in plate["results"]:
        result.pop("plate_crop_jpeg", None)
        result.pop("vehicle_region", None)
        result.pop("vehicle_crop_jpeg", None)
    body: dict[str, Any] = {
        "total_processing_time": round(processing_ms, 3),
        "img_width": first.width,
        "img_height": first.height,
        "credit_cost": len(request.tasks),
        "credits_monthly_used": credits_used,
        "credits_monthly_total": credits_total,
        "makemodel": [],
        "make": [],
        "color": [],
        "plate": plate,
    }
    if image is not None:
        body["image_bytes"] = base64.b64encode(image).decode("ascii")
    return body


def _merged(results: Sequence[ImageResult]) -> ImageResult:
    """The plates of one image read with several countries, most confident first per place."""
    if len(results) == 1:
        return results[0]
    plates = sorted((p for r in results for p in r.plates), key=lambda p: -p.confidence)
    kept: list[Any] = []
    for plate in plates:
        x0, y0 = plate.coordinates[0].x, plate.coordinates[0].y
        if all(abs(k.coordinates[0].x - x0) > 10 or abs(k.coordinates[0].y - y0) > 10 for k in kept):
            kept.append(plate)
    first = results[0]
    return ImageResult(first.width, first.height, tuple(kept), sum(r.processing_time_ms for r in results),
                       first.regions_of_interest)  # fmt: skip


# Plate Recognizer Snapshot API and SDK (seed 003) -----------------------------------------------


@dataclass(frozen=True)
class SnapshotRequest:
    regions: tuple[str, ...]
    strict: bool
    camera_id: str | None
    timestamp: str
    mmc: bool
    threshold_d: float
    threshold_o: float


def snapshot_request(
    regions: Sequence[str],
    config: str | None,
    camera_id: str | None,
    timestamp: str | None,
    mmc: str | None,
    *,
    now: float | None = None,
) -> SnapshotRequest:
    try:
        engine_config = json.loads(config) if config else {}
    except json.JSONDecodeError as error:
        raise RequestError(400, f"config is not JSON: {error.msg} at character {error.pos}") from None
    if not isinstance(engine_config, dict):
        raise RequestError(400, 'config must be a JSON object, e.g. {"region": "strict"}')
    mode = engine_config.get("mode", "fast")
    if mode not in ("fast", "redaction"):
        raise RequestError(400, f"config mode {mode!r} is not one of fast, redaction")
    region = engine_config.get("region")
    if region not in (None, "strict"):
        raise RequestError(400, f'config region {region!r}: the only value is "strict"')
    threshold_d = _unit(engine_config.get("threshold_d", 0.1), "threshold_d")
    threshold_o = _unit(engine_config.get("threshold_o", 0.0), "threshold_o")
    if timestamp:
        try:
            datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
        except ValueError:
            raise RequestError(400, f"timestamp {timestamp!r} is not ISO 8601 (e.g. 2019-08-19T13:11:25)") from None
    else:
        moment = datetime.fromtimestamp(time.time() if now is None else now, tz=UTC)
        timestamp = moment.isoformat(timespec="microseconds").replace("+00:00", "Z")
    if mmc not in (None, "", "true", "false", "True", "False", "1", "0"):
        raise RequestError(400, f"mmc must be true or false, got {mmc!r}")
    wanted = tuple(code.strip().lower() for code in regions if code.strip())
    return SnapshotRequest(wanted, region == "strict", camera_id or None, timestamp,
                           mmc in ("true", "True", "1"), threshold_d, threshold_o)  # fmt: skip


def snapshot_options(request: SnapshotRequest, default_country: str) -> Options:
    """Plate Recognizer's regions name the country: `us-ca` is the US, `fr` Europe, `br` Brazil."""
    country = default_country
    if request.regions:
        first = request.regions[0]
        country = "us" if first.startswith("us") else "br" if first == "br" else "eu"
    return Options(country=country, regions=request.regions, region_strict=request.strict, topn=10)


def snapshot_result(result: ImageResult, request: SnapshotRequest) -> list[dict[str, Any]]:
    found = []
    for read in result.plates:
        dscore = read.detection_confidence if read.detection_confidence is not None else read.confidence / 100
        if dscore < request.threshold_d or read.confidence / 100 < request.threshold_o:
            continue
        xs = [p.x for p in read.coordinates]
        ys = [p.y for p in read.coordinates]
        entry: dict[str, Any] = {
            "box": {"xmin": min(xs), "ymin": min(ys), "xmax": max(xs), "ymax": max(ys)},
            "plate": read.plate.lower(),
            "region": {"code": read.region or "", "score": round(read.region_confidence / 100, 3)},
            "score": round(read.confidence / 100, 3),
            "candidates": [{"score": round(c.confidence / 100, 3), "plate": c.plate.lower()} for c in read.candidates],
            "dscore": round(dscore, 3),
        }
        if read.vehicle_region is not None:
            box = read.vehicle_region
            entry["vehicle"] = {
                "score": 0.0,  # no vehicle classifier: its box is known, its type is not
                "type": "Unknown",
                "box": {"xmin": box.x, "ymin": box.y, "xmax": box.x + box.width, "ymax": box.y + box.height},
            }
        found.append(entry)
    return found


def snapshot_response(
    result: ImageResult,
    request: SnapshotRequest,
    *,
    processing_ms: float,
    filename: str,
    calls: int,
    max_calls: int,
) -> dict[str, Any]:
    return {
        "processing_time": round(processing_ms, 3),
        "results": snapshot_result(result, request),
        "filename": filename,
        "version": 1,
        "camera_id": request.camera_id,
        "timestamp": request.timestamp,
        "usage": {"max_calls": max_calls, "calls": calls},
    }


def integer(text: str, field: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise RequestError(400, f"{field} must be an integer, got {text!r}") from None


def _unit(value: Any, field: str) -> float:
    if not isinstance(value, int | float) or not 0 <= value <= 1:
        raise RequestError(400, f"config {field} must be a number from 0 to 1, got {value!r}")
    return float(value)
