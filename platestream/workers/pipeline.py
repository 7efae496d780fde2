"""One batch of frame records in, the records to write out: results, replies, dead letters.

No Kafka here: the service hands in consumed records and writes what comes back, in one
transaction. Every input yields at least one output (a result or a dead letter) unless the
worker is set not to emit empty results.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from platestream.deadletter import Origin, dead_letter
from platestream.errors import PlatestreamError, SchemaError
from platestream.schemas import Codec
from platestream.workers.engine import Engine, Image, ImageError, Options, decode_image, vehicle_crop
from platestream.workers.fetch import FetchError, S3NotConfiguredError, S3UnavailableError, reference_uri
from platestream.workers.results import alpr_results, frame_uuid


@dataclass(frozen=True)
class Output:
    topic: str  # declared name, without the prefix
    schema: str
    key: bytes | None
    record: dict[str, Any]


@dataclass
class BatchReport:
    outputs: list[Output] = field(default_factory=list)
    dead_letters: dict[str, int] = field(default_factory=dict)
    frames: int = 0
    plates: int = 0
    fetch_decode_s: float = 0.0
    engine_s: float = 0.0
    capture_lag_s: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class FrameDefaults:
    country: str
    state: str | None
    topn: int
    emit_empty: bool
    agent_uid: str
    agent_version: str
    company_id: str | None
    max_image_bytes: int
    max_image_pixels: int
    plate_crop: bool = False
    vehicle_crop: bool = False


@dataclass
class _Work:
    origin: Origin
    frame: dict[str, Any]
    image: Image | None = None


@dataclass
class Prepared:
    report: BatchReport
    ready: list[_Work]


class FramePipeline:
    def __init__(
        self,
        engine: Engine,
        frame_codec: Codec,
        defaults: FrameDefaults,
        service: str,
        executor: Executor,
        fetch_object: Callable[[Mapping[str, Any]], bytes] | None = None,
    ) -> None:
        self.engine = engine
        self.frame_codec = frame_codec
        self.defaults = defaults
        self.service = service
        self.executor = executor
        self.fetch_object = fetch_object

    def process(self, origins: Sequence[Origin]) -> BatchReport:
        return self.finish(self.prepare(origins))

    def prepare(self, origins: Sequence[Origin]) -> Prepared:
        """Parse the records, fetch and decode their images: the part that can run while the
        engine works on the previous batch."""
        report = BatchReport(frames=len(origins))
        works = [w for w in (self._parse(origin, report) for origin in origins) if w is not None]
        started = time.perf_counter()
        loaded = list(self.executor.map(self._load, works))
        report.fetch_decode_s = time.perf_counter() - started
        ready = []
        for work, failure in zip(works, loaded, strict=True):
            if failure is None:
                ready.append(work)
            else:
                self._reject(report, work.origin, failure, work.frame)
        return Prepared(report, ready)

    def finish(self, prepared: Prepared) -> BatchReport:
        """Recognise a prepared batch and add its results to the report."""
        started = time.perf_counter()
        self._recognize(prepared.ready, prepared.report)
        prepared.report.engine_s = time.perf_counter() - started
        return prepared.report

    def _parse(self, origin: Origin, report: BatchReport) -> _Work | None:
        try:
            if origin.value is None:
                raise SchemaError("frame record has no value (a tombstone)")
            return _Work(origin, self.frame_codec.decode(origin.value))
        except SchemaError as error:
            self._dead(report, origin, "schema_invalid", error)
            return None

    def _load(self, work: _Work) -> PlatestreamError | None:
        frame = work.frame
        name = f"frame {frame['frame_number']} of camera {frame['camera_id']!r}"
        try:
            data = frame["image"]
            if data is None:
                if self.fetch_object is None:
                    raise S3NotConfiguredError(
                        f"{name} references {reference_uri(frame['image_ref'])} but S3 is not set up"
                    )
                data = self.fetch_object(frame["image_ref"])
                name = f"{name} ({reference_uri(frame['image_ref'])})"
            work.image = decode_image(
                data, max_bytes=self.defaults.max_image_bytes, max_pixels=self.defaults.max_image_pixels, name=name
            )
        except S3UnavailableError:
            raise  # the whole batch waits for S3 (the worker reads it again): nothing is given up
        except (ImageError, FetchError) as error:
            return error
        return None

    def _recognize(self, works: list[_Work], report: BatchReport) -> None:
        if not works:
            return
        images = [w.image for w in works if w.image is not None]
        options = [self._options(w.frame) for w in works]
        try:
            results = self.engine.recognize(images, options)
        except Exception:
            results = []
            for work, image, opts in zip(works, images, options, strict=True):
                try:
                    results.extend(self.engine.recognize([image], opts))
                except Exception as error:
                    self._dead(report, work.origin, "engine_failed", error)
                    works = [w for w in works if w is not work]
        now = time.time()
        for work, result in zip(works, results, strict=True):
            report.plates += len(result.plates)
            report.capture_lag_s.append(max(0.0, now - work.frame["capture_time_ms"] / 1000))
            self._emit(work, result, report)

    def _options(self, frame: Mapping[str, Any]) -> Options:
        requested = frame.get("options") or {}
        return Options(
            country=requested.get("country") or self.defaults.country,
            state=requested.get("state") or self.defaults.state,
            regions=tuple(requested.get("regions") or ()),
            region_strict=bool(requested.get("region_strict")),
            topn=requested.get("topn") or self.defaults.topn,
            plate_crop=self.defaults.plate_crop,
        )

    def _emit(self, work: _Work, result: Any, report: BatchReport) -> None:
        frame = work.frame
        request_id = (frame.get("options") or {}).get("request_id")
        if not result.plates and not self.defaults.emit_empty and request_id is None:
            return
        camera = frame["camera_id"]
        camera_id = int(camera) if camera.isdigit() and len(camera) < 18 else camera
        source = reference_uri(frame["image_ref"]) if frame.get("image_ref") else frame.get("source_uri")
        uuid = frame_uuid(
            self.defaults.agent_uid, camera_id, frame["capture_time_ms"], source_kind=frame["source_kind"],
            source=source, frame_number=frame["frame_number"],
        )  # fmt: skip
        record = alpr_results(
            result,
            epoch_ms=frame["capture_time_ms"],
            camera_id=camera_id,
            agent_uid=self.defaults.agent_uid,
            agent_version=self.defaults.agent_version,
            agent_type="platestream-worker",
            company_id=self.defaults.company_id,
            frame_number=frame["frame_number"],
            request_id=request_id,
            uuid=uuid,
        )
        if self.defaults.vehicle_crop and work.image is not None:
            for plate, read in zip(record["results"], result.plates, strict=True):
                try:
                    crop = vehicle_crop(work.image, read.vehicle_region) if read.vehicle_region else None
                except ImageError:  # a region outside the frame (an engine's mistake) costs the crop only
                    crop = None
                plate["vehicle_crop_jpeg"] = base64.b64encode(crop).decode("ascii") if crop else None
        if result.plates or self.defaults.emit_empty:
            report.outputs.append(Output("alpr_results", "alpr_results", camera.encode(), record))
        if request_id is not None:
            report.outputs.append(Output("alpr_replies", "alpr_results", request_id.encode(), record))

    def _reject(self, report: BatchReport, origin: Origin, error: PlatestreamError, frame: Mapping[str, Any]) -> None:
        reference = reference_uri(frame["image_ref"]) if frame.get("image_ref") else frame.get("source_uri")
        self._dead(report, origin, str(getattr(error, "reason", "undecodable_image")), error, reference)

    def _dead(
        self, report: BatchReport, origin: Origin, reason: str, error: BaseException, reference: str | None = None
    ) -> None:
        report.dead_letters[reason] = report.dead_letters.get(reason, 0) + 1
        record = dead_letter(origin, reason, error, self.service, reference=reference)
        report.outputs.append(Output("dead_letter", "dead_letter", origin.key, record))
