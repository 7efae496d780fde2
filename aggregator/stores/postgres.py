"""PostgreSQL store, when configured (`PLATESTREAM_POSTGRES_DSN`): the same tables and search as
SQLite, for many writers and readers. Needs `platestream[postgres]`."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from aggregator.similarity import canonical
from aggregator.stores.matching import Match, normalize_query, rank
from aggregator.stores.sqlite import group_id
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
CREATE INDEX IF NOT EXISTS plate_candidates_length ON plate_candidates (length(plate));
"""


class PostgresStore:
    name = "postgres"

    def __init__(self, dsn: str) -> None:
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
                gid = group_id(record)
                cursor.execute(
                    "INSERT INTO plate_groups VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (group_id) DO "
                    "UPDATE SET plate = EXCLUDED.plate, plate_key = EXCLUDED.plate_key, confidence = "
                    "EXCLUDED.confidence, epoch_end = EXCLUDED.epoch_end, record = EXCLUDED.record",
                    (gid, str(record["camera_id"]), record["best_plate_number"], canonical(record["best_plate_number"]),
                     record["best_confidence"], record["epoch_start"], record["epoch_end"], record["best_region"],
                     json.dumps(record, default=str)),
                )  # fmt: skip
                cursor.executemany(
                    "INSERT INTO plate_candidates VALUES (%s, %s, %s, %s) ON CONFLICT (group_id, plate) DO UPDATE "
                    "SET confidence = EXCLUDED.confidence",
                    [(gid, c["plate"], canonical(c["plate"]), c["confidence"]) for c in record["candidates"]],
                )

    def search(
        self, plate: str, *, camera_id: str | None = None, since_ms: int | None = None, fuzzy: bool = True,
        limit: int = 100,
    ) -> list[Match]:  # fmt: skip
        wanted = normalize_query(plate)
        conditions = ["length(c.plate) BETWEEN %s AND %s" if fuzzy else "c.plate = %s"]
        params: list[Any] = [len(wanted) - 1, len(wanted) + 1] if fuzzy else [wanted]
        if camera_id is not None:
            conditions.append("g.camera_id = %s")
            params.append(camera_id)
        if since_ms is not None:
            conditions.append("g.epoch_start >= %s")
            params.append(since_ms)
        query = (
            "SELECT g.plate, c.plate, g.camera_id, g.epoch_start, g.epoch_end, g.confidence, g.region "
            "FROM plate_candidates c JOIN plate_groups g USING (group_id) WHERE " + " AND ".join(conditions)
        )
        with self._db.transaction():
            rows = self._db.execute(query, params).fetchall()
        return rank(wanted, rows, fuzzy=fuzzy, limit=limit)

    def close(self) -> None:
        self._db.close()
