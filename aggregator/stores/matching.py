"""Ranking search hits, the same for every store (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from aggregator.similarity import within


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


Row = tuple[str, str, str, int, int, float, str]  # plate, reading, camera, start, end, confidence, region


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
