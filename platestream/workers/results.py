"""Engine results as OpenALPR `alpr_results` records (the schema of the alpr_results topic)."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from platestream.workers.engine import ImageResult, PlateRead


def plate_result(read: PlateRead, index: int) -> dict[str, Any]:
    return {
        "plate": read.plate,
        "confidence": read.confidence,
        "matches_template": int(read.matches_template),
        "plate_index": index,
        "region": read.region,
        "region_confidence": read.region_confidence,
        "processing_time_ms": read.processing_time_ms,
        "requested_topn": read.requested_topn,
        "coordinates": [{"x": p.x, "y": p.y} for p in read.coordinates],
        "candidates": [
            {"plate": c.plate, "confidence": c.confidence, "matches_template": int(c.matches_template)}
            for c in read.candidates
        ],
        "plate_crop_jpeg": base64.b64encode(read.plate_crop_jpeg).decode("ascii") if read.plate_crop_jpeg else None,
        "vehicle_region": (
            None
            if read.vehicle_region is None
            else {
                "x": read.vehicle_region.x,
                "y": read.vehicle_region.y,
                "width": read.vehicle_region.width,
                "height": read.vehicle_region.height,
            }
        ),
        "vehicle_crop_jpeg": None,  # the worker adds it when asked (it needs the frame)
    }


def frame_uuid(
    agent_uid: str, camera_id: int | str | None, epoch_ms: int, *, source_kind: str, source: str | None,
    frame_number: int,
) -> str:  # fmt: skip
    """Rekor's `<agent_uid>-<camera_id>-<epoch_ms>` for a live camera's frames, whose capture times
    are distinct. A frame whose time is an estimate (a file's modification time, an S3 object's
    one-second LastModified, a position in a video file) adds a digest of where it came from and its
    frame number: two images of one camera at one millisecond never share a uuid, and the same
    image read again by the same backfill keeps its uuid."""
    base = f"{agent_uid}-{camera_id}-{epoch_ms}"
    if source_kind == "camera":
        return base
    digest = hashlib.sha1(f"{source}#{frame_number}".encode(), usedforsecurity=False).hexdigest()[:12]
    return f"{base}-{digest}"


def alpr_results(
    result: ImageResult,
    *,
    epoch_ms: int,
    camera_id: int | str | None = None,
    agent_uid: str | None = None,
    agent_version: str | None = None,
    agent_type: str | None = None,
    company_id: str | None = None,
    frame_number: int | None = None,
    request_id: str | None = None,
    uuid: str | None = None,
) -> dict[str, Any]:
    """One frame's record. With an agent uid it takes the agent form, whose uuid is `uuid` or
    else `<agent_uid>-<camera_id>-<epoch_ms>` as Rekor Scout's (see frame_uuid)."""
    agent = agent_uid is not None
    return {
        "version": 2,
        "data_type": "alpr_results",
        "epoch_time": epoch_ms,
        "img_width": result.width,
        "img_height": result.height,
        "processing_time_ms": result.processing_time_ms,
        "regions_of_interest": [
            {"x": r.x, "y": r.y, "width": r.width, "height": r.height} for r in result.regions_of_interest
        ],
        "results": [plate_result(read, index) for index, read in enumerate(result.plates)],
        "uuid": (uuid or f"{agent_uid}-{camera_id}-{epoch_ms}") if agent else None,
        "camera_id": camera_id,
        "agent_uid": agent_uid,
        "agent_version": agent_version,
        "agent_type": agent_type,
        "company_id": company_id,
        "error": False if agent else None,
        "frame_number": frame_number,
        "request_id": request_id,
    }
