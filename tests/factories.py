"""Valid records of every schema, for tests to start from and change."""

from __future__ import annotations

from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def frame(camera_id: str = "cam-1", number: int = 1, image: bytes | None = b"\xff\xd8jpeg") -> dict[str, Any]:
    return {
        "camera_id": camera_id,
        "frame_number": number,
        "capture_time_ms": 1_700_000_000_000 + number * 100,
        "source_kind": "camera",
        "image": image,
        "image_ref": None,
        "content_type": "image/jpeg",
        "source_uri": "rtsp://camera-1/stream",
        "options": {
            "country": "us",
            "state": None,
            "regions": [],
            "region_strict": False,
            "topn": 5,
            "request_id": None,
        },
    }


def plate_result(plate: str = "ABC1234", index: int = 0) -> dict[str, Any]:
    return {
        "plate": plate,
        "confidence": 91.5,
        "matches_template": 1,
        "plate_index": index,
        "region": "us-ca",
        "region_confidence": 80.0,
        "processing_time_ms": 12.5,
        "requested_topn": 3,
        "coordinates": [{"x": 10, "y": 20}, {"x": 110, "y": 22}, {"x": 108, "y": 60}, {"x": 9, "y": 58}],
        "candidates": [
            {"plate": plate, "confidence": 91.5, "matches_template": 1},
            {"plate": plate[:-1], "confidence": 80.1, "matches_template": 0},
        ],
        "plate_crop_jpeg": None,
        "vehicle_region": {"x": 0, "y": 0, "width": 300, "height": 300},
        "vehicle_crop_jpeg": None,
    }


def alpr_results(camera_id: int | str = 7, epoch_ms: int = 1_700_000_000_100) -> dict[str, Any]:
    return {
        "version": 2,
        "data_type": "alpr_results",
        "epoch_time": epoch_ms,
        "img_width": 1280,
        "img_height": 720,
        "processing_time_ms": 40.0,
        "regions_of_interest": [{"x": 0, "y": 0, "width": 1280, "height": 720}],
        "results": [plate_result()],
        "uuid": f"agent-1-{camera_id}-{epoch_ms}",
        "camera_id": camera_id,
        "agent_uid": "agent-1",
        "agent_version": "0.1.0",
        "agent_type": "platestream",
        "company_id": None,
        "error": False,
        "frame_number": 1,
        "request_id": None,
    }


def alpr_group(camera_id: int | str = 7) -> dict[str, Any]:
    best = plate_result()
    return {
        "version": 2,
        "data_type": "alpr_group",
        "epoch_start": 1_700_000_000_100,
        "epoch_end": 1_700_000_000_900,
        "frame_start": 1,
        "frame_end": 9,
        "camera_id": camera_id,
        "agent_uid": "agent-1",
        "agent_version": "0.1.0",
        "agent_type": "platestream",
        "company_id": None,
        "country": "us",
        "gps_latitude": 38.6,
        "gps_longitude": -90.2,
        "uuids": ["agent-1-7-1700000000100", "agent-1-7-1700000000900"],
        "plate_indexes": [0, 0],
        "candidates": best["candidates"],
        "best_plate": best,
        "best_plate_number": best["plate"],
        "best_confidence": best["confidence"],
        "best_uuid": "agent-1-7-1700000000100",
        "best_region": "us-ca",
        "best_region_confidence": 80.0,
        "best_image_width": 1280,
        "best_image_height": 720,
        "matches_template": True,
        "travel_direction": 180.0,
        "is_parked": False,
        "vehicle_crop_jpeg": None,
        "vehicle": None,
        "plate_path": [{"x": 10, "y": 20, "w": 100, "h": 40, "t": 1_700_000_000_100, "f": 1}],
        "vehicle_path": [],
    }


def heartbeat() -> dict[str, Any]:
    return {
        "data_type": "heartbeat",
        "agent_uid": "agent-1",
        "agent_version": "0.1.0",
        "agent_type": "worker",
        "agent_hostname": "worker-0",
        "timestamp": 1_700_000_000_000,
        "cpu_cores": 2,
        "cpu_usage_percent": 37.5,
        "memory_total_bytes": 24 << 30,
        "memory_consumed_bytes": 300 << 20,
        "processing_threads_active": 1,
        "processing_threads_configured": 2,
        "system_uptime_seconds": 1000,
        "daemon_uptime_seconds": 60,
        "video_streams": [
            {"camera_id": 7, "camera_name": "gate", "url": "rtsp://gate/1", "fps": 10.0,
             "is_streaming": True, "last_update": 1_700_000_000_000},
        ],
    }  # fmt: skip


def alert() -> dict[str, Any]:
    return {
        "alert_id": "agent-1-7-1700000000100/0|stolen|ABC1234",
        "data_type": "alpr_alert",
        "epoch_time": 1_700_000_001_000,
        "list_name": "stolen",
        "entry": {"plate": "ABC1234", "description": "red Golf"},
        "match": {"how": "candidate", "reading": "ABC1234", "confidence": 80.1, "distance": 0.0},
        "pass": {"pass_id": "agent-1-7-1700000000100/0", "camera_id": 7, "best_plate_number": "A8C1234",
                 "best_confidence": 91.5, "best_region": "us-ca", "epoch_start": 1_700_000_000_100,
                 "epoch_end": 1_700_000_001_000, "best_uuid": "agent-1-7-1700000000100",
                 "uuids": ["agent-1-7-1700000000100", "agent-1-7-1700000000300"], "travel_direction": 180.0},
    }  # fmt: skip


def dead_letter() -> dict[str, Any]:
    return {
        "reason": "undecodable_image",
        "error_class": "ImageDecodeError",
        "error_message": "frame 3 of camera 'cam-1': not an image",
        "original_key": b"cam-1",
        "original_value": b"\x00\x01",
        "original_reference": None,
        "source_topic": "frames",
        "source_partition": 0,
        "source_offset": 42,
        "time_ms": 1_700_000_000_000,
        "service": "worker/host-1",
    }
