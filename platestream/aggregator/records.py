"""A closed group as an alpr_group record: the plate voted over all reads, path, direction."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from platestream.aggregator.grouping import Group, GroupingConfig, Read

RANK_DECAY = 0.5  # a reading's weight halves with each rank down a read's candidate list
TEMPLATE_BONUS = 1.2


def vote(reads: list[Read], topn: int = 10) -> list[tuple[str, float, bool]]:
    """Plate numbers by weighted vote, best first: each read gives each of its candidates its
    confidence, halved per rank, a fifth more when it fits a template. The confidence reported is
    the vote's share of the reads, scaled to 0-100."""
    scores: dict[str, float] = defaultdict(float)
    template: dict[str, bool] = {}
    for read in reads:
        ranked = read.candidates or ((read.plate, read.confidence, False),)
        for rank, (plate, confidence, matches) in enumerate(ranked):
            weight = (confidence / 100) * RANK_DECAY**rank * (TEMPLATE_BONUS if matches else 1.0)
            scores[plate] += weight
            template[plate] = template.get(plate, False) or matches
    ordered = sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:topn]
    return [(plate, round(min(100.0, 100 * score / len(reads)), 3), template[plate]) for plate, score in ordered]


def travel_direction(reads: list[Read]) -> float:
    """Degrees of the plate's path across the image: 0 rightwards, 90 upwards (image y grows down)."""
    ordered = sorted(reads, key=lambda read: read.epoch_ms)
    (x0, y0), (x1, y1) = ordered[0].center, ordered[-1].center
    if (x0, y0) == (x1, y1):
        return 0.0
    return round(math.degrees(math.atan2(y0 - y1, x1 - x0)) % 360, 1)


def is_parked(reads: list[Read], config: GroupingConfig) -> bool:
    ordered = sorted(reads, key=lambda read: read.epoch_ms)
    span = ordered[-1].epoch_ms - ordered[0].epoch_ms
    width = max(read.box[2] for read in ordered)
    (x0, y0), (x1, y1) = ordered[0].center, ordered[-1].center
    return span >= config.parked_min_ms and math.hypot(x1 - x0, y1 - y0) < config.parked_motion * width


def vehicle_path(reads: list[Read]) -> list[dict[str, int]]:
    """The vehicle's box in each read that has one (the engine's `vehicle_region`), in time order."""
    path = []
    for read in reads:
        region = read.result.get("vehicle_region")
        if region:
            path.append({"x": int(region["x"]), "y": int(region["y"]), "w": int(region["width"]),
                         "h": int(region["height"]), "t": read.epoch_ms, "f": read.frame_number})  # fmt: skip
    return path


def alpr_group(
    group: Group, config: GroupingConfig, *, country: str | None = None, topn: int = 10,
    gps: tuple[float, float] | None = None,
) -> dict[str, Any]:  # fmt: skip
    reads = sorted(group.reads, key=lambda read: (read.epoch_ms, read.frame_number))
    candidates = vote(reads, topn)
    best_number, best_confidence, matches = candidates[0]
    holders = [read for read in reads if read.plate == best_number] or [
        read for read in reads if any(c[0] == best_number for c in read.candidates)
    ]
    best = max(holders or reads, key=lambda read: read.confidence)
    best_plate = dict(best.result)
    vehicle_crop, best_plate["vehicle_crop_jpeg"] = best_plate.get("vehicle_crop_jpeg"), None  # carried once, below
    if best_plate["plate"] != best_number:  # the vote corrected this read's top reading
        best_plate["plate"] = best_number
    first, last = reads[0], reads[-1]
    return {
        "version": 2,
        "data_type": "alpr_group",
        "epoch_start": first.epoch_ms,
        "epoch_end": last.epoch_ms,
        "frame_start": first.frame_number,
        "frame_end": last.frame_number,
        "camera_id": best.camera_id,
        "agent_uid": best.agent.get("agent_uid"),
        "agent_version": best.agent.get("agent_version"),
        "agent_type": best.agent.get("agent_type"),
        "company_id": best.agent.get("company_id"),
        "country": country,
        "gps_latitude": gps[0] if gps else None,
        "gps_longitude": gps[1] if gps else None,
        "uuids": [read.uuid for read in reads],
        "plate_indexes": [read.plate_index for read in reads],
        "candidates": [{"plate": p, "confidence": c, "matches_template": int(m)} for p, c, m in candidates],
        "best_plate": best_plate,
        "best_plate_number": best_number,
        "best_confidence": best_confidence,
        "best_uuid": best.uuid,
        "best_region": str(best.result.get("region", "")),
        "best_region_confidence": float(best.result.get("region_confidence", 0.0)),
        "best_image_width": best.img_width,
        "best_image_height": best.img_height,
        "matches_template": matches,
        "travel_direction": travel_direction(reads),
        "is_parked": is_parked(reads, config),
        "vehicle_crop_jpeg": vehicle_crop,
        "vehicle": None,
        "plate_path": [
            {"x": r.box[0], "y": r.box[1], "w": r.box[2], "h": r.box[3], "t": r.epoch_ms, "f": r.frame_number}
            for r in reads
        ],
        "vehicle_path": vehicle_path(reads),
    }
