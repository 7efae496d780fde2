"""`platestream bench alerts --through-kafka`: the matcher service's passes/s on a broker."""

from __future__ import annotations

import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from platestream.aggregator.bench_search import plates
from platestream.aggregator.stores.database import Database
from platestream.alerts.lists import AlertStore
from platestream.alerts.matching import Entry
from platestream.broker import LocalBroker
from platestream.kafka import codec, create_topics, make_producer
from platestream.settings import AlertSettings, Settings

IDLE_S = 3.0


@dataclass(frozen=True)
class ServiceRate:
    passes: int
    alerts: int
    passes_per_s: float


def bench_alert_service(settings: Settings, entries: int, passes: int) -> ServiceRate:
    broker = None
    if not settings.kafka_bootstrap:
        broker = LocalBroker(settings.broker_dir)
        settings = settings.model_copy(update={"kafka_bootstrap": broker.start().bootstrap})
    try:
        return _run(settings, entries, passes)
    finally:
        if broker is not None:
            broker.stop()


def _run(settings: Settings, entries: int, passes: int) -> ServiceRate:
    from platestream.alerts.service import AlertMatcher

    prefix = f"{settings.topic_prefix}bench-alerts-{uuid.uuid4().hex[:6]}."
    settings = settings.model_copy(update={"topic_prefix": prefix})
    create_topics(settings, partitions=3)
    folder = Path(tempfile.mkdtemp(prefix="platestream-bench-alerts-"))
    matcher_settings = AlertSettings(**settings.model_dump(), sqlite_path=folder / "alerts.db", health_port=0,
                                     group_id=prefix + "alerts", transactional_id=prefix + "alerts-0")  # fmt: skip
    listed = plates(entries, 0)
    AlertStore(Database(matcher_settings)).add_entries(
        [Entry("bench", plate) for plate in listed], user="bench", create_missing=True
    )
    producer = make_producer(settings)
    encode = codec(settings, "alpr_group").encode
    others = plates(passes, 7)
    for index in range(passes):
        plate = listed[index % entries] if index % 20 == 0 else others[index]
        start = 1_700_000_000_000 + index * 1000
        record = _group(plate, start, index)
        producer.send(settings.topic_name("alpr_group"), encode(record), key=str(index % 12).encode())
    producer.flush()
    producer.close()
    matcher = AlertMatcher(matcher_settings)
    started = time.perf_counter()
    matcher.run(until_idle_s=IDLE_S)
    elapsed = time.perf_counter() - started - IDLE_S
    return ServiceRate(matcher.totals["passes"], matcher.totals["alerts"], passes / max(elapsed, 1e-3))


def _group(plate: str, start: int, index: int) -> dict[str, object]:
    return {
        "version": 2, "data_type": "alpr_group", "epoch_start": start, "epoch_end": start + 900,
        "frame_start": 0, "frame_end": 3, "camera_id": index % 12, "agent_uid": "bench", "agent_version": "bench",
        "agent_type": "bench", "company_id": None, "country": "us", "gps_latitude": None, "gps_longitude": None,
        "uuids": [f"bench-{index}-{k}" for k in range(4)], "plate_indexes": [0] * 4,
        "candidates": [{"plate": plate, "confidence": 90.0, "matches_template": 1}],
        "best_plate": {"plate": plate, "confidence": 90.0, "matches_template": 1, "plate_index": 0, "region": "us-ca",
                       "region_confidence": 80.0, "processing_time_ms": 1.0, "requested_topn": 10,
                       "coordinates": [{"x": 0, "y": 0}] * 4, "candidates": [], "plate_crop_jpeg": None,
                       "vehicle_region": None, "vehicle_crop_jpeg": None},
        "best_plate_number": plate, "best_confidence": 90.0, "best_uuid": f"bench-{index}-0", "best_region": "us-ca",
        "best_region_confidence": 80.0, "best_image_width": 1280, "best_image_height": 720, "matches_template": True,
        "travel_direction": 0.0, "is_parked": False, "vehicle_crop_jpeg": None, "vehicle": None,
        "plate_path": [], "vehicle_path": [],
    }  # fmt: skip
