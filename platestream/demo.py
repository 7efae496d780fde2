"""`platestream demo`: the pipeline end to end on the embedded defaults.

Starts the local broker (unless a cluster is configured), creates the declared topics, renders
vehicles passing two cameras, produces the frames, and runs a recognition worker, the aggregator
and the store writer until each vehicle has its alpr_group record in the SQLite store; then
prints the per-frame reads, the vehicle passes and a fuzzy search.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from platestream.broker import LocalBroker
from platestream.kafka import create_topics, read_topic
from platestream.log import get_logger
from platestream.service import in_thread
from platestream.settings import AggregatorSettings, Settings, StoreSettings, WorkerSettings

log = get_logger(__name__)

# camera -> vehicles passing it: (plate, frames); frames are 200 ms apart, vehicles 10 s apart.
DEMO_TRAFFIC = {"gate-north": [("AB12CDE", 4), ("KL35PQR", 3)], "gate-south": [("XY98ZZT", 3)]}
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def run_demo(settings: Settings, *, keep_broker: bool) -> None:
    broker = None
    if not settings.kafka_bootstrap:
        broker = LocalBroker(settings.broker_dir)
        click.echo(f"local Kafka broker on {broker.start().bootstrap}")
    try:
        # Topics of its own per run, so a rerun shows its own records only.
        prefix = f"{settings.topic_prefix}demo-{uuid.uuid4().hex[:6]}."
        settings = settings.model_copy(update={"topic_prefix": prefix})
        create_topics(settings, partitions=2)
        images = _write_images(settings.state_dir / "demo-images")
        _produce(settings, images)
        base = settings.model_dump(exclude={"kafka_sasl_password"}) | {
            "kafka_sasl_password": settings.kafka_sasl_password
        }
        worker = WorkerSettings(**base, country="eu", group_id=prefix + "workers", transactional_id=prefix + "w0",
                                health_port=0)  # fmt: skip
        aggregator = AggregatorSettings(**base, group_id=prefix + "aggregator", transactional_id=prefix + "a0",
                                        health_port=0, idle_flush_ms=1500, country="eu")  # fmt: skip
        store = StoreSettings(**base, group_id=prefix + "store", transactional_id=prefix + "s0", health_port=0,
                              sqlite_path=settings.state_dir / "platestream.db")  # fmt: skip
        with in_thread(_worker(worker), name="worker"), in_thread(_aggregator(aggregator), name="aggregator"):
            results = read_topic(settings, "alpr_results", "alpr_results", count=len(images), timeout_s=180)
            groups = read_topic(settings, "alpr_group", "alpr_group", count=len(_vehicles()), timeout_s=60)
        _store(store)
        _report(settings, store, results, groups)
    finally:
        if broker is not None and not keep_broker:
            broker.stop()


def _vehicles() -> list[tuple[str, str, int]]:
    return [(camera, plate, frames) for camera, passes in DEMO_TRAFFIC.items() for plate, frames in passes]


def _write_images(folder: Path) -> list[Path]:
    import cv2

    from platestream.workers.synthetic import street_scene

    paths = []
    for camera, passes in DEMO_TRAFFIC.items():
        (folder / camera).mkdir(parents=True, exist_ok=True)
        number = 0
        for vehicle, (plate, frames) in enumerate(passes):
            for step in range(frames):
                path = folder / camera / f"{number:04d}.jpg"
                image = street_scene(plate, seed=vehicle + 1, plate_width=280, center_x=500 + 40 * step)
                cv2.imwrite(str(path), image)
                moment = (START_MS + vehicle * 10_000 + step * 200) / 1000
                os.utime(path, (moment, moment))  # the producer takes capture time from the file
                paths.append(path)
                number += 1
    return paths


def _produce(settings: Settings, images: list[Path]) -> None:
    from platestream.producers import file_frames, produce_frames

    delivery = produce_frames(settings, file_frames(images))
    click.echo(f"produced {delivery.delivered} frames to {settings.topic_name('frames')}")


def _worker(settings: WorkerSettings) -> Any:
    from platestream.workers.service import Worker

    return Worker(settings)


def _aggregator(settings: AggregatorSettings) -> Any:
    from platestream.aggregator.service import Aggregator

    return Aggregator(settings)


def _store(settings: StoreSettings) -> None:
    from platestream.aggregator.store_service import StoreWriter

    StoreWriter(settings).run(until_idle_s=2.0)


def _report(settings: Settings, store: StoreSettings, results: list[Any], groups: list[Any]) -> None:
    from platestream.aggregator.stores import SqliteStore

    stamp: Callable[[int], str] = lambda ms: time.strftime("%H:%M:%S", time.gmtime(ms / 1000))  # noqa: E731
    click.echo(f"\n{len(results)} frames recognised ({settings.topic_name('alpr_results')}):")
    for key, record in sorted(results, key=lambda item: (item[1]["camera_id"], item[1]["frame_number"])):
        plates = ", ".join(f"{r['plate']} ({r['confidence']:.0f}%)" for r in record["results"]) or "no plate"
        click.echo(f"  {key.decode() if key else '':<11} frame {record['frame_number']}: {plates}")
    click.echo(f"\n{len(groups)} vehicle passes ({settings.topic_name('alpr_group')}):")
    for _, group in sorted(groups, key=lambda item: item[1]["epoch_start"]):
        click.echo(
            f"  {group['camera_id']:<11} {group['best_plate_number']:<8} {len(group['uuids'])} reads,"
            f" {stamp(group['epoch_start'])}-{stamp(group['epoch_end'])} UTC,"
            f" direction {group['travel_direction']:.0f} deg"
        )
    matches = SqliteStore(store.database).search("AB12C0E")
    click.echo(f"\nplatestream search AB12C0E  (store {store.database}):")
    for match in matches:
        click.echo(f"  {match.plate} at {match.camera_id}, {stamp(match.epoch_start)} UTC, fuzzy match {match.matched}")
