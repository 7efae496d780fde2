"""The aggregator on the real broker: groups as the pure grouper makes them, exactly once, even
when an instance is killed mid-stream."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from platestream.aggregator import Grouper, GroupingConfig, alpr_group, reads_from_results
from platestream.aggregator.service import Aggregator
from platestream.aggregator.simulate import frames_of, passes
from platestream.kafka import codec, make_producer, read_topic
from platestream.settings import AggregatorSettings, Settings

pytestmark = pytest.mark.kafka


def send_results(settings: Settings, records: list[dict[str, Any]], raw: Sequence[bytes] = ()) -> None:
    producer = make_producer(settings)
    encode = codec(settings, "alpr_results").encode
    for record in records:
        producer.send(settings.topic_name("alpr_results"), encode(record), key=str(record["camera_id"]).encode())
    for value in raw:
        producer.send(settings.topic_name("alpr_results"), value, key=b"0")
    producer.flush()
    producer.close()


def expected_groups(records: list[dict[str, Any]]) -> Counter[tuple[str, ...]]:
    groupers: dict[Any, Grouper] = {}
    groups = []
    for record in records:
        grouper = groupers.setdefault(record["camera_id"], Grouper(GroupingConfig()))
        for read in reads_from_results(record):
            groups += grouper.add(read)
    for grouper in groupers.values():
        groups += grouper.close_all()
    return Counter(tuple(alpr_group(g, GroupingConfig())["uuids"]) for g in groups)


def traffic(vehicles: int, seed: int) -> list[dict[str, Any]]:
    records, _ = frames_of(passes(vehicles, cameras=2, seed=seed), seed=seed)
    return records


def aggregator_settings(settings: Settings, **overrides: Any) -> AggregatorSettings:
    values = settings.model_dump() | {
        "group_id": settings.topic_prefix + "aggregators",
        "transactional_id": settings.topic_prefix + "aggregator-0",
        "health_port": 0,
        "batch_size": 50,
        "session_timeout_ms": 6000,
        "idle_flush_ms": 1500,
        "transaction_timeout_ms": 10000,
    }
    return AggregatorSettings(**(values | overrides))


def test_groups_match_the_pure_grouper_and_bad_records_are_dead_lettered(kafka_settings: Settings) -> None:
    records = traffic(20, seed=5)
    send_results(kafka_settings, records, raw=[b"\x07 not an alpr_results record"])
    expected = expected_groups(records)
    aggregator = Aggregator(aggregator_settings(kafka_settings))
    thread = threading.Thread(target=aggregator.run, daemon=True)
    thread.start()
    try:
        groups = read_topic(kafka_settings, "alpr_group", "alpr_group", count=sum(expected.values()), timeout_s=60)
        letters = read_topic(kafka_settings, "dead_letter", "dead_letter", count=1, timeout_s=10)
    finally:
        aggregator.stop()
        thread.join(timeout=30)
    assert Counter(tuple(g["uuids"]) for _, g in groups) == expected
    assert letters[0][1]["reason"] == "schema_invalid"
    assert letters[0][1]["service"].startswith("aggregator/")
    assert all(key == str(g["camera_id"]).encode() for key, g in groups)


def start(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    values = aggregator_settings(settings).model_dump(exclude={"kafka_sasl_password"})
    env = os.environ | {f"PLATESTREAM_{k.upper()}": str(v) for k, v in values.items() if v is not None}
    env["PLATESTREAM_LOG_FORMAT"] = "json"
    out = open(log, "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([sys.executable, "-m", "platestream", "aggregate"], env=env, stdout=out, stderr=out)


@pytest.mark.slow
def test_an_aggregator_killed_mid_stream_loses_and_duplicates_no_group(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    records = traffic(120, seed=9)
    expected = expected_groups(records)
    half = len(records) // 2
    send_results(kafka_settings, records[:half])
    first = start(kafka_settings, tmp_path / "a.log")
    try:
        early = read_topic(kafka_settings, "alpr_group", "alpr_group", count=3, timeout_s=60)
        assert len(early) >= 3, (tmp_path / "a.log").read_text()[-3000:]
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        send_results(kafka_settings, records[half:])  # the stream goes on while no aggregator runs
        second = start(kafka_settings, tmp_path / "b.log")
        try:
            groups = read_topic(kafka_settings, "alpr_group", "alpr_group", count=sum(expected.values()), timeout_s=120)
            time.sleep(3)
            groups = read_topic(kafka_settings, "alpr_group", "alpr_group", timeout_s=10)
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=60) == 0
    finally:
        if first.poll() is None:
            first.kill()
    got = Counter(tuple(g["uuids"]) for _, g in groups)
    assert got == expected, (tmp_path / "b.log").read_text()[-3000:]
    assert len(early) < sum(expected.values()), "everything was grouped before the crash: nothing was tested"


def test_an_aborted_transaction_loses_and_duplicates_no_group(
    kafka_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kafka.errors import KafkaTimeoutError

    import platestream.transactions
    from platestream.kafka import transact as real_transact

    failures = {"streaming": 1, "idle flush": 1}

    def flaky_transact(producer: Any, sends: Any, offsets: Any = None, *args: Any, **kwargs: Any) -> None:
        sends = list(sends)
        kind = "streaming" if offsets else "idle flush"  # groups closed by new reads, or by quiet
        if failures[kind] and any(send.topic.endswith("alpr_group") for send in sends):
            failures[kind] -= 1  # fail a transaction that carries groups: they must come back
            producer.begin_transaction()
            producer.abort_transaction()
            raise KafkaTimeoutError("the broker did not answer (test)")
        real_transact(producer, sends, offsets, *args, **kwargs)

    monkeypatch.setattr(platestream.transactions, "transact", flaky_transact)
    records = traffic(20, seed=7)
    send_results(kafka_settings, records)
    expected = expected_groups(records)
    service = Aggregator(aggregator_settings(kafka_settings, batch_size=20))
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    try:
        read_topic(kafka_settings, "alpr_group", "alpr_group", count=sum(expected.values()), timeout_s=60)
        time.sleep(2)
        groups = read_topic(kafka_settings, "alpr_group", "alpr_group", timeout_s=10)
    finally:
        service.stop()
        thread.join(timeout=30)
    assert failures == {"streaming": 0, "idle flush": 0}, "the failures were injected"
    assert Counter(tuple(g["uuids"]) for _, g in groups) == expected


def test_spanning_cameras_is_refused_where_it_cannot_hold(kafka_settings: Settings) -> None:
    """Two partitions keyed by camera: two cameras' reads of one vehicle never meet, so say so."""
    from platestream.errors import ConfigError

    aggregator = Aggregator(aggregator_settings(kafka_settings, plate_groups_span_cameras=True))
    with pytest.raises(ConfigError, match=r"SPAN_CAMERAS=true cannot hold: .*has 2 partitions"):
        aggregator.run()
