"""What the console's cameras page knows from Kafka: each agent's last heartbeat (its streams,
frames/s, streaming or not) and each pipeline stage's consumer lag. A background thread reads the
heartbeat topic; Kafka being away shows on the page and never stops the console."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from platestream.kafka import codec, make_admin, make_consumer
from platestream.log import get_logger
from platestream.settings import ConsoleSettings

log = get_logger(__name__)

# The topic each stage of the pipeline reads.
READS = {"workers": "frames", "aggregator": "alpr_results", "store": "alpr_group", "alerts": "alpr_group",
         "webhooks": "alpr_group"}  # fmt: skip
LAG_EVERY_S = 15.0
LAG_RETRY_S = 2.0


@dataclass(frozen=True)
class Stream:
    agent: str
    camera_id: str
    name: str
    fps: float
    streaming: bool
    last_update_ms: int
    heartbeat_ms: int


@dataclass(frozen=True)
class Lag:
    stage: str
    topic: str
    behind: int | None  # records not yet consumed; None: the group has committed nothing
    error: str | None = None


class CameraWatch:
    def __init__(self, settings: ConsoleSettings) -> None:
        self.settings = settings
        self._decode = codec(settings, "heartbeat").decode
        self._latest: dict[str, dict[str, Any]] = {}
        self._lag: list[Lag] = []
        self._lag_at = 0.0
        self.error: str | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="console-heartbeats", daemon=True)

    @classmethod
    def start(cls, settings: ConsoleSettings) -> CameraWatch:
        watch = cls(settings)
        watch._thread.start()
        return watch

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                consumer = make_consumer(self.settings, "heartbeat", group_id=None)
            except Exception as error:
                self.error = f"Kafka unavailable: {error}"
                self._stop.wait(10)
                continue
            try:
                while not self._stop.is_set():
                    for records in consumer.poll(timeout_ms=1000).values():
                        for message in records:
                            self._take(message.value)
                    self.error = None
                    if time.monotonic() - self._lag_at > LAG_EVERY_S:
                        self._lag = self._measure_lag()
                        failed = any(lag.error for lag in self._lag)  # e.g. no group coordinator yet
                        self._lag_at = time.monotonic() - (LAG_EVERY_S - LAG_RETRY_S if failed else 0.0)
            except Exception as error:
                self.error = f"Kafka unavailable: {error}"
                self._stop.wait(5)
            finally:
                consumer.close()

    def _take(self, value: bytes | None) -> None:
        try:
            beat = self._decode(value or b"")
        except Exception:
            return
        with self._lock:
            held = self._latest.get(beat["agent_uid"])
            if held is None or beat["timestamp"] >= held["timestamp"]:
                self._latest[beat["agent_uid"]] = beat

    def snapshot(self, *, now_ms: int) -> list[Stream]:
        with self._lock:
            beats = list(self._latest.values())
        streams = []
        for beat in beats:
            fresh = now_ms - int(beat["timestamp"]) <= self.settings.console_heartbeat_stale_s * 1000
            for stream in beat.get("video_streams") or []:
                streams.append(Stream(beat["agent_hostname"] or beat["agent_uid"], str(stream["camera_id"]),
                                      stream["camera_name"], float(stream["fps"]),
                                      bool(stream["is_streaming"]) and fresh, int(stream["last_update"]),
                                      int(beat["timestamp"])))  # fmt: skip
        return sorted(streams, key=lambda s: s.camera_id)

    def lag(self) -> list[Lag]:
        return list(self._lag)

    def _measure_lag(self) -> list[Lag]:
        from kafka import TopicPartition

        found = []
        stages = [(stage, group, READS.get(stage, "alpr_group")) for stage, group in self.settings.lag_groups()]
        try:
            admin = make_admin(self.settings)
            reader = make_consumer(self.settings, group_id=None)
        except Exception as error:
            return [Lag(stage, topic, None, str(error)) for stage, _, topic in stages]
        try:
            for stage, group, topic in stages:
                name = self.settings.topic_name(topic)
                try:
                    committed = admin.list_group_offsets({group: None}).get(group, {})
                    partitions = [TopicPartition(name, p) for p in sorted(reader.partitions_for_topic(name) or ())]
                    ends = reader.end_offsets(partitions, timeout_ms=10_000)
                    held = {tp: meta.offset for tp, meta in committed.items() if tp.topic == name}
                    behind = sum(ends[tp] - held.get(tp, 0) for tp in partitions) if held else None
                    found.append(Lag(stage, topic, behind))
                except Exception as error:
                    found.append(Lag(stage, topic, None, str(error)))
        finally:
            admin.close()
            reader.close()
        return found
