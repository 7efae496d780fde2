"""One connection to the store's database, SQLite or PostgreSQL, for the parts that read and write
beside the store writer (the console, the alert matcher). SQL is written once with `?` marks and
SQLite's types; PostgreSQL gets `%s` marks, BYTEA, DOUBLE PRECISION and BIGINT."""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from platestream.errors import MissingExtraError
from platestream.settings import StoreLocation

_PG_TYPES = (("BLOB", "BYTEA"), ("REAL", "DOUBLE PRECISION"), ("INTEGER", "BIGINT"))


class Database:
    def __init__(self, location: StoreLocation) -> None:
        self._lock = threading.RLock()  # one statement at a time on the one connection
        self._conn: Any
        if location.postgres_dsn is not None:
            try:
                import psycopg
            except ImportError:
                raise MissingExtraError("psycopg", "postgres") from None
            self.dialect = "postgres"
            self._conn = psycopg.connect(location.postgres_dsn.get_secret_value(), autocommit=True)
        else:
            self.dialect = "sqlite"
            path: Path = location.database
            path.parent.mkdir(parents=True, exist_ok=True)
            # Used from a web server's worker threads, one statement at a time (the lock).
            self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA foreign_keys=ON")

    def _sql(self, sql: str) -> str:
        if self.dialect == "sqlite":
            return sql
        return sql.replace("?", "%s")

    def script(self, ddl: str) -> None:
        """Create tables and indexes (statements separated by `;`)."""
        if self.dialect == "postgres":
            for old, new in _PG_TYPES:
                ddl = re.sub(rf"\b{old}\b", new, ddl)
        with self.transaction():
            for statement in (part.strip() for part in ddl.split(";")):
                if statement:
                    self._conn.execute(statement)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            if self.dialect == "postgres":
                with self._conn.transaction():
                    yield
                return
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Execute one statement; the rows it changed."""
        with self._lock:
            return int(self._conn.execute(self._sql(sql), tuple(params)).rowcount)

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            found = self._conn.execute(self._sql(sql), tuple(params)).fetchall()
        return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in found]

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        found = self.rows(sql, params)
        return found[0] if found else None

    def close(self) -> None:
        with self._lock:
            self._conn.close()
