"""The default store: SQLite, one file, queried by `platestream search`."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from platestream.aggregator.stores.matching import (
    IMAGE_MAX_BYTES,
    Match,
    candidate_rows,
    group_row,
    image_row,
    normalize_query,
    pass_id,
    rank,
    search_query,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS plate_groups (
    group_id TEXT PRIMARY KEY,
    camera_id TEXT NOT NULL,
    plate TEXT NOT NULL,
    plate_key TEXT NOT NULL,
    confidence REAL NOT NULL,
    epoch_start INTEGER NOT NULL,
    epoch_end INTEGER NOT NULL,
    region TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS plate_groups_plate ON plate_groups (plate);
CREATE INDEX IF NOT EXISTS plate_groups_key ON plate_groups (plate_key);
CREATE INDEX IF NOT EXISTS plate_groups_time ON plate_groups (epoch_start);
CREATE TABLE IF NOT EXISTS plate_candidates (
    group_id TEXT NOT NULL REFERENCES plate_groups (group_id) ON DELETE CASCADE,
    plate TEXT NOT NULL,
    plate_key TEXT NOT NULL,
    confidence REAL NOT NULL,
    PRIMARY KEY (group_id, plate)
);
CREATE INDEX IF NOT EXISTS plate_candidates_key ON plate_candidates (plate_key);
CREATE INDEX IF NOT EXISTS plate_candidates_plate ON plate_candidates (plate);
CREATE INDEX IF NOT EXISTS plate_groups_recent ON plate_groups (epoch_start, group_id);
CREATE INDEX IF NOT EXISTS plate_groups_camera ON plate_groups (camera_id, epoch_start);
CREATE TABLE IF NOT EXISTS pass_images (
    group_id TEXT PRIMARY KEY,
    epoch_start INTEGER NOT NULL,
    plate_jpeg BLOB,
    vehicle_jpeg BLOB
);
CREATE INDEX IF NOT EXISTS pass_images_time ON pass_images (epoch_start);
"""


def group_id(record: Mapping[str, Any]) -> str:
    """A vehicle pass's identity: its first frame's uuid and plate index."""
    return pass_id(record)


class SqliteStore:
    name = "sqlite"

    def __init__(self, path: Path, *, image_max_bytes: int = IMAGE_MAX_BYTES) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.image_max_bytes = image_max_bytes
        # Opened where the service is built, written from the thread that runs it (one at a time;
        # Python's sqlite3 is serialized): the default same-thread check would refuse that.
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)

    def write(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Upsert: writing a group again (after a crash before the offsets were committed) is a no-op."""
        with self._db:
            for record in records:
                row = group_row(record)
                self._db.execute("INSERT OR REPLACE INTO plate_groups VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
                self._db.executemany(
                    "INSERT OR REPLACE INTO plate_candidates VALUES (?, ?, ?, ?)", candidate_rows(row[0], record)
                )
                images = image_row(row[0], record, self.image_max_bytes)
                if images is not None:
                    self._db.execute("INSERT OR REPLACE INTO pass_images VALUES (?, ?, ?, ?)", images)

    def forget_images_before(self, epoch_ms: int) -> int:
        """Delete the crops of passes that started before `epoch_ms` (retention); how many."""
        with self._db:
            return self._db.execute("DELETE FROM pass_images WHERE epoch_start < ?", (epoch_ms,)).rowcount

    def load_rows(self, groups: Iterable[tuple[Any, ...]], candidates: Iterable[tuple[Any, ...]]) -> None:
        """Bulk-load rows shaped as group_row() and candidate_rows() give them (imports, benchmarks)."""
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO plate_groups VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", groups)
            self._db.executemany("INSERT OR REPLACE INTO plate_candidates VALUES (?, ?, ?, ?)", candidates)

    def search(
        self, plate: str, *, camera_id: str | None = None, since_ms: int | None = None, fuzzy: bool = True,
        limit: int = 100,
    ) -> list[Match]:  # fmt: skip
        """Groups whose plate or a candidate equals `plate`; with `fuzzy`, also those within one
        edit or look-alike swaps (O/0, B/8, I/1...). Closest first, then newest first."""
        wanted = normalize_query(plate)
        query, params = search_query(wanted, camera_id=camera_id, since_ms=since_ms, fuzzy=fuzzy, mark="?")
        rows = self._db.execute(query, params).fetchall()
        return rank(wanted, rows, fuzzy=fuzzy, limit=limit)

    def close(self) -> None:
        self._db.close()
