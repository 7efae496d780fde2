"""`platestream demo`: the pipeline end to end on the embedded defaults.

Starts the local broker (unless a cluster is configured), creates the declared topics, writes a
few synthetic camera images, produces them as frames, runs a recognition worker until every
frame has its result, and prints what a downstream consumer of alpr_results reads.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import click

from platestream.broker import LocalBroker
from platestream.kafka import create_topics, read_topic
from platestream.log import get_logger
from platestream.settings import Settings, WorkerSettings

log = get_logger(__name__)

DEMO_PLATES = {"gate-north": ["AB12CDE", "AB12CDE", "KL35PQR"], "gate-south": ["XY98ZZT", "RK346AL", ""]}


def run_demo(settings: Settings, *, keep_broker: bool) -> None:
    broker = None
    if not settings.kafka_bootstrap:
        broker = LocalBroker(settings.broker_dir)
        click.echo(f"local Kafka broker on {broker.start().bootstrap}")
    try:
        # A fresh set of topics per run, so a rerun shows its own records only.
        import uuid

        settings = settings.model_copy(update={"topic_prefix": f"{settings.topic_prefix}demo-{uuid.uuid4().hex[:6]}."})
        create_topics(settings, partitions=2)
        images = _write_images(settings.state_dir / "demo-images")
        _produce(settings, images)
        results = _recognize(settings, expected=len(images))
        click.echo(f"\n{len(results)} frames recognised (topic {settings.topic_name('alpr_results')}):")
        for key, record in sorted(results, key=lambda item: (item[1]["camera_id"], item[1]["frame_number"])):
            plates = ", ".join(f"{r['plate']} ({r['confidence']:.0f}%)" for r in record["results"]) or "no plate"
            click.echo(f"  {key.decode() if key else '':<11} frame {record['frame_number']}: {plates}")
    finally:
        if broker is not None and not keep_broker:
            broker.stop()


def _write_images(folder: Path) -> list[Path]:
    import cv2

    from workers.synthetic import street_scene

    paths = []
    for camera, plates in DEMO_PLATES.items():
        (folder / camera).mkdir(parents=True, exist_ok=True)
        for number, text in enumerate(plates):
            path = folder / camera / f"{number:04d}.jpg"
            cv2.imwrite(str(path), street_scene(text, seed=number + 1, plate_width=280))
            paths.append(path)
    return paths


def _produce(settings: Settings, images: list[Path]) -> None:
    from producers import file_frames, produce_frames

    delivery = produce_frames(settings, file_frames(images, options=None))
    click.echo(f"produced {delivery.delivered} frames to {settings.topic_name('frames')}")


def _recognize(settings: Settings, expected: int) -> list[tuple[bytes | None, dict[str, Any]]]:
    from workers.service import Worker

    worker_settings = WorkerSettings(
        **settings.model_dump(exclude={"kafka_sasl_password"}),
        kafka_sasl_password=settings.kafka_sasl_password,
        country="eu",
        group_id=settings.topic_prefix + "workers",
        transactional_id=settings.topic_prefix + "worker-0",
        health_port=0,
    )
    worker = Worker(worker_settings)
    thread = threading.Thread(target=worker.run, name="worker", daemon=True)
    thread.start()
    try:
        return read_topic(settings, "alpr_results", "alpr_results", count=expected, timeout_s=120)
    finally:
        worker.stop()
        thread.join(timeout=60)
