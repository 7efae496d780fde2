"""A three-node cluster as production runs one: topics in three copies, two in sync. A broker, and
then the active controller, are killed and brought back mid-stream, as a rolling upgrade or a
crash does; the worker and the aggregator go on by themselves and every input ends in exactly one
committed output."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from platestream.aggregator.service import Aggregator
from platestream.broker import LocalCluster
from platestream.kafka import create_topics, make_admin, read_topic
from platestream.service import Service, in_thread
from platestream.settings import Settings
from platestream.transactions import TransactionalWriter
from platestream.workers.engine import Engine
from platestream.workers.service import Worker
from tests.test_aggregator_service import aggregator_settings, expected_groups, send_results, traffic
from tests.worker_tools import SharedEngine, frame_record, plate_jpeg, send_frames, worker_settings

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

DOWN_S = 3.0
FAULTS = {"session_timeout_ms": 6000, "transaction_timeout_ms": 10000, "kafka_request_timeout_ms": 10000,
          "kafka_retry_backoff_max_ms": 1000, "health_port": 0}  # fmt: skip


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    nodes = LocalCluster(tmp_path_factory.mktemp("cluster"), size=3)
    nodes.start()
    try:
        yield nodes
    finally:
        for node in nodes.nodes.values():
            if node.state() is not None:
                node.thaw()
        nodes.stop()


@pytest.fixture
def cluster_settings(cluster: LocalCluster, tmp_path: Path) -> Settings:
    settings = Settings.model_validate({"kafka_bootstrap": cluster.bootstrap, "state_dir": tmp_path / "state",
                                        "topic_prefix": f"c{time.monotonic_ns() % 10**9}."})  # fmt: skip
    create_topics(settings, partitions=2)
    return settings


def test_topics_are_kept_in_three_copies_with_two_in_sync(cluster_settings: Settings) -> None:
    from kafka.admin import ConfigResource, ConfigResourceType

    admin = make_admin(cluster_settings)
    topic = cluster_settings.topic_name("alpr_results")
    try:
        deadline = time.monotonic() + 30
        while True:
            (described,) = admin.describe_topics([topic])
            if described["partitions"] or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert [sorted(p["replica_nodes"]) for p in described["partitions"]] == [[1, 2, 3], [1, 2, 3]]
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all")
        assert configs["topic"][topic]["min.insync.replicas"]["value"] == "2"
    finally:
        admin.close()


def _ride_out_a_broker_and_the_controller(cluster: LocalCluster, writer: Callable[[], TransactionalWriter],
                                          service: Service) -> list[str]:  # fmt: skip
    """Kill a broker that is not the controller, then the controller, each once the service has
    committed again; bring each back after DOWN_S. What was killed, in order."""
    killed = []
    for pick in ("broker", "controller"):
        deadline = time.monotonic() + 120
        before = writer().commits if hasattr(service, "writer") else 0
        while (not hasattr(service, "writer") or writer().commits < before + 2) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert writer().commits >= before + 2, f"the service did not commit before the {pick} was killed"
        leader = cluster.controller()
        node = leader if pick == "controller" else next(n for n in cluster.nodes if n != leader)
        cluster.node(node).kill()
        killed.append(f"{pick} {node}")
        time.sleep(DOWN_S)
        cluster.node(node).start()
    return killed


def test_the_worker_loses_and_doubles_no_frame_when_a_broker_and_the_controller_die(
    cluster: LocalCluster, cluster_settings: Settings, engine: Engine
) -> None:
    texts = ["AB12CDE", "XY98ZZT", "KL35PQR"]
    images = {text: plate_jpeg(text) for text in texts}
    frames = [frame_record(camera, n, image=images[texts[n % 3]]) for n in range(40) for camera in ("41", "42")]
    send_frames(cluster_settings, frames)
    worker = Worker(worker_settings(cluster_settings, batch_size=4, **FAULTS), engine=SharedEngine(engine, 0.3))
    with in_thread(worker, name="worker") as thread:
        killed = _ride_out_a_broker_and_the_controller(cluster, lambda: worker.writer, worker)
        read_topic(cluster_settings, "alpr_results", "alpr_results", count=len(frames), timeout_s=180)
        time.sleep(2)  # anything duplicated would arrive now
        results = read_topic(cluster_settings, "alpr_results", "alpr_results", timeout_s=10)
        assert thread.is_alive(), "the worker died: it must ride the faults out"
    seen = Counter((r["camera_id"], r["frame_number"]) for _, r in results)
    assert {frame: n for frame, n in seen.items() if n > 1} == {}, "duplicated results"
    assert {(int(f["camera_id"]), f["frame_number"]) for f in frames} - set(seen) == set(), "lost frames"
    assert len(killed) == 2


def test_the_aggregator_loses_and_doubles_no_group_when_a_broker_and_the_controller_die(
    cluster: LocalCluster, cluster_settings: Settings
) -> None:
    class Slow(Aggregator):
        def _consume(self, messages: list[Any]) -> Any:
            if messages:
                time.sleep(0.3)
            return super()._consume(messages)

    records = traffic(24, seed=5)
    send_results(cluster_settings, records)
    expected = expected_groups(records)
    aggregator = Slow(aggregator_settings(cluster_settings, batch_size=8, idle_flush_ms=4000, **FAULTS))
    with in_thread(aggregator, name="aggregator") as thread:
        _ride_out_a_broker_and_the_controller(cluster, lambda: aggregator.writer, aggregator)
        read_topic(cluster_settings, "alpr_group", "alpr_group", count=sum(expected.values()), timeout_s=180)
        time.sleep(2)
        groups = read_topic(cluster_settings, "alpr_group", "alpr_group", timeout_s=10)
        assert thread.is_alive(), "the aggregator died: it must ride the faults out"
    assert Counter(tuple(g["uuids"]) for _, g in groups) == expected


def _transaction_partition(transactional_id: str, partitions: int = 6) -> int:
    """The __transaction_state partition (so the coordinator) of an id, as Kafka computes it."""
    code = 0
    for char in transactional_id:
        code = (31 * code + ord(char)) & 0xFFFFFFFF  # Java's String.hashCode
    return (code & 0x7FFFFFFF) % partitions


def test_a_service_starting_while_its_transaction_coordinator_is_down_waits_for_it(
    cluster: LocalCluster, cluster_settings: Settings
) -> None:
    """A pod restarted while one broker of three is away (a rolling upgrade) starts once the
    cluster has moved that broker's transaction coordinators, instead of exiting."""
    from platestream.kafka import Send
    from platestream.settings import ServiceSettings

    timeouts = {key: value for key, value in FAULTS.items() if key != "health_port"}
    settings = ServiceSettings.model_validate(cluster_settings.model_dump() | timeouts)
    first = TransactionalWriter(settings, "c-warm-up", transaction_timeout_ms=10_000, service="test",
                                stopping=lambda: False)  # fmt: skip
    first.open()  # the transaction log exists from here
    first.close()
    transactional_id = cluster_settings.topic_prefix + "starter"
    admin = make_admin(cluster_settings)
    try:
        (described,) = admin.describe_topics(["__transaction_state"])
    finally:
        admin.close()
    partition = _transaction_partition(transactional_id)
    coordinator = next(p["leader_id"] for p in described["partitions"] if p["partition_index"] == partition)
    cluster.node(coordinator).kill()
    try:
        writer = TransactionalWriter(settings, transactional_id, transaction_timeout_ms=10_000, service="test",
                                     stopping=lambda: False)  # fmt: skip
        writer.open()
        sent = Send(cluster_settings.topic_name("heartbeat"), b"started", None)
        assert writer.commit([sent]) is None, "it writes once open"
        writer.close()
    finally:
        cluster.node(coordinator).start()
