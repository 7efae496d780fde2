"""Synthetic traffic for tests and benchmarks: vehicles passing cameras, read frame by frame with
misreads, dropped frames and vehicles in view together. Deterministic for a seed."""

from __future__ import annotations

import random
import string
from dataclasses import dataclass
from typing import Any

LOOKALIKE = {"0": "O", "O": "0", "1": "I", "I": "1", "8": "B", "B": "8", "5": "S", "S": "5", "2": "Z", "Z": "2"}


@dataclass(frozen=True)
class Pass:
    plate: str
    camera_id: int
    start_ms: int
    frames: int
    x0: float
    y0: float
    vx: float  # pixels per ms
    vy: float


def random_plate(rng: random.Random) -> str:
    letters, digits = string.ascii_uppercase, string.digits
    return "".join(rng.choice(letters) for _ in range(3)) + "".join(rng.choice(digits) for _ in range(4))


def misread(plate: str, rng: random.Random) -> str:
    position = rng.randrange(len(plate))
    if rng.random() < 0.3:  # a character lost at the plate's edge
        return plate[1:] if position < len(plate) / 2 else plate[:-1]
    char = plate[position]
    other = LOOKALIKE.get(char) or rng.choice(string.ascii_uppercase + string.digits)
    return plate[:position] + other + plate[position + 1 :]


def passes(count: int, *, cameras: int = 1, seed: int = 0, gap_ms: int = 1500, frame_ms: int = 100) -> list[Pass]:
    """`count` vehicles, a new one every ~`gap_ms` per camera, some overlapping in time."""
    rng = random.Random(seed)
    result = []
    clock = {camera: 1_700_000_000_000 for camera in range(cameras)}
    for _ in range(count):
        camera = rng.randrange(cameras)
        clock[camera] += int(rng.uniform(0.3, 1.7) * gap_ms)
        frames = rng.randint(6, 30)
        left_to_right = rng.random() < 0.5
        x0 = 100.0 if left_to_right else 1100.0
        result.append(Pass(random_plate(rng), camera, clock[camera], frames, x0, rng.uniform(300, 500),
                           (1 if left_to_right else -1) * rng.uniform(0.2, 0.6) * 1000 / (frames * frame_ms) * 1.5,
                           rng.uniform(-0.05, 0.05)))  # fmt: skip
    return result


def frames_of(
    vehicles: list[Pass],
    *,
    seed: int = 0,
    frame_ms: int = 100,
    misread_rate: float = 0.2,
    drop_rate: float = 0.1,
    confidence: float = 90.0,
) -> tuple[list[dict[str, Any]], dict[tuple[str, int], int]]:
    """The alpr_results records the cameras would produce, in capture-time order, and which
    vehicle (index into `vehicles`) each (uuid, plate_index) read belongs to."""
    rng = random.Random(seed)
    by_frame: dict[tuple[int, int], list[dict[str, Any]]] = {}
    owner: dict[tuple[int, int], list[int]] = {}
    for number, vehicle in enumerate(vehicles):
        for i in range(vehicle.frames):
            if rng.random() < drop_rate:
                continue
            t = vehicle.start_ms + i * frame_ms
            t -= t % frame_ms
            x = vehicle.x0 + vehicle.vx * i * frame_ms
            y = vehicle.y0 + vehicle.vy * i * frame_ms
            text = misread(vehicle.plate, rng) if rng.random() < misread_rate else vehicle.plate
            candidates = [text, *({vehicle.plate} - {text})] if rng.random() < 0.5 else [text]
            result = {
                "plate": text,
                "confidence": confidence + rng.uniform(-5, 8),
                "matches_template": 1,
                "plate_index": 0,
                "region": "us-ca",
                "region_confidence": 80.0,
                "processing_time_ms": 50.0,
                "requested_topn": 10,
                "coordinates": [{"x": int(x), "y": int(y)}, {"x": int(x) + 120, "y": int(y)},
                                {"x": int(x) + 120, "y": int(y) + 40}, {"x": int(x), "y": int(y) + 40}],
                "candidates": [{"plate": c, "confidence": confidence - 10 * k, "matches_template": 1}
                               for k, c in enumerate(candidates)],
                "plate_crop_jpeg": None,
                "vehicle_region": None,
            }  # fmt: skip
            by_frame.setdefault((vehicle.camera_id, t), []).append(result)
            owner.setdefault((vehicle.camera_id, t), []).append(number)
    records = []
    truth: dict[tuple[str, int], int] = {}
    for (camera, t), results in sorted(by_frame.items(), key=lambda item: (item[0][1], item[0][0])):
        for index, result in enumerate(results):
            result["plate_index"] = index
            truth[(f"sim-{camera}-{t}", index)] = owner[(camera, t)][index]
        records.append(
            {
                "version": 2,
                "data_type": "alpr_results",
                "epoch_time": t,
                "img_width": 1280,
                "img_height": 720,
                "processing_time_ms": 60.0,
                "regions_of_interest": [],
                "results": results,
                "uuid": f"sim-{camera}-{t}",
                "camera_id": camera,
                "agent_uid": "sim",
                "agent_version": "0",
                "agent_type": "platestream-worker",
                "company_id": None,
                "error": False,
                "frame_number": (t - 1_700_000_000_000) // frame_ms,
                "request_id": None,
            }
        )
    return records, truth
