"""`platestream produce s3 s3://bucket/prefix`: a bulk backfill of S3 references, resumable.

Objects are listed in key order with pagination, filtered by suffix and modification time, and
produced as frames that reference the object (bucket, key, version, ETag) rather than carry it:
workers fetch in parallel. Every batch is one Kafka transaction with a checkpoint of the last key
on `producer_checkpoints`; a killed backfill restarts after the last committed key, so every
object is produced exactly once.
"""

from __future__ import annotations

import hashlib
import json
import re
import signal
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from platestream.errors import ConfigError, MissingExtraError, PlatestreamError
from platestream.log import get_logger
from platestream.producers.checkpoints import Pace, last_checkpoint, send_checkpointed
from platestream.producers.files import CONTENT_TYPES
from platestream.settings import BackfillSettings

log = get_logger(__name__)


class BackfillError(PlatestreamError):
    """The backfill's source cannot be listed."""


@dataclass(frozen=True)
class S3Object:
    key: str
    etag: str
    size: int
    modified_ms: int
    version_id: str | None = None


def parse_source(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or not uri[5:].split("/", 1)[0]:
        raise ConfigError(f"{uri!r} is not an s3://bucket/prefix URI")
    bucket, _, prefix = uri[5:].partition("/")
    return bucket, prefix


def _moment(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{text!r} is not an ISO date/time") from None
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp() * 1000)


def backfill_id(uri: str, settings: BackfillSettings) -> str:
    if settings.backfill_id:
        return settings.backfill_id
    identity = json.dumps([uri, settings.suffixes, settings.modified_after, settings.modified_before,
                           settings.key_pattern, settings.camera_id])  # fmt: skip
    return "backfill-" + hashlib.sha256(identity.encode()).hexdigest()[:16]


def wanted(obj: S3Object, suffixes: tuple[str, ...], after_ms: int | None, before_ms: int | None) -> bool:
    return (
        obj.key.lower().endswith(suffixes)
        and (after_ms is None or obj.modified_ms > after_ms)
        and (before_ms is None or obj.modified_ms < before_ms)
    )


def frame_for(obj: S3Object, bucket: str, uri: str, settings: BackfillSettings, number: int,
              metadata: Mapping[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    """The frame record referencing one object; camera and time from the key pattern, metadata,
    the settings, or else the key's folder and the object's modification time."""
    camera = settings.camera_id
    capture_ms = obj.modified_ms
    if settings.key_pattern:
        match = re.search(settings.key_pattern, obj.key)
        if match:
            groups = match.groupdict()
            camera = groups.get("camera") or camera
            if groups.get("time"):
                capture_ms = _parse_time(groups["time"], obj.key)
    if metadata and settings.camera_metadata and settings.camera_metadata in metadata:
        camera = metadata[settings.camera_metadata]
    if not camera:  # the object's folder, else the bucket
        camera = obj.key.rsplit("/", 2)[-2] if "/" in obj.key else bucket
    suffix = "." + obj.key.rsplit(".", 1)[-1].lower()
    options: dict[str, Any] | None = None
    if settings.country or settings.state:
        options = {"country": settings.country, "state": settings.state, "regions": [], "region_strict": False,
                   "topn": None, "request_id": None}  # fmt: skip
    return {
        "camera_id": str(camera),
        "frame_number": number,
        "capture_time_ms": capture_ms,
        "source_kind": "s3",
        "image": None,
        "image_ref": {"bucket": bucket, "key": obj.key, "version_id": obj.version_id, "etag": obj.etag},
        "content_type": CONTENT_TYPES.get(suffix, "application/octet-stream"),
        "source_uri": f"s3://{bucket}/{obj.key}",
        "options": options,
    }


def _parse_time(text: str, key: str) -> int:
    if text.isdigit():
        value = int(text)
        return value if value > 10**11 else value * 1000  # milliseconds, or seconds
    moment = _moment(text)
    if moment is None:
        raise ConfigError(f"no time in key {key!r}")
    return moment


class Backfill:
    def __init__(self, uri: str, settings: BackfillSettings) -> None:
        self.uri = uri
        self.settings = settings
        self.bucket, self.prefix = parse_source(uri)
        self.id = backfill_id(uri, settings)
        self.suffixes = tuple(s.strip().lower() for s in settings.suffixes.split(",") if s.strip())
        self.after_ms = _moment(settings.modified_after)
        self.before_ms = _moment(settings.modified_before)
        self._stopping = False
        try:
            import boto3
        except ImportError:
            raise MissingExtraError("boto3", "s3") from None
        self.s3 = boto3.client("s3", endpoint_url=settings.s3_endpoint_url, region_name=settings.s3_region)

    def stop(self, signum: int | None = None, _frame: FrameType | None = None) -> None:
        log.info("backfill_stopping", signal=signum)
        self._stopping = True

    def checkpoint(self) -> dict[str, Any] | None:
        """The last committed checkpoint of this backfill, if any."""
        return last_checkpoint(self.settings, self.id)

    def objects(self, start_after: str) -> Iterator[S3Object]:
        from botocore.exceptions import BotoCoreError, ClientError

        paginator = self.s3.get_paginator("list_objects_v2")
        request: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix}
        if start_after:
            request["StartAfter"] = start_after
        try:
            for page in paginator.paginate(**request):
                for item in page.get("Contents", []):
                    obj = S3Object(item["Key"], item["ETag"], int(item["Size"]),
                                   int(item["LastModified"].timestamp() * 1000))  # fmt: skip
                    if wanted(obj, self.suffixes, self.after_ms, self.before_ms):
                        yield obj
        except (ClientError, BotoCoreError) as error:
            raise BackfillError(f"cannot list {self.uri}: {error}") from None

    def run(self, *, dry_run: bool = False) -> int:
        """Produce what is left of the backfill; return how many objects this run produced."""
        previous = None if dry_run else self.checkpoint()
        if previous and previous["done"]:
            log.info("backfill_already_done", backfill_id=self.id, objects=previous["objects_produced"])
            return 0
        start_after = previous["last_key"] if previous else ""
        total = previous["objects_produced"] if previous else 0
        if dry_run:
            count = sum(1 for _ in self.objects(start_after))
            log.info("backfill_dry_run", source=self.uri, objects=count)
            return count
        progress = _Progress(self.uri, initial=total)
        if progress.bar is not None:  # on a terminal: list once more up front, for the ETA
            progress.bar.total = total + sum(1 for _ in self.objects(start_after))
            progress.bar.refresh()
        frames = (
            (obj.key, frame_for(obj, self.bucket, self.uri, self.settings, number, self._metadata(obj)))
            for number, obj in enumerate(self.objects(start_after), start=total)
        )
        pace = Pace(self.settings.rate, self.settings.batch_size, self.settings.batch_max_s)
        produced, _ = send_checkpointed(
            self.settings, self.id, self.uri, frames, before=total, after_key=start_after, pace=pace,
            stopping=lambda: self._stopping, progress=progress.update,
        )  # fmt: skip
        progress.update(total + produced, final=True)
        log.info("backfill_finished" if not self._stopping else "backfill_interrupted",
                 backfill_id=self.id, produced=produced, total=total + produced)  # fmt: skip
        return produced

    def _metadata(self, obj: S3Object) -> dict[str, str] | None:
        if not self.settings.camera_metadata:
            return None
        head = self.s3.head_object(Bucket=self.bucket, Key=obj.key)
        return {k.lower(): v for k, v in head.get("Metadata", {}).items()}


class _Progress:
    """A progress bar on a terminal (count, rate, ETA); log lines with count and rate otherwise."""

    def __init__(self, uri: str, initial: int = 0) -> None:
        self.uri = uri
        self.started = time.monotonic()
        self.bar: Any = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(desc=uri, unit="obj", file=sys.stderr, initial=initial)
        self.last = self.first = initial

    def update(self, count: int, *, final: bool = False) -> None:
        if self.bar is not None:
            self.bar.update(count - self.last)
            if final:
                self.bar.close()
        else:
            rate = (count - self.first) / max(1e-9, time.monotonic() - self.started)
            log.info("backfill_progress", source=self.uri, objects=count, per_second=round(rate, 1))
        self.last = count


def run_backfill(uri: str, settings: BackfillSettings, *, dry_run: bool) -> int:
    backfill = Backfill(uri, settings)
    signal.signal(signal.SIGTERM, backfill.stop)
    signal.signal(signal.SIGINT, backfill.stop)
    return backfill.run(dry_run=dry_run)
