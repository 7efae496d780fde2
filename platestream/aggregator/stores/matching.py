"""Ranking search hits, the same for every store (pure)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from platestream.aggregator.similarity import canonical, one_edit_keys, within


@dataclass(frozen=True)
class Match:
    plate: str
    matched: str  # the reading that matched: the best plate or one of the candidates
    exact: bool
    distance: float  # 0 exact; 0.3 per look-alike swap; 1 per other edit
    camera_id: str
    epoch_start: int
    epoch_end: int
    confidence: float
    region: str


IMAGE_MAX_BYTES = 262_144  # a pass's crops together; the vehicle crop goes first above it

Row = tuple[str, str, str, int, int, float, str]  # plate, reading, camera, start, end, confidence, region


def group_row(record: Mapping[str, Any]) -> tuple[Any, ...]:
    """The plate_groups row of an alpr_group record (group_id first), for every store. The crops
    are kept apart (image_row), not in the record's JSON."""
    plate = record["best_plate_number"]
    return (pass_id(record), str(record["camera_id"]), plate, canonical(plate),
            record["best_confidence"], record["epoch_start"], record["epoch_end"], record["best_region"],
            json.dumps(without_crops(record), default=str))  # fmt: skip


def pass_id(record: Mapping[str, Any]) -> str:
    """A vehicle pass's identity in every store: its first frame's uuid and plate index."""
    return f"{record['uuids'][0]}/{record['plate_indexes'][0]}"


def without_crops(record: Mapping[str, Any]) -> dict[str, Any]:
    kept = dict(record)
    kept["vehicle_crop_jpeg"] = None
    if isinstance(kept.get("best_plate"), Mapping):
        kept["best_plate"] = {**kept["best_plate"], "plate_crop_jpeg": None, "vehicle_crop_jpeg": None}
    return kept


def image_row(
    group_id: str, record: Mapping[str, Any], max_bytes: int
) -> tuple[str, int, bytes | None, bytes | None] | None:
    """The pass_images row of a group: its best read's plate and vehicle crops as JPEG bytes, at most
    `max_bytes` together (the vehicle crop is left out first); None when it has neither."""
    best = record.get("best_plate") or {}
    plate, vehicle = _jpeg(best.get("plate_crop_jpeg")), _jpeg(record.get("vehicle_crop_jpeg"))
    if len(plate or b"") + len(vehicle or b"") > max_bytes:
        vehicle = None
    if len(plate or b"") > max_bytes:
        plate = None
    if plate is None and vehicle is None:
        return None
    return group_id, int(record["epoch_start"]), plate, vehicle


def _jpeg(text: Any) -> bytes | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None  # not base64: no image rather than a broken one
    return data if data[:2] == b"\xff\xd8" else None


def candidate_rows(group_id: str, record: Mapping[str, Any]) -> list[tuple[str, str, str, float]]:
    return [(group_id, c["plate"], canonical(c["plate"]), c["confidence"]) for c in record["candidates"]]


def search_query(
    wanted: str, *, camera_id: str | None, since_ms: int | None, fuzzy: bool, mark: str
) -> tuple[str, list[Any]]:
    """The SQL (with `mark` as the parameter placeholder) that pre-selects search hits through the
    readings' key index: the keys within one edit when fuzzy (rank() then keeps those truly within
    distance 1), the exact reading otherwise."""
    if fuzzy:
        keys = sorted(one_edit_keys(wanted))
        conditions = [f"c.plate_key IN ({', '.join([mark] * len(keys))})"]
        params: list[Any] = list(keys)
    else:
        conditions = [f"c.plate = {mark}"]
        params = [wanted]
    if camera_id is not None:
        conditions.append(f"g.camera_id = {mark}")
        params.append(camera_id)
    if since_ms is not None:
        conditions.append(f"g.epoch_start >= {mark}")
        params.append(since_ms)
    query = (
        "SELECT g.plate, c.plate, g.camera_id, g.epoch_start, g.epoch_end, g.confidence, g.region "
        "FROM plate_candidates c JOIN plate_groups g USING (group_id) WHERE " + " AND ".join(conditions)
    )
    return query, params


def normalize_query(plate: str) -> str:
    return plate.upper().replace(" ", "").replace("-", "")


def rank(wanted: str, rows: Iterable[Row], *, fuzzy: bool, limit: int) -> list[Match]:
    """One match per pass (its closest reading), closest first, then newest first."""
    best: dict[tuple[str, int], Match] = {}
    for group_plate, reading, camera, start, end, confidence, region in rows:
        distance = within(wanted, reading, 1.0) if fuzzy else (0.0 if reading == wanted else None)
        if distance is None:
            continue
        match = Match(group_plate, reading, distance == 0, distance, str(camera), start, end, confidence, region)
        key = (match.camera_id, start)
        if key not in best or distance < best[key].distance:
            best[key] = match
    return sorted(best.values(), key=lambda m: (m.distance, -m.epoch_start))[:limit]
