"""Records of every topic go through the real broker as Avro and come back unchanged."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from platestream.kafka import codec, create_topics, make_producer, read_topic
from platestream.schemas import TOPICS
from platestream.settings import Settings
from tests.factories import alpr_group, alpr_results, frame

pytestmark = pytest.mark.kafka

CASES: list[tuple[str, str, Callable[[int], dict[str, Any]]]] = [
    ("frames", "frame", lambda n: frame("cam-1", n)),
    ("alpr_results", "alpr_results", lambda n: alpr_results(7, 1_700_000_000_000 + n)),
    ("alpr_group", "alpr_group", lambda n: alpr_group(f"cam-{n}")),
]


@pytest.mark.parametrize("wire_format", ["single-object", "avro", "confluent"])
def test_records_round_trip_through_the_broker(make_settings: Callable[..., Settings], wire_format: str) -> None:
    settings = make_settings(wire_format=wire_format, schema_ids="frame=1,alpr_results=2,alpr_group=3")
    create_topics(settings, TOPICS, partitions=2)
    producer = make_producer(settings)
    sent: dict[str, list[dict[str, Any]]] = {}
    for topic, schema, build in CASES:
        sent[topic] = [build(n) for n in range(5)]
        for record in sent[topic]:
            producer.send(settings.topic_name(topic), codec(settings, schema).encode(record), key=b"cam-1")
    producer.flush()
    producer.close()

    for topic, schema, _ in CASES:
        received = [record for _, record in read_topic(settings, topic, schema, count=5)]
        assert sorted(received, key=repr) == sorted(sent[topic], key=repr), topic


def test_declared_topics_are_created_once_with_their_settings(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    created = create_topics(settings, TOPICS, partitions=1)
    assert sorted(created) == sorted(settings.topic_name(spec.name) for spec in TOPICS)
    assert create_topics(settings, TOPICS, partitions=1) == []
