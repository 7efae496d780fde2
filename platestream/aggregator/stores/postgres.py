"""PostgreSQL store, when configured (`PLATESTREAM_POSTGRES_DSN`): the same tables and search as
SQLite, for many writers and readers. Needs `platestream[postgres]`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from platestream.aggregator.stores.matching import (
    IMAGE_MAX_BYTES,
    Match,
    candidate_rows,
    group_row,
    image_row,
    normalize_query,
    rank,
    search_query,
)
from platestream.errors import MissingExtraError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS plate_groups (
    group_id TEXT PRIMARY KEY,
    camera_id TEXT NOT NULL,
    plate TEXT NOT NULL,
    plate_key TEXT NOT NULL,
    confidence DOUBLE PRECISION NOT NULL,
    epoch_start BIGINT NOT NULL,
    epoch_end BIGINT NOT NULL,
    region TEXT NOT NULL,
    record JSONB NOT NULL
);
CREATE INDEX IF NOT EXISTS plate_groups_time ON plate_groups (epoch_start);
CREATE TABLE IF NOT EXISTS plate_candidates (
    group_id TEXT NOT NULL REFERENCES plate_groups (group_id) ON DELETE CASCADE,
    plate TEXT NOT NULL,
    plate_key TEXT NOT NULL,
    confidence DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (group_id, plate)
);
CREATE INDEX IF NOT EXISTS plate_candidates_plate ON plate_candidates (plate);
CREATE INDEX IF NOT EXISTS plate_candidates_key ON plate_candidates (plate_key);
DROP INDEX IF EXISTS plate_candidates_length;
CREATE INDEX IF NOT EXISTS plate_groups_recent ON plate_groups (epoch_start, group_id);
CREATE INDEX IF NOT EXISTS plate_groups_camera ON plate_groups (camera_id, epoch_start);
CREATE TABLE IF NOT EXISTS pass_images (
    group_id TEXT PRIMARY KEY,
    epoch_start BIGINT NOT NULL,
    plate_jpeg BYTEA,
    vehicle_jpeg BYTEA
);
CREATE INDEX IF NOT EXISTS pass_images_time ON pass_images (epoch_start);
"""


class PostgresStore:
    name = "postgres"

    def __init__(self, dsn: str, *, image_max_bytes: int = IMAGE_MAX_BYTES) -> None:
        self.image_max_bytes = image_max_bytes
        try:
            import psycopg
        except ImportError:
            raise MissingExtraError("psycopg", "postgres") from None
        self._db = psycopg.connect(dsn, autocommit=False)
        with self._db.transaction():
            self._db.execute(_SCHEMA)

    def write(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Upsert in one transaction: a replayed group replaces itself."""
        with self._db.transaction(), self._db.cursor() as cursor:
            for record in records:
                row = group_row(record)
                cursor.execute(
                    "INSERT INTO plate_groups VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (group_id) DO "
                    "UPDATE SET plate = EXCLUDED.plate, plate_key = EXCLUDED.plate_key, confidence = "
                    "EXCLUDED.confidence, epoch_end = EXCLUDED.epoch_end, record = EXCLUDED.record",
                    row,
                )
                cursor.executemany(
                    "INSERT INTO plate_candidates VALUES (%s, %s, %s, %s) ON CONFLICT (group_id, plate) DO UPDATE "
                    "SET confidence = EXCLUDED.confidence",
                    candidate_rows(row[0], record),
                )
                images = image_row(row[0], record, self.image_max_bytes)
                if images is not None:
                    cursor.execute(
                        "INSERT INTO pass_images VALUES (%s, %s, %s, %s) ON CONFLICT (group_id) DO UPDATE SET "
                        "plate_jpeg = EXCLUDED.plate_jpeg, vehicle_jpeg = EXCLUDED.vehicle_jpeg",
                        images,
                    )

    def forget_images_before(self, epoch_ms: int) -> int:
        """Delete the crops of passes that started before `epoch_ms` (retention); how many."""
        with self._db.transaction():
            return self._db.execute("DELETE FROM pass_images WHERE epoch_start < %s", (epoch_ms,)).rowcount

    def load_rows(self, groups: Iterable[tuple[Any, ...]], candidates: Iterable[tuple[Any, ...]]) -> None:
        """Bulk-load rows shaped as group_row() and candidate_rows() give them (imports, benchmarks)."""
        with self._db.transaction(), self._db.cursor() as cursor:
            with cursor.copy("COPY plate_groups FROM STDIN") as copy:
                for row in groups:
                    copy.write_row(row)
            with cursor.copy("COPY plate_candidates FROM STDIN") as copy:
                for row in candidates:
                    copy.write_row(row)
        self._db.execute("ANALYZE plate_groups")
        self._db.execute("ANALYZE plate_candidates")
        self._db.commit()

    def search(
        self, plate: str, *, camera_id: str | None = None, since_ms: int | None = None, fuzzy: bool = True,
        limit: int = 100,
    ) -> list[Match]:  # fmt: skip
        wanted = normalize_query(plate)
        query, params = search_query(wanted, camera_id=camera_id, since_ms=since_ms, fuzzy=fuzzy, mark="%s")
        with self._db.transaction():
            rows = self._db.execute(query, params).fetchall()
        return rank(wanted, rows, fuzzy=fuzzy, limit=limit)

    def close(self) -> None:
        self._db.close()
