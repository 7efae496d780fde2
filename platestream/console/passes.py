"""The console's reads of the stored vehicle passes: newest first by keyset (no OFFSET, so page
10,000 costs what page 1 costs), search, one pass, its crops, the cameras."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from platestream.aggregator.similarity import one_edit_keys, within
from platestream.aggregator.stores.database import Database
from platestream.alerts.matching import normalize_plate


@dataclass(frozen=True)
class PassRow:
    group_id: str
    camera_id: str
    plate: str
    confidence: float
    epoch_start: int
    epoch_end: int
    region: str
    reads: int
    direction: float
    has_plate_crop: bool
    distance: float | None = None  # search only: how far the matched reading is from the query
    matched: str | None = None


@dataclass(frozen=True)
class Cursor:
    """Where a page ended: the next page starts strictly before it."""

    epoch_start: int
    group_id: str

    def text(self) -> str:
        return f"{self.epoch_start}:{self.group_id}"

    @staticmethod
    def parse(text: str | None) -> Cursor | None:
        if not text or ":" not in text:
            return None
        epoch, _, group = text.partition(":")
        return Cursor(int(epoch), group) if epoch.lstrip("-").isdigit() else None


_COLUMNS = (
    "g.group_id, g.camera_id, g.plate, g.confidence, g.epoch_start, g.epoch_end, g.region, g.record, "
    "i.plate_jpeg IS NOT NULL"
)


def _pass(row: tuple[Any, ...], distance: float | None = None, matched: str | None = None) -> PassRow:
    group_id, camera, plate, confidence, start, end, region, record, has_crop = row
    data = json.loads(record) if isinstance(record, str) else record
    reads, direction = len(data.get("uuids") or []), float(data.get("travel_direction") or 0.0)
    return PassRow(group_id, camera, plate, float(confidence), int(start), int(end), region, reads, direction,
                   bool(has_crop), distance, matched)  # fmt: skip


class Passes:
    def __init__(self, db: Database) -> None:
        self.db = db

    def recent(
        self, *, before: Cursor | None = None, after_ms: int | None = None, camera: str | None = None,
        since_ms: int | None = None, until_ms: int | None = None, limit: int = 50,
    ) -> list[PassRow]:  # fmt: skip
        """Newest first; `before` continues a page, `after_ms` gives only what arrived since."""
        conditions, params = [], []
        if before is not None:
            # A row value: both SQLite and PostgreSQL seek the (epoch_start, group_id) index to it,
            # where the equivalent OR scans the index from the newest row down.
            conditions.append("(g.epoch_start, g.group_id) < (?, ?)")
            params += [before.epoch_start, before.group_id]
        if after_ms is not None:
            conditions.append("g.epoch_start > ?")
            params.append(after_ms)
        if camera:
            conditions.append("g.camera_id = ?")
            params.append(camera)
        if since_ms is not None:
            conditions.append("g.epoch_start >= ?")
            params.append(since_ms)
        if until_ms is not None:
            conditions.append("g.epoch_start <= ?")
            params.append(until_ms)
        where = f"WHERE {' AND '.join(conditions)} " if conditions else ""
        rows = self.db.rows(
            f"SELECT {_COLUMNS} FROM plate_groups g LEFT JOIN pass_images i ON i.group_id = g.group_id "
            f"{where}ORDER BY g.epoch_start DESC, g.group_id DESC LIMIT ?",
            [*params, limit],
        )
        return [_pass(row) for row in rows]

    def search(
        self, plate: str, *, fuzzy: bool = True, camera: str | None = None, since_ms: int | None = None,
        until_ms: int | None = None, limit: int = 100,
    ) -> list[PassRow]:  # fmt: skip
        """Passes whose plate or a candidate reading is `plate`; fuzzy: within one edit, look-alike
        swaps (B/8, O/0 ...) counting as close. Closest first, then newest."""
        wanted = normalize_plate(plate)
        if not wanted:
            return []
        if fuzzy:
            keys = sorted(one_edit_keys(wanted))
            conditions, params = [f"c.plate_key IN ({', '.join('?' * len(keys))})"], list[Any](keys)
        else:
            conditions, params = ["c.plate = ?"], [wanted]
        for clause, value in (("g.camera_id = ?", camera), ("g.epoch_start >= ?", since_ms),
                              ("g.epoch_start <= ?", until_ms)):  # fmt: skip
            if value:
                conditions.append(clause)
                params.append(value)
        rows = self.db.rows(
            f"SELECT {_COLUMNS}, c.plate FROM plate_candidates c JOIN plate_groups g ON g.group_id = c.group_id "
            f"LEFT JOIN pass_images i ON i.group_id = g.group_id WHERE {' AND '.join(conditions)} "
            f"ORDER BY g.epoch_start DESC LIMIT ?",
            [*params, 20 * limit],
        )
        best: dict[str, PassRow] = {}
        for row in rows:
            reading = row[-1]
            distance = within(wanted, reading, 1.0) if fuzzy else (0.0 if reading == wanted else None)
            if distance is None:
                continue
            held = best.get(row[0])
            if held is None or (held.distance is not None and distance < held.distance):
                best[row[0]] = _pass(row[:-1], distance, reading)
        return sorted(best.values(), key=lambda p: (p.distance or 0.0, -p.epoch_start))[:limit]

    def one(self, group_id: str) -> dict[str, Any] | None:
        """The pass's alpr_group record (crops kept apart)."""
        row = self.db.one("SELECT record FROM plate_groups WHERE group_id = ?", (group_id,))
        if row is None:
            return None
        record = row[0]
        return json.loads(record) if isinstance(record, str) else dict(record)

    def image(self, group_id: str, which: str) -> bytes | None:
        column = {"plate": "plate_jpeg", "vehicle": "vehicle_jpeg"}[which]
        row = self.db.one(f"SELECT {column} FROM pass_images WHERE group_id = ?", (group_id,))
        return bytes(row[0]) if row and row[0] is not None else None

    def cameras(self, *, now_ms: int) -> list[tuple[str, int, int]]:
        """Each camera: its last pass (ms) and its passes in the last hour."""
        rows = self.db.rows(
            "SELECT camera_id, MAX(epoch_start), SUM(CASE WHEN epoch_start >= ? THEN 1 ELSE 0 END) "
            "FROM plate_groups GROUP BY camera_id ORDER BY camera_id",
            (now_ms - 3_600_000,),
        )
        return [(str(camera), int(last), int(hour or 0)) for camera, last, hour in rows]
