"""`platestream demo`: the pipeline end to end on the embedded defaults.

Starts the local broker (unless a cluster is configured), creates the declared topics, pushes
work through every topic and prints what a downstream consumer reads.
"""

from __future__ import annotations

import time
from typing import Any

import click

from platestream.broker import LocalBroker
from platestream.kafka import codec, create_topics, make_producer, read_topic
from platestream.log import get_logger
from platestream.settings import Settings

log = get_logger(__name__)


def run_demo(settings: Settings, *, keep_broker: bool) -> None:
    broker = None
    if not settings.kafka_bootstrap:
        broker = LocalBroker(settings.broker_dir)
        click.echo(f"local Kafka broker on {broker.start().bootstrap}")
    try:
        create_topics(settings, partitions=2)
        _push_sample_records(settings)
        for topic, schema in (("frames", "frame"), ("alpr_results", "alpr_results"), ("alpr_group", "alpr_group")):
            records = read_topic(settings, topic, schema)
            click.echo(f"{settings.topic_name(topic)}: {len(records)} records")
    finally:
        if broker is not None and not keep_broker:
            broker.stop()


def _push_sample_records(settings: Settings) -> None:
    now = int(time.time() * 1000)
    producer = make_producer(settings)
    for number in range(3):
        record: dict[str, Any] = {
            "camera_id": "demo-camera",
            "frame_number": number,
            "capture_time_ms": now + number * 100,
            "source_kind": "file",
            "image": b"\xff\xd8demo",
            "image_ref": None,
            "content_type": "image/jpeg",
            "source_uri": None,
            "options": None,
        }
        producer.send(settings.topic_name("frames"), codec(settings, "frame").encode(record), key=b"demo-camera")
    producer.flush()
    producer.close()
