"""What the soak proves, from what was committed: each frame read once, each group sent once and
stored once, and only the injected bad inputs dead-lettered."""

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
    faults: dict[str, int] = field(default_factory=dict)
    longest_recovery_s: float = 0.0
    longest_gap_s: float = 0.0
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.frames_lost or self.frames_duplicated or self.groups_lost or self.groups_duplicated
                    or self.stored_lost or self.stored_extra or self.lake_lost or self.lake_extra
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
           config: GroupingConfig) -> Report:  # fmt: skip
    wanted = Counter((frame.camera, frame.capture_ms) for frame in frames)
    seen = Counter((int(r["camera_id"]), int(r["epoch_time"])) for r in results)
    expected = expected_groups(results, config)
    sent = Counter(tuple(group["uuids"]) for group in groups)
    kept = Counter(tuple(group["uuids"]) for group in stored)
    files = Counter(tuple(group["uuids"]) for group in lake)
    references = Counter(str(letter.get("original_reference") or "") for letter in letters)
    unexpected = sum(n for ref, n in references.items() if not any(ref.endswith(key) for key in bad_keys))
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
