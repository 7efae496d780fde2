"""What the soak proves, from what was committed: each frame read once, each group sent once,
stored once (SQLite, PostgreSQL, JSON-lines files) and delivered to the webhook (repeats carry the
same Idempotency-Key, for the receiver to drop), and only the injected bad inputs dead-lettered."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from platestream.aggregator.grouping import Grouper, GroupingConfig, reads_from_results
from platestream.aggregator.records import alpr_group
from platestream.soak.traffic import Frame


@dataclass
class Report:
    frames_sent: int
    bad_objects_sent: int
    results: int
    frames_lost: int
    frames_duplicated: int
    groups_expected: int
    groups_sent: int
    groups_lost: int
    groups_duplicated: int
    groups_stored: int
    stored_lost: int
    stored_extra: int
    groups_in_lake: int  # JSON-lines files
    lake_lost: int
    lake_extra: int
    dead_letters: int
    dead_letters_unexpected: int
    vehicles: int
    vehicles_read: int  # a group at the vehicle's camera and time whose best plate is the true one
    groups_in_postgres: int | None = None  # None: no PostgreSQL store in this run
    postgres_lost: int = 0
    postgres_extra: int = 0
    webhook_delivered: int | None = None  # groups, by Idempotency-Key; None: no webhook sender in this run
    webhook_lost: int = 0
    webhook_unknown: int = 0  # deliveries whose key is no group's
    webhook_repeats: int = 0  # at least once: repeats after a crash or a late answer
    faults: dict[str, int] = field(default_factory=dict)
    longest_recovery_s: float = 0.0
    longest_gap_s: float = 0.0
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.frames_lost or self.frames_duplicated or self.groups_lost or self.groups_duplicated
                    or self.stored_lost or self.stored_extra or self.lake_lost or self.lake_extra
                    or self.postgres_lost or self.postgres_extra or self.webhook_lost or self.webhook_unknown
                    or self.dead_letters_unexpected
                    or self.dead_letters != self.bad_objects_sent)  # fmt: skip


def expected_groups(results: Iterable[dict[str, Any]], config: GroupingConfig) -> Counter[tuple[str, ...]]:
    """The groups the committed results make, grouped here, camera by camera in capture order."""
    groupers: dict[int, Grouper] = {}
    groups = []
    for record in sorted(results, key=lambda r: (r["camera_id"], r["epoch_time"])):
        grouper = groupers.setdefault(record["camera_id"], Grouper(config))
        for read in reads_from_results(record):
            groups += grouper.add(read)
    for grouper in groupers.values():
        groups += grouper.close_all()
    return Counter(tuple(alpr_group(group, config)["uuids"]) for group in groups)


def verify(frames: list[Frame], bad_keys: list[str], results: list[dict[str, Any]], groups: list[dict[str, Any]],
           stored: list[dict[str, Any]], lake: list[dict[str, Any]], letters: list[dict[str, Any]],
           config: GroupingConfig, *, postgres: list[dict[str, Any]] | None = None,
           delivered: Counter[str] | None = None) -> Report:  # fmt: skip
    wanted = Counter((frame.camera, frame.capture_ms) for frame in frames)
    seen = Counter((int(r["camera_id"]), int(r["epoch_time"])) for r in results)
    expected = expected_groups(results, config)
    sent = Counter(tuple(group["uuids"]) for group in groups)
    kept = Counter(tuple(group["uuids"]) for group in stored)
    files = Counter(tuple(group["uuids"]) for group in lake)
    references = Counter(str(letter.get("original_reference") or "") for letter in letters)
    unexpected = sum(n for ref, n in references.items() if not any(ref.endswith(key) for key in bad_keys))
    in_postgres = Counter(tuple(group["uuids"]) for group in postgres or [])
    hooked = delivered is not None
    delivered = delivered if delivered is not None else Counter()
    keys = {str(uuids[0]) for uuids in sent if uuids} if hooked else set()
    return Report(
        frames_sent=len(frames),
        bad_objects_sent=len(bad_keys),
        results=len(results),
        frames_lost=len(set(wanted) - set(seen)),
        frames_duplicated=sum(n - 1 for n in seen.values() if n > 1),
        groups_expected=sum(expected.values()),
        groups_sent=sum(sent.values()),
        groups_lost=sum((expected - sent).values()),
        groups_duplicated=sum((sent - expected).values()),
        groups_stored=sum(kept.values()),
        stored_lost=sum((sent - kept).values()),
        stored_extra=sum((kept - sent).values()),
        groups_in_lake=sum(files.values()),
        lake_lost=sum((sent - files).values()),
        lake_extra=sum((files - sent).values()),
        dead_letters=len(letters),
        dead_letters_unexpected=unexpected,
        vehicles=len({frame.vehicle for frame in frames}),
        vehicles_read=_vehicles_read(frames, groups),
        groups_in_postgres=None if postgres is None else sum(in_postgres.values()),
        postgres_lost=0 if postgres is None else sum((sent - in_postgres).values()),
        postgres_extra=0 if postgres is None else sum((in_postgres - sent).values()),
        webhook_delivered=len(keys & set(delivered)) if hooked else None,
        webhook_lost=len(keys - set(delivered)),
        webhook_unknown=sum(n for key, n in delivered.items() if key not in keys),
        webhook_repeats=sum(n - 1 for key, n in delivered.items() if key in keys),
    )


def _vehicles_read(frames: list[Frame], groups: list[dict[str, Any]]) -> int:
    spans: dict[int, tuple[int, int, int, str]] = {}
    for frame in frames:
        camera, first, last, plate = spans.get(frame.vehicle, (frame.camera, frame.capture_ms, frame.capture_ms,
                                                                 frame.plate))  # fmt: skip
        spans[frame.vehicle] = (camera, min(first, frame.capture_ms), max(last, frame.capture_ms), plate)
    found = 0
    for camera, first, last, plate in spans.values():
        if any(int(g["camera_id"]) == camera and g["best_plate_number"] == plate
               and g["epoch_start"] <= last and g["epoch_end"] >= first for g in groups):  # fmt: skip
            found += 1
    return found
