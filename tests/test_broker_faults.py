"""A broker that pauses or dies mid-stream: the worker, the aggregator and the store writer each ride
it out without a restart, and every input ends in exactly one committed output.

Each test runs the service in this process against a broker of its own, slowed so that the fault
lands mid-stream, and freezes the broker (SIGSTOP) for longer than the transaction timeout, or
SIGKILLs it and starts it again on the same data folder (same address). It measures how long the
service took, once the broker was back, to commit again. PLATESTREAM_FAULT_FREEZE_S sets the freeze
(default 15 s; BENCHMARKS.md has the figures for 60 s), PLATESTREAM_FAULT_REPORT names a JSON-lines
file that each test appends its figures to.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from platestream.aggregator.service import Aggregator
from platestream.aggregator.store_service import StoreWriter
from platestream.broker import LocalBroker
from platestream.kafka import create_topics, read_topic
from platestream.service import Service, in_thread
from platestream.settings import Settings, StoreSettings
from platestream.transactions import TransactionalWriter
from platestream.workers.engine import Engine
from platestream.workers.service import Worker
from tests.test_aggregator_service import aggregator_settings, expected_groups, send_results, traffic
from tests.test_stores import DAY, group
from tests.worker_tools import SharedEngine, frame_record, plate_jpeg, send_frames, worker_settings

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

FREEZE_S = float(os.environ.get("PLATESTREAM_FAULT_FREEZE_S", "15"))
DOWN_S = 3.0  # how long a killed broker stays down
RECOVERY_LIMIT_S = 30.0
# What every service under test gets: transactions time out well inside a freeze, a stall shows soon.
# PLATESTREAM_FAULT_CLIENT_DEFAULTS=1 keeps the services' own timeouts (for the figures of a 60 s freeze).
FAULT_SETTINGS: dict[str, Any] = {
    "session_timeout_ms": 6000,
    "stall_not_ready_s": 3.0,
    "stall_not_alive_s": 600.0,
    "health_port": 0,
}
if os.environ.get("PLATESTREAM_FAULT_CLIENT_DEFAULTS") != "1":
    FAULT_SETTINGS |= {
        "transaction_timeout_ms": 5000,
        "kafka_retry_backoff_max_ms": 1000,
        "kafka_request_timeout_ms": 5000,  # a freeze of FREEZE_S times requests out, as a minute does by default
    }


@pytest.fixture(scope="module")
def fault_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """A broker of these tests' own: the others' keeps running while this one is frozen or killed."""
    broker = LocalBroker(tmp_path_factory.mktemp("fault-broker"))
    broker.start()
    try:
        yield broker
    finally:
        if broker.state() is not None:
            broker.thaw()  # a failed test may leave it frozen
        broker.stop()


@pytest.fixture
def fault_settings(fault_broker: LocalBroker, tmp_path: Path) -> Settings:
    state = fault_broker.state()
    assert state is not None
    prefix = f"f{time.monotonic_ns() % 10**9}."
    settings = Settings.model_validate({"kafka_bootstrap": state.bootstrap, "topic_prefix": prefix,
                                        "state_dir": tmp_path / "state"})  # fmt: skip
    create_topics(settings, partitions=2)
    return settings


@dataclass
class Outcome:
    service: str
    fault: str
    commits_before: int
    recoveries: int
    recovery_s: float  # from the broker's return to the service's next commit
    stalled_reason: str  # what /readyz said while the broker was away


def inflict(fault: str, broker: LocalBroker, service: Service, writer: Callable[[], TransactionalWriter],
            kind: str, *, min_commits: int = 3) -> Outcome:  # fmt: skip
    """Wait until the service is mid-stream, inflict the fault, and time its recovery."""
    deadline = time.monotonic() + 120
    while (not hasattr(service, "writer") or writer().commits < min_commits) and time.monotonic() < deadline:
        time.sleep(0.05)
    before = writer().commits
    assert before >= min_commits, "the service never got going"
    reasons: list[str] = []
    watcher = _ProbeWatcher(service, reasons)
    watcher.start()
    if fault == "freeze":
        broker.freeze()
        time.sleep(FREEZE_S)
        broker.thaw()
    else:
        broker.kill()
        time.sleep(DOWN_S)
        broker.start()
    back = time.monotonic()
    while writer().last_commit <= back and time.monotonic() < back + 120:
        time.sleep(0.05)
    watcher.stop()
    recovery_s = writer().last_commit - back
    outcome = Outcome(
        kind, fault, before, len(writer().recoveries), round(recovery_s, 2), reasons[0] if reasons else ""
    )
    report = os.environ.get("PLATESTREAM_FAULT_REPORT")
    if report:
        with open(report, "a") as out:
            figures = {"freeze_s": FREEZE_S, "down_s": DOWN_S, "settings": FAULT_SETTINGS}
            out.write(json.dumps(outcome.__dict__ | figures) + "\n")
    print(f"\n{outcome}")
    assert recovery_s > 0, "the service did not commit again after the broker came back"
    assert recovery_s < RECOVERY_LIMIT_S
    return outcome


class _ProbeWatcher(threading.Thread):
    """Samples the service's readiness while the broker is away: a stall must show, with its reason."""

    def __init__(self, service: Service, reasons: list[str]) -> None:
        super().__init__(daemon=True)
        self.service, self.reasons, self._done = service, reasons, threading.Event()

    def run(self) -> None:
        while not self._done.wait(0.2):
            probe = self.service.ready()
            if not probe.ok and probe.details.get("status") == "stalled":
                self.reasons.append(str(probe.details["reason"]))

    def stop(self) -> None:
        self._done.set()
        self.join()


def running(service: Any) -> Any:
    return in_thread(service, name=service.kind)


def assert_recovered_in_place(thread: threading.Thread, outcome: Outcome) -> None:
    assert thread.is_alive(), "the service died: it must recover without a restart"
    assert outcome.recoveries >= 1, "no transaction failed: the fault did not reach the service"
    assert outcome.stalled_reason.startswith("no progress for"), "readiness never showed the stall"


@pytest.mark.parametrize("fault", ["freeze", "kill"])
def test_the_worker_rides_out_a_broker_fault(
    fault: str, fault_broker: LocalBroker, fault_settings: Settings, engine: Engine
) -> None:
    texts = ["AB12CDE", "XY98ZZT", "KL35PQR"]
    images = {text: plate_jpeg(text) for text in texts}
    frames = [frame_record(camera, n, image=images[texts[n % 3]]) for n in range(24) for camera in ("31", "32")]
    send_frames(fault_settings, frames)
    worker = Worker(
        worker_settings(fault_settings, batch_size=4, **FAULT_SETTINGS), engine=SharedEngine(engine, delay_s=0.4)
    )
    with running(worker) as thread:
        outcome = inflict(fault, fault_broker, worker, lambda: worker.writer, "worker")
        results = read_topic(fault_settings, "alpr_results", "alpr_results", count=len(frames), timeout_s=120)
        time.sleep(2)  # anything duplicated would arrive now
        results = read_topic(fault_settings, "alpr_results", "alpr_results", timeout_s=10)
        assert_recovered_in_place(thread, outcome)
    seen = Counter((r["camera_id"], r["frame_number"]) for _, r in results)
    assert {frame: n for frame, n in seen.items() if n > 1} == {}, "duplicated results"
    assert {(int(f["camera_id"]), f["frame_number"]) for f in frames} - set(seen) == set(), "lost frames"
    assert outcome.commits_before < len(frames) / 4, "the stream was over before the fault: nothing was tested"


class _SlowAggregator(Aggregator):
    def _consume(self, messages: list[Any]) -> Any:
        if messages:
            time.sleep(0.25)
        return super()._consume(messages)


@pytest.mark.parametrize("fault", ["freeze", "kill"])
def test_the_aggregator_rides_out_a_broker_fault(
    fault: str, fault_broker: LocalBroker, fault_settings: Settings
) -> None:
    records = traffic(20, seed=11)
    send_results(fault_settings, records)
    expected = expected_groups(records)
    aggregator = _SlowAggregator(aggregator_settings(fault_settings, batch_size=8, idle_flush_ms=4000,
                                                     **FAULT_SETTINGS))  # fmt: skip
    with running(aggregator) as thread:
        outcome = inflict(fault, fault_broker, aggregator, lambda: aggregator.writer, "aggregator")
        read_topic(fault_settings, "alpr_group", "alpr_group", count=sum(expected.values()), timeout_s=120)
        time.sleep(2)
        groups = read_topic(fault_settings, "alpr_group", "alpr_group", timeout_s=10)
        assert_recovered_in_place(thread, outcome)
    assert Counter(tuple(g["uuids"]) for _, g in groups) == expected
    assert outcome.commits_before < len(records) / 8, "the stream was over before the fault: nothing was tested"


class _SlowStore(StoreWriter):
    def _write_batch(self, polled: Any) -> Any:
        time.sleep(0.3)
        return super()._write_batch(polled)


@pytest.mark.parametrize("fault", ["freeze", "kill"])
def test_the_store_writer_rides_out_a_broker_fault(
    fault: str, fault_broker: LocalBroker, fault_settings: Settings, tmp_path: Path
) -> None:
    from platestream.kafka import codec, make_producer

    records = [group(f"AB{n:03d}CD", n % 3, DAY + n * 1000) for n in range(60)]
    producer = make_producer(fault_settings)
    encode = codec(fault_settings, "alpr_group").encode
    for n, record in enumerate(records):
        producer.send(fault_settings.topic_name("alpr_group"), encode(record), key=str(record["camera_id"]).encode())
        if n % 10 == 0:  # a record no store takes: one dead letter each, exactly once
            producer.send(fault_settings.topic_name("alpr_group"), b"\x05 broken " + bytes([n]), key=b"0")
    producer.flush()
    producer.close()
    database = tmp_path / "store.db"
    settings = StoreSettings(**fault_settings.model_dump() | FAULT_SETTINGS, sqlite_path=database, batch_size=4,
                             group_id=fault_settings.topic_prefix + "store",
                             transactional_id=fault_settings.topic_prefix + "store-0")  # fmt: skip
    writer = _SlowStore(settings)
    with running(writer) as thread:
        outcome = inflict(fault, fault_broker, writer, lambda: writer.writer, "store")
        letters = read_topic(fault_settings, "dead_letter", "dead_letter", count=6, timeout_s=120)
        deadline = time.monotonic() + 60
        while _stored(database).total() < len(records):
            assert time.monotonic() < deadline, "groups missing from the store"
            time.sleep(0.5)
        time.sleep(2)
        letters = read_topic(fault_settings, "dead_letter", "dead_letter", timeout_s=10)
        assert_recovered_in_place(thread, outcome)
    assert _stored(database) == Counter(record["best_plate_number"] for record in records)
    offsets = Counter(letter["source_offset"] for _, letter in letters)
    assert len(offsets) == 6
    assert set(offsets.values()) == {1}, "a dead letter was written twice"
    assert outcome.commits_before < 66 / 4, "the stream was over before the fault: nothing was tested"


def _stored(database: Path) -> Counter[str]:
    import sqlite3

    if not database.exists():
        return Counter()
    with sqlite3.connect(database) as connection:
        return Counter(row[0] for row in connection.execute("SELECT plate FROM plate_groups"))


def test_a_partition_read_to_its_end_is_known_to_be_read_after_the_broker_returns(
    fault_broker: LocalBroker, fault_settings: Settings
) -> None:
    """The idle flush of a backfill's last groups waits until its partition is read to the end. A
    broker restart makes the group forget the consumer, which joins again with fresh partition
    state; with nothing new to fetch, the consumer must still learn that it is at the end, or the
    last vehicles of the backfill are never sent."""
    from kafka import ConsumerRebalanceListener, TopicPartition

    from platestream.kafka import make_consumer, make_producer
    from platestream.transactions import caught_up

    class Joins(ConsumerRebalanceListener):  # type: ignore[misc]
        count = 0

        def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
            return

        def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
            Joins.count += 1

    topic = fault_settings.topic_name("alpr_results")
    producer = make_producer(fault_settings)
    for n in range(6):
        producer.send(topic, b"x", partition=n % 2)
    producer.flush()
    producer.close()
    consumer = make_consumer(fault_settings, group_id=fault_settings.topic_prefix + "ends", session_timeout_ms=6000)
    consumer.subscribe([topic], listener=Joins())
    tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
    try:
        read, deadline = 0, time.monotonic() + 60
        while not (read == 6 and all(caught_up(consumer, tp) for tp in tps)):
            assert time.monotonic() < deadline, "never read to the end"
            read += sum(map(len, consumer.poll(timeout_ms=300).values()))
        consumer.commit()
        fault_broker.kill()
        time.sleep(DOWN_S)
        fault_broker.start()
        joins, deadline = Joins.count, time.monotonic() + 60
        while Joins.count == joins:
            assert time.monotonic() < deadline, "the consumer never joined the group again: nothing was tested"
            assert not consumer.poll(timeout_ms=300), "nothing new was sent"
        deadline = time.monotonic() + 20
        while not all(caught_up(consumer, tp) for tp in tps):
            assert time.monotonic() < deadline, "the consumer never knew again that it had read everything"
            assert not consumer.poll(timeout_ms=300), "nothing new was sent"
    finally:
        consumer.close()
