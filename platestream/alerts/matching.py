"""Alert lists and the matching of vehicle passes against them (pure: no Kafka, no database).

A pass matches an entry when its best plate is the listed plate (`exact`), when another of its
top-N readings is (`candidate`: the plate was misread but the truth was a close second), or, on a
list that allows it, when a reading is one look-alike swap away from the listed plate (`lookalike`:
8 for B, 0 for O ...). Each (pass, list, entry) gives one alert, by its closest match.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from platestream.aggregator.similarity import LOOKALIKE_COST, canonical, within
from platestream.aggregator.stores.matching import pass_id

MAX_PLATE_LENGTH = 12
MAX_DESCRIPTION_LENGTH = 500


@dataclass(frozen=True)
class Entry:
    list_name: str
    plate: str
    description: str = ""


@dataclass(frozen=True)
class AlertList:
    name: str
    lookalike: bool  # also match readings one look-alike swap away
    entries: tuple[Entry, ...]


@dataclass(frozen=True)
class Hit:
    entry: Entry
    how: str  # exact | candidate | lookalike
    reading: str
    confidence: float
    distance: float


def normalize_plate(text: str) -> str:
    """A plate as lists and searches keep it: upper case, no spaces, dashes or dots."""
    return "".join(char for char in text.upper() if char.isalnum())


class Matcher:
    """Every list's entries, indexed by plate and by look-alike key, so that a pass costs a few
    dictionary look-ups whatever the lists' size."""

    def __init__(self, lists: Iterable[AlertList]) -> None:
        self.exact: dict[str, list[Entry]] = defaultdict(list)
        self.lookalike: dict[str, list[Entry]] = defaultdict(list)
        self.entries = 0
        for alert_list in lists:
            for entry in alert_list.entries:
                self.entries += 1
                self.exact[entry.plate].append(entry)
                if alert_list.lookalike:
                    self.lookalike[canonical(entry.plate)].append(entry)

    def match(self, group: Mapping[str, Any]) -> list[Hit]:
        """The alerts of one alpr_group record, one per matched entry, in list and plate order."""
        best_plate = str(group["best_plate_number"])
        readings = [(best_plate, float(group["best_confidence"]))]
        readings += [(str(c["plate"]), float(c["confidence"])) for c in group.get("candidates") or []
                     if c["plate"] != best_plate]  # fmt: skip
        hits: dict[Entry, Hit] = {}
        for reading, confidence in readings:
            for entry in self.exact.get(reading, ()):
                how = "exact" if reading == best_plate else "candidate"
                _keep(hits, Hit(entry, how, reading, confidence, 0.0))
            for entry in self.lookalike.get(canonical(reading), ()):
                distance = within(entry.plate, reading, LOOKALIKE_COST)
                if distance is not None and distance > 0:
                    _keep(hits, Hit(entry, "lookalike", reading, confidence, distance))
        return sorted(hits.values(), key=lambda hit: (hit.entry.list_name, hit.entry.plate))


_RANK = {"exact": 0, "candidate": 1, "lookalike": 2}


def _keep(hits: dict[Entry, Hit], hit: Hit) -> None:
    held = hits.get(hit.entry)
    if held is None or (_RANK[hit.how], hit.distance, -hit.confidence) < (
        _RANK[held.how],
        held.distance,
        -held.confidence,
    ):
        hits[hit.entry] = hit


def alert_record(group: Mapping[str, Any], hit: Hit) -> dict[str, Any]:
    """The `alerts` record of one hit (schemas/alerts.avsc)."""
    identity = pass_id(group)
    return {
        "alert_id": f"{identity}|{hit.entry.list_name}|{hit.entry.plate}",
        "data_type": "alpr_alert",
        "epoch_time": int(group["epoch_end"]),
        "list_name": hit.entry.list_name,
        "entry": {"plate": hit.entry.plate, "description": hit.entry.description},
        "match": {"how": hit.how, "reading": hit.reading, "confidence": hit.confidence, "distance": hit.distance},
        "pass": {
            "pass_id": identity,
            "camera_id": group["camera_id"],
            "best_plate_number": group["best_plate_number"],
            "best_confidence": float(group["best_confidence"]),
            "best_region": str(group.get("best_region") or ""),
            "epoch_start": int(group["epoch_start"]),
            "epoch_end": int(group["epoch_end"]),
            "best_uuid": str(group["best_uuid"]),
            "uuids": [str(uuid) for uuid in group["uuids"]],
            "travel_direction": float(group.get("travel_direction") or 0.0),
        },
    }


@dataclass(frozen=True)
class CsvProblem:
    line: int
    text: str
    reason: str


def parse_entries_csv(text: str, default_list: str) -> tuple[list[Entry], list[CsvProblem]]:
    """Entries from CSV lines `plate,description,list` (description and list optional; a header
    line naming `plate` is skipped). Each bad line is reported by its number; the others are kept."""
    entries: list[Entry] = []
    problems: list[CsvProblem] = []
    seen: set[tuple[str, str]] = set()
    for number, raw in enumerate(text.splitlines(), 1):  # one record per line: numbers stay exact
        try:
            row = next(csv.reader([raw]), [])
        except csv.Error as error:
            problems.append(CsvProblem(number, raw[:200], f"not CSV: {error}"))
            continue
        if not row or all(not cell.strip() for cell in row):
            continue
        if number == 1 and row[0].strip().lower() == "plate":
            continue
        problem = _check_row(row)
        if problem:
            problems.append(CsvProblem(number, raw[:200], problem))
            continue
        plate = normalize_plate(row[0])
        description = row[1].strip() if len(row) > 1 else ""
        list_name = (row[2].strip() if len(row) > 2 else "") or default_list
        if (list_name, plate) in seen:
            problems.append(CsvProblem(number, raw[:200], f"{plate} is already listed above in {list_name!r}"))
            continue
        seen.add((list_name, plate))
        entries.append(Entry(list_name, plate, description))
    return entries, problems


def _check_row(row: list[str]) -> str | None:
    if len(row) > 3:
        return f"{len(row)} fields: expected plate,description,list"
    plate = normalize_plate(row[0])
    if not plate:
        return "no plate: the first field must hold letters or digits"
    if len(plate) > MAX_PLATE_LENGTH:
        return f"plate {plate[:20]!r} is longer than {MAX_PLATE_LENGTH} characters"
    if not plate.isascii():
        return f"plate {plate!r} holds characters other than A-Z and 0-9"
    if len(row) > 1 and len(row[1]) > MAX_DESCRIPTION_LENGTH:
        return f"description longer than {MAX_DESCRIPTION_LENGTH} characters"
    return None
