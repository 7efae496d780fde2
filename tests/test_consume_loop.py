"""The consume-transform-produce loop every service runs: on the real broker, a batch whose
transaction fails is read and stepped again, and each input ends in exactly one committed output."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from kafka.errors import KafkaTimeoutError

from platestream.consume_loop import by_partition, gather, next_offsets, run_batches
from platestream.kafka import Send, make_consumer, make_producer, read_to_end
from platestream.service import Progress, StallLimits
from platestream.settings import Settings, StoreSettings
from platestream.transactions import TransactionalWriter

pytestmark = pytest.mark.kafka


def _send_inputs(settings: Settings, count: int) -> list[bytes]:
    values = [f"input-{n}".encode() for n in range(count)]
    producer = make_producer(settings)
    for n, value in enumerate(values):
        producer.send(settings.topic_name("frames"), value, partition=n % 2)
    producer.flush()
    producer.close()
    return values


def test_a_failed_batch_is_stepped_again_and_every_input_lands_once(
    kafka_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import platestream.transactions
    from platestream.kafka import transact as real_transact

    values = _send_inputs(kafka_settings, 30)
    settings = StoreSettings(**kafka_settings.model_dump(), group_id=kafka_settings.topic_prefix + "loop")
    failures = [2]  # the second transaction fails

    def flaky_transact(producer: Any, sends: Any, *args: Any, **kwargs: Any) -> None:
        failures[0] -= 1
        if failures[0] == 0:
            raise KafkaTimeoutError("the broker did not answer (test)")
        real_transact(producer, sends, *args, **kwargs)

    monkeypatch.setattr(platestream.transactions, "transact", flaky_transact)
    stepped: list[bytes] = []
    reloads: list[int] = []
    output = kafka_settings.topic_name("alpr_replies")

    def step(messages: list[Any]) -> list[Send]:
        stepped.extend(m.value for m in messages)
        return [Send(output, m.value, m.key) for m in messages]

    consumer = make_consumer(settings, "frames", group_id=settings.group_id)
    writer = TransactionalWriter(settings, kafka_settings.topic_prefix + "loop-0", transaction_timeout_ms=10000,
                                 service="test", stopping=lambda: False)  # fmt: skip
    try:
        writer.open()
        run_batches(consumer, writer, step, batch_size=7, batch_wait_ms=100, stopping=lambda: False,
                    progress=Progress(StallLimits()), reload=lambda: reloads.append(1), until_idle_s=2)  # fmt: skip
    finally:
        consumer.close()
        writer.close()
    written = Counter(message.value for message in read_to_end(settings, output))
    assert written == Counter(values), "each input once in the output"
    assert reloads == [1], "the failed batch made the service reload its state once"
    assert len(stepped) > len(values), "the failed batch was stepped again"


def test_gather_takes_a_batch_at_most_and_waits_only_when_told(kafka_settings: Settings) -> None:
    _send_inputs(kafka_settings, 10)
    consumer = make_consumer(kafka_settings, "frames", group_id=kafka_settings.topic_prefix + "gather")
    try:
        batches: list[list[Any]] = []
        while sum(len(batch) for batch in batches) < 10:
            batch = gather(consumer, batch_size=4, wait_ms=200, stopping=lambda: False)
            assert batch, "the records are there to be read"
            batches.append(batch)
        assert all(len(batch) <= 4 for batch in batches)
        assert gather(consumer, batch_size=4, wait_ms=200, stopping=lambda: False, block=False) == []
        messages = [m for batch in batches for m in batch]
        offsets = next_offsets(messages)
        grouped = by_partition(messages)
        assert {tp: len(ms) for tp, ms in grouped.items()} == {tp: 5 for tp in grouped}
        assert {tp.partition: o.offset for tp, o in offsets.items()} == {0: 5, 1: 5}
    finally:
        consumer.close()


def test_a_partition_the_client_stopped_fetching_is_fetched_again(kafka_settings: Settings) -> None:
    """The client stops fetching one partition while records wait in it (here: paused behind the
    loop's back, as a client whose fetch state got stuck behaves): the watch notices within its
    time, resets that partition's fetching, and every input is still read once."""

    values = _send_inputs(kafka_settings, 20)
    settings = StoreSettings(**kafka_settings.model_dump(), group_id=kafka_settings.topic_prefix + "watch")
    output = kafka_settings.topic_name("alpr_replies")
    consumer = make_consumer(settings, "frames", group_id=settings.group_id)
    writer = TransactionalWriter(settings, kafka_settings.topic_prefix + "watch-0", transaction_timeout_ms=10000,
                                 service="test", stopping=lambda: False)  # fmt: skip
    stuck: list[Any] = []
    reported: list[str] = []

    def step(messages: list[Any]) -> list[Send]:
        if not stuck and messages:
            other = next(tp for tp in consumer.assignment() if tp.partition != messages[0].partition)
            consumer.pause(other)  # from now on the client does not fetch it
            stuck.append(other)
        return [Send(output, m.value, m.key) for m in messages]

    class Reporting(Progress):
        def blocked(self, reason: str) -> None:
            reported.append(reason)
            super().blocked(reason)

    try:
        writer.open()
        run_batches(consumer, writer, step, batch_size=3, batch_wait_ms=50, stopping=lambda: False,
                    progress=Reporting(StallLimits()), until_idle_s=8, stalled_after_s=3)  # fmt: skip
    finally:
        consumer.close()
        writer.close()
    assert stuck, "a partition was stuck"
    assert any("are not fetched" in reason for reason in reported), "the stall was reported"
    written = Counter(message.value for message in read_to_end(settings, output))
    assert written == Counter(values), "each input once in the output"


def test_a_consumer_given_back_its_partitions_reads_on_from_what_the_group_committed(kafka_settings: Settings) -> None:
    """A member paused past its poll interval loses its partitions; another reads them and commits;
    when the first polls again and is given them back, it must not read on from the position it
    kept (kafka-python keeps it): that work was done and committed by the other member."""
    import time

    from kafka import TopicPartition
    from kafka.structs import OffsetAndMetadata

    values = _send_inputs(kafka_settings, 20)
    group = kafka_settings.topic_prefix + "handover"
    timeouts = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1500, "max_poll_interval_ms": 6500}
    first = make_consumer(kafka_settings, "frames", group_id=group, **timeouts)
    early = gather(first, batch_size=6, wait_ms=0, stopping=lambda: False)
    deadline = time.monotonic() + 30
    while not early and time.monotonic() < deadline:
        early = gather(first, batch_size=6, wait_ms=0, stopping=lambda: False)
    assert early, "the first member read nothing"
    time.sleep(9)  # no poll for longer than max_poll_interval_ms: the first member leaves the group
    second = make_consumer(kafka_settings, "frames", group_id=group, **timeouts)
    taken: list[Any] = []
    deadline = time.monotonic() + 60
    while len(taken) < len(values) and time.monotonic() < deadline:
        taken += gather(second, batch_size=20, wait_ms=200, stopping=lambda: False)
    assert sorted(m.value for m in taken) == sorted(values)  # it read everything, from the start
    second.commit({TopicPartition(kafka_settings.topic_name("frames"), p): OffsetAndMetadata(10, "", -1)
                   for p in (0, 1)})  # fmt: skip
    second.close()
    again: list[Any] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not first.assignment():
        again += gather(first, batch_size=20, wait_ms=200, stopping=lambda: False)
    for _ in range(5):
        again += gather(first, batch_size=20, wait_ms=200, stopping=lambda: False)
    first.close()
    assert again == []  # nothing before the committed offsets is read twice


def _first_batch(consumer: Any, size: int) -> list[Any]:
    """A group member's first batch (it joins the group on the way)."""
    import time

    batch: list[Any] = []
    deadline = time.monotonic() + 30
    while not batch and time.monotonic() < deadline:
        batch = gather(consumer, batch_size=size, wait_ms=500, stopping=lambda: False)
    assert batch, "the member read nothing"
    return batch


def test_a_batch_read_before_a_rebalance_is_not_committed_after_it(kafka_settings: Settings) -> None:
    """The worker reads its next batch while it finishes the last, so a rebalance can come between
    reading a batch and committing it. Committed with the group metadata of its reading, the batch
    is refused once the group has moved on (it is read again by whoever owns its partition now);
    with the metadata of the moment of commit, the broker would take it beside the new owner's."""
    import time

    from kafka import TopicPartition
    from kafka.errors import KafkaError

    _send_inputs(kafka_settings, 20)
    group = kafka_settings.topic_prefix + "generations"
    first = make_consumer(kafka_settings, "frames", group_id=group)
    batch = _first_batch(first, 20)
    read_as = first.group_metadata()
    second = make_consumer(kafka_settings, "frames", group_id=group)
    # Usually about 4 s; once in a CI run the group had not rebalanced after 60 s (the broker may hold
    # a join for a member that has not rejoined yet): the deadline leaves room for that.
    started = time.monotonic()
    while time.monotonic() < started + 150 and not (second.assignment() and len(first.assignment()) == 1):
        first.poll(timeout_ms=200)
        second.poll(timeout_ms=200)
    waited = round(time.monotonic() - started)
    assert len(first.assignment()) == 1, f"no rebalance in {waited} s: second holds {second.assignment()}"
    settings = StoreSettings(**kafka_settings.model_dump(), group_id=group)
    writer = TransactionalWriter(settings, kafka_settings.topic_prefix + "gen-0", transaction_timeout_ms=10_000,
                                 service="test", stopping=lambda: False, progress=Progress(StallLimits()))  # fmt: skip
    writer.open()
    try:
        refused = writer.commit([], next_offsets(batch), first, read_as)
        assert isinstance(refused, KafkaError), "a batch of the old generation was committed"
        writer.recover()
        committed = {tp.partition: first.committed(tp) for tp in (TopicPartition(kafka_settings.topic_name("frames"), p)
                                                                   for p in (0, 1))}  # fmt: skip
        assert committed == {0: None, 1: None}  # nothing of it reached the group's offsets
    finally:
        writer.close()
        first.close()
        second.close()


def test_a_batch_read_while_the_consumer_was_no_member_of_its_group_is_not_committed(kafka_settings: Settings) -> None:
    """A worker paused past its session timeout loses its membership; woken, it still holds its
    partitions until it has rejoined, and may read a batch meanwhile (generation -1). The broker
    takes offsets of generation -1 without a generation check, beside the work of the member that
    owns the partition now (found in a soak: 4 frames with two results): such a batch is refused."""

    from kafka import TopicPartition
    from kafka.errors import CommitFailedError

    _send_inputs(kafka_settings, 10)
    group = kafka_settings.topic_prefix + "unjoined"
    consumer = make_consumer(kafka_settings, "frames", group_id=group)
    batch = _first_batch(consumer, 10)
    consumer._coordinator.reset_generation()  # what kafka-python does on UnknownMemberId
    read_as = consumer.group_metadata()
    assert read_as.generation_id < 0
    settings = StoreSettings(**kafka_settings.model_dump(), group_id=group)
    writer = TransactionalWriter(settings, kafka_settings.topic_prefix + "unjoined-0", transaction_timeout_ms=10_000,
                                 service="test", stopping=lambda: False, progress=Progress(StallLimits()))  # fmt: skip
    writer.open()
    try:
        sends = [Send(kafka_settings.topic_name("dead_letter"), b"not to be seen", None)]
        refused = writer.commit(sends, next_offsets(batch), consumer, read_as)
        assert isinstance(refused, CommitFailedError), "a batch read outside the group was committed"
        assert "no member of group" in str(refused)
        topic = kafka_settings.topic_name("frames")
        committed = {p: consumer.committed(TopicPartition(topic, p)) for p in (0, 1)}
        assert committed == {0: None, 1: None}, "its offsets reached the group"
    finally:
        writer.close()
        consumer.close()
    assert list(read_to_end(kafka_settings, kafka_settings.topic_name("dead_letter"))) == [], "its records were seen"


def test_recovery_rides_out_a_cluster_that_cannot_be_reached_for_a_while() -> None:
    """A broker down longer than a new client's bootstrap timeout (a slow restart) makes making the
    new producer fail; the service goes on trying (until asked to stop), it does not die."""
    import threading
    import time

    from platestream.broker import free_port

    nowhere = {"kafka_bootstrap": f"127.0.0.1:{free_port()}", "kafka_connect_timeout_ms": 500,
               "kafka_retry_backoff_max_ms": 200}  # fmt: skip
    settings = StoreSettings.model_validate(nowhere)
    stop = threading.Event()
    writer = TransactionalWriter(settings, "nowhere-0", transaction_timeout_ms=10_000, service="test",
                                 stopping=stop.is_set, progress=Progress(StallLimits()))  # fmt: skip
    threading.Timer(4.0, stop.set).start()
    started = time.monotonic()
    assert writer.recover() is False, "it stopped when asked, not before"
    assert time.monotonic() - started >= 3.5, "it kept trying while the cluster was away"
