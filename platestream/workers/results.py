"""Engine results as OpenALPR `alpr_results` records (the schema of the alpr_results topic)."""

from __future__ import annotations

import base64
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
    }


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
) -> dict[str, Any]:
    """One frame's record. With an agent uid it takes the agent form, whose uuid is
    `<agent_uid>-<camera_id>-<epoch_ms>` as Rekor Scout's."""
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
        "uuid": f"{agent_uid}-{camera_id}-{epoch_ms}" if agent else None,
        "camera_id": camera_id,
        "agent_uid": agent_uid,
        "agent_version": agent_version,
        "agent_type": agent_type,
        "company_id": company_id,
        "error": False if agent else None,
        "frame_number": frame_number,
        "request_id": request_id,
    }
