"""Grouping per-frame plate reads into vehicle passes, in event time. Pure: no Kafka, no clock.

A read joins an open group of its camera (or of the whole site when groups span cameras) when
one of its candidate readings is close to one of the group's (see `similarity`) and its position
fits the group's path: the last position moved on at the group's last velocity, within a margin
that grows with the time gap. The closest fitting group wins; otherwise the read opens a group.

A group closes when the camera's watermark (latest capture time seen, less the allowed lateness)
passes its last read by `time_delta_ms`, when it holds `max_plates` reads, or when capture time
has run `max_delay_ms` past its last read whatever the lateness. Groups with fewer than
`min_plates` reads are dropped; reads under `min_confidence` are ignored.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from platestream.aggregator.similarity import similar


@dataclass(frozen=True)
class GroupingConfig:
    time_delta_ms: int = 4500
    min_plates: int = 2
    min_confidence: float = 80.0
    max_plates: int = 500
    max_delay_ms: int = 7500
    span_cameras: bool = False
    lateness_ms: int = 2000
    position_margin: float = 2.0  # plate widths, plus as much again per second of gap
    parked_motion: float = 0.5  # plate widths: a vehicle whose plate moved less is parked
    parked_min_ms: int = 2000


@dataclass(frozen=True)
class Read:
    camera_id: int | str
    uuid: str
    plate_index: int
    epoch_ms: int
    frame_number: int
    plate: str
    confidence: float
    candidates: tuple[tuple[str, float, bool], ...]
    box: tuple[int, int, int, int]  # x, y, w, h
    img_width: int
    img_height: int
    result: Mapping[str, Any]  # the whole per-plate result, for best_plate
    agent: Mapping[str, Any]  # agent_uid, agent_version, agent_type, company_id

    center: tuple[float, float] = field(init=False, compare=False)
    readings: tuple[str, ...] = field(init=False, compare=False)  # the plate, then other candidates

    def __post_init__(self) -> None:
        x, y, w, h = self.box
        object.__setattr__(self, "center", (x + w / 2, y + h / 2))
        others = tuple(plate for plate, _, _ in self.candidates if plate != self.plate)
        object.__setattr__(self, "readings", (self.plate, *others))


def reads_from_results(record: Mapping[str, Any]) -> list[Read]:
    """The plate reads of one alpr_results record."""
    agent = {key: record.get(key) for key in ("agent_uid", "agent_version", "agent_type", "company_id")}
    camera = record.get("camera_id")
    uuid = record.get("uuid") or f"{agent['agent_uid']}-{camera}-{record['epoch_time']}"
    reads = []
    for result in record.get("results", []):
        xs = [point["x"] for point in result["coordinates"]]
        ys = [point["y"] for point in result["coordinates"]]
        reads.append(
            Read(
                camera_id=camera if camera is not None else "",
                uuid=uuid,
                plate_index=result["plate_index"],
                epoch_ms=record["epoch_time"],
                frame_number=record.get("frame_number") or 0,
                plate=result["plate"],
                confidence=result["confidence"],
                candidates=tuple(
                    (c["plate"], c["confidence"], bool(c["matches_template"])) for c in result["candidates"]
                ),
                box=(min(xs), min(ys), max(1, max(xs) - min(xs)), max(1, max(ys) - min(ys))),
                img_width=record["img_width"],
                img_height=record["img_height"],
                result=result,
                agent=agent,
            )
        )
    return reads


@dataclass
class Group:
    """An open or closed vehicle pass. Its time bounds and recent reads are kept as reads arrive,
    so matching a read costs the same however long the group is."""

    key: str
    reads: list[Read] = field(default_factory=list)
    first_ms: int = 0
    last_ms: int = 0
    _recent: list[Read] = field(default_factory=list)  # the latest reads by capture time

    def add(self, read: Read, recent: int = 5) -> None:
        if not self.reads:
            self.first_ms = self.last_ms = read.epoch_ms
        self.first_ms = min(self.first_ms, read.epoch_ms)
        self.last_ms = max(self.last_ms, read.epoch_ms)
        self.reads.append(read)
        bisect.insort(self._recent, read, key=lambda r: r.epoch_ms)
        del self._recent[:-recent]
        self._readings: set[str] | None = None

    def readings(self) -> set[str]:
        cached = getattr(self, "_readings", None)
        if cached is None:
            cached = {reading for read in self._recent for reading in read.readings[:3]}
            self._readings = cached
        return cached

    def predicted_center(self, at_ms: int) -> tuple[float, float]:
        last = self._recent[-1]
        if len(self._recent) < 2 or self._recent[-2].epoch_ms == last.epoch_ms:
            return last.center
        before = self._recent[-2]
        dt = last.epoch_ms - before.epoch_ms
        vx = (last.center[0] - before.center[0]) / dt
        vy = (last.center[1] - before.center[1]) / dt
        gap = at_ms - last.epoch_ms
        return (last.center[0] + vx * gap, last.center[1] + vy * gap)


class Grouper:
    """Open groups per camera (or per site), fed reads in any order within the lateness bound."""

    def __init__(self, config: GroupingConfig = GroupingConfig()) -> None:
        self.config = config
        self.open: dict[str, list[Group]] = {}
        self.watermarks: dict[str, int] = {}  # latest capture time seen per key

    def key_of(self, read: Read) -> str:
        return "*" if self.config.span_cameras else str(read.camera_id)

    def add(self, read: Read) -> list[Group]:
        """Take one read; return the groups it completes (full ones, or ones its time closes)."""
        key = self.key_of(read)
        previous = self.watermarks.get(key)
        done: list[Group] = []
        if previous is None or read.epoch_ms > previous:  # time moved on: groups may close
            self.watermarks[key] = read.epoch_ms
            done = self.advance(key)
        if read.confidence < self.config.min_confidence:
            return done
        group = self._match(key, read)
        if group is None:
            group = Group(key)
            self.open.setdefault(key, []).append(group)
        group.add(read)
        if len(group.reads) >= self.config.max_plates:
            self.open[key].remove(group)
            done.append(group)
        return done

    def advance(self, key: str) -> list[Group]:
        """Close the groups of `key` that its watermark has passed."""
        seen = self.watermarks.get(key)
        if seen is None:
            return []
        watermark = seen - self.config.lateness_ms
        closing = [
            g
            for g in self.open.get(key, [])
            if watermark >= g.last_ms + self.config.time_delta_ms or seen >= g.last_ms + self.config.max_delay_ms
        ]
        for group in closing:
            self.open[key].remove(group)
        return [g for g in closing if len(g.reads) >= self.config.min_plates]

    def close_all(self, keys: Iterable[str] | None = None) -> list[Group]:
        """Close every open group (of `keys`): at the end of a backfill, or for an idle camera."""
        done: list[Group] = []
        for key in list(keys if keys is not None else self.open):
            done.extend(g for g in self.open.pop(key, []) if len(g.reads) >= self.config.min_plates)
        return done

    def _match(self, key: str, read: Read) -> Group | None:
        groups = self.open.get(key, [])
        # Most reads repeat a reading the group already has: try those groups first.
        for group in groups:
            if read.plate in group.readings() and self._fits_path(group, read):
                return group
        best: tuple[float, Group] | None = None
        for group in groups:
            if not self._fits_path(group, read):
                continue
            distance = similar(group.readings(), read.readings[:3])
            if distance is not None and (best is None or distance < best[0]):
                best = (distance, group)
        return best[1] if best else None

    def _fits_path(self, group: Group, read: Read) -> bool:
        px, py = group.predicted_center(read.epoch_ms)
        cx, cy = read.center
        width = max(read.box[2], group._recent[-1].box[2])
        gap_s = abs(read.epoch_ms - group.last_ms) / 1000
        margin = width * self.config.position_margin * (1 + gap_s)
        return math.hypot(cx - px, cy - py) <= margin


_READ_FIELDS = ("camera_id", "uuid", "plate_index", "epoch_ms", "frame_number", "plate", "confidence", "candidates",
                "box", "img_width", "img_height", "result", "agent")  # fmt: skip


def snapshot(grouper: Grouper) -> dict[str, Any]:
    """The open groups and watermarks as plain JSON-able data (the aggregator's changelog)."""
    return {
        "watermarks": dict(grouper.watermarks),
        "groups": [
            {"key": key, "reads": [{name: getattr(read, name) for name in _READ_FIELDS} for read in group.reads]}
            for key, groups in grouper.open.items()
            for group in groups
        ],
    }


def restore(config: GroupingConfig, data: Mapping[str, Any]) -> Grouper:
    grouper = Grouper(config)
    grouper.watermarks = {key: int(value) for key, value in data.get("watermarks", {}).items()}
    for entry in data.get("groups", []):
        group = Group(entry["key"])
        for fields in entry["reads"]:
            values = dict(fields)
            values["candidates"] = tuple(tuple(c) for c in values["candidates"])
            values["box"] = tuple(values["box"])
            group.add(Read(**values))
        grouper.open.setdefault(entry["key"], []).append(group)
    return grouper
