"""Alert lists, their audit trail and the alerts raised, kept in the store's database."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from platestream.aggregator.stores.database import Database
from platestream.alerts.matching import AlertList, Entry, normalize_plate
from platestream.errors import PlatestreamError

SCHEMA = """
CREATE TABLE IF NOT EXISTS alert_lists (
    name TEXT PRIMARY KEY,
    lookalike INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    created_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS alert_entries (
    list_name TEXT NOT NULL REFERENCES alert_lists (name) ON DELETE CASCADE,
    plate TEXT NOT NULL,
    description TEXT NOT NULL,
    PRIMARY KEY (list_name, plate)
);
CREATE TABLE IF NOT EXISTS alert_audit (
    at_ms INTEGER NOT NULL,
    username TEXT NOT NULL,
    action TEXT NOT NULL,
    list_name TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_audit_time ON alert_audit (at_ms);
CREATE TABLE IF NOT EXISTS alerts (
    alert_id TEXT PRIMARY KEY,
    raised_ms INTEGER NOT NULL,
    epoch_time INTEGER NOT NULL,
    list_name TEXT NOT NULL,
    plate TEXT NOT NULL,
    pass_id TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_raised ON alerts (raised_ms)
"""

MAX_LIST_NAME = 80


class AlertListError(PlatestreamError):
    """A change to an alert list that cannot be made (a clear message for the person who asked)."""


@dataclass(frozen=True)
class AuditLine:
    at_ms: int
    username: str
    action: str
    list_name: str
    detail: str


@dataclass(frozen=True)
class ListSummary:
    name: str
    lookalike: bool
    entries: int
    created_by: str


class AlertStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        db.script(SCHEMA)

    # Lists and entries; every change is audited in the same transaction.

    def create_list(self, name: str, *, lookalike: bool, user: str) -> None:
        name = name.strip()
        if not name or len(name) > MAX_LIST_NAME:
            raise AlertListError(f"a list needs a name of 1 to {MAX_LIST_NAME} characters")
        with self.db.transaction():
            if self.db.one("SELECT 1 FROM alert_lists WHERE name = ?", (name,)):
                raise AlertListError(f"there is already a list named {name!r}")
            self.db.run("INSERT INTO alert_lists VALUES (?, ?, ?, ?)", (name, int(lookalike), _now_ms(), user))
            self._audit(user, "create_list", name, "look-alikes match" if lookalike else "exact matches only")

    def delete_list(self, name: str, *, user: str) -> None:
        with self.db.transaction():
            self._require(name)
            self.db.run("DELETE FROM alert_entries WHERE list_name = ?", (name,))
            self.db.run("DELETE FROM alert_lists WHERE name = ?", (name,))
            self._audit(user, "delete_list", name, "")

    def add_entries(self, entries: Sequence[Entry], *, user: str, create_missing: bool = False) -> int:
        """Add or update entries (plates already listed get the new description); the count."""
        with self.db.transaction():
            for list_name in sorted({entry.list_name for entry in entries}):
                if create_missing and not self.db.one("SELECT 1 FROM alert_lists WHERE name = ?", (list_name,)):
                    if not list_name or len(list_name) > MAX_LIST_NAME:
                        raise AlertListError(f"a list needs a name of 1 to {MAX_LIST_NAME} characters")
                    self.db.run("INSERT INTO alert_lists VALUES (?, ?, ?, ?)", (list_name, 0, _now_ms(), user))
                    self._audit(user, "create_list", list_name, "made by an upload; exact matches only")
                self._require(list_name)
            for entry in entries:
                self.db.run(
                    "DELETE FROM alert_entries WHERE list_name = ? AND plate = ?", (entry.list_name, entry.plate)
                )
                self.db.run(
                    "INSERT INTO alert_entries VALUES (?, ?, ?)", (entry.list_name, entry.plate, entry.description)
                )
            for list_name in sorted({entry.list_name for entry in entries}):
                plates = [entry.plate for entry in entries if entry.list_name == list_name]
                shown = ", ".join(plates[:20]) + (f" and {len(plates) - 20} more" if len(plates) > 20 else "")
                self._audit(user, "add_entries", list_name, f"{len(plates)}: {shown}")
        return len(entries)

    def remove_entry(self, list_name: str, plate: str, *, user: str) -> None:
        plate = normalize_plate(plate)
        with self.db.transaction():
            self._require(list_name)
            if not self.db.run("DELETE FROM alert_entries WHERE list_name = ? AND plate = ?", (list_name, plate)):
                raise AlertListError(f"{plate} is not on {list_name!r}")
            self._audit(user, "remove_entry", list_name, plate)

    def _require(self, name: str) -> None:
        if not self.db.one("SELECT 1 FROM alert_lists WHERE name = ?", (name,)):
            raise AlertListError(f"no alert list named {name!r}")

    def _audit(self, user: str, action: str, list_name: str, detail: str) -> None:
        self.db.run("INSERT INTO alert_audit VALUES (?, ?, ?, ?, ?)", (_now_ms(), user, action, list_name, detail))

    # Reading lists.

    def summaries(self) -> list[ListSummary]:
        rows = self.db.rows(
            "SELECT l.name, l.lookalike, l.created_by, COUNT(e.plate) FROM alert_lists l "
            "LEFT JOIN alert_entries e ON e.list_name = l.name "
            "GROUP BY l.name, l.lookalike, l.created_by ORDER BY l.name"
        )
        return [ListSummary(name, bool(lookalike), int(count), by) for name, lookalike, by, count in rows]

    def entries(self, list_name: str, limit: int = 500) -> list[Entry]:
        rows = self.db.rows(
            "SELECT plate, description FROM alert_entries WHERE list_name = ? ORDER BY plate LIMIT ?",
            (list_name, limit),
        )
        return [Entry(list_name, plate, description) for plate, description in rows]

    def lists(self) -> list[AlertList]:
        """Every list with all its entries, for the matcher."""
        entries: dict[str, list[Entry]] = {}
        for list_name, plate, description in self.db.rows("SELECT list_name, plate, description FROM alert_entries"):
            entries.setdefault(list_name, []).append(Entry(list_name, plate, description))
        return [AlertList(name, bool(lookalike), tuple(entries.get(name, ())))
                for name, lookalike in self.db.rows("SELECT name, lookalike FROM alert_lists")]  # fmt: skip

    def revision(self) -> tuple[int, int]:
        """Changes to the lists so far (every change is audited): the matcher reloads when it moves."""
        row = self.db.one("SELECT COUNT(*), MAX(at_ms) FROM alert_audit")
        return (int(row[0]), int(row[1] or 0)) if row else (0, 0)

    def audit(self, limit: int = 200) -> list[AuditLine]:
        rows = self.db.rows(
            "SELECT at_ms, username, action, list_name, detail FROM alert_audit ORDER BY at_ms DESC LIMIT ?", (limit,)
        )
        return [AuditLine(*row) for row in rows]

    # Alerts raised by the matcher.

    def write_alerts(self, records: Iterable[Mapping[str, Any]]) -> None:
        """By alert id: a batch written again after a crash changes nothing (not even when it was
        raised, so the console does not announce it twice)."""
        now = _now_ms()
        rows = [(r["alert_id"], now, r["epoch_time"], r["list_name"], r["entry"]["plate"], r["pass"]["pass_id"],
                 json.dumps(r, default=str)) for r in records]  # fmt: skip
        with self.db.transaction():
            for row in rows:
                self.db.run("INSERT INTO alerts VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (alert_id) DO NOTHING", row)

    def recent_alerts(self, *, raised_after_ms: int = 0, limit: int = 50) -> list[tuple[int, dict[str, Any]]]:
        """(when raised, the alert record), the latest raised first: a backfill's alerts of old
        passes are as new as any."""
        rows = self.db.rows(
            "SELECT raised_ms, record FROM alerts WHERE raised_ms > ? ORDER BY raised_ms DESC, alert_id LIMIT ?",
            (raised_after_ms, limit),
        )
        return [(int(raised), json.loads(record)) for raised, record in rows]


def _now_ms() -> int:
    return int(time.time() * 1000)
