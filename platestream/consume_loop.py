"""The consume-transform-produce loop that every Kafka service runs, written once.

A batch of input records is gathered, turned into output records by the service's `step`, and the
outputs are committed in one transaction with the offsets that the batch consumed. When the
transaction fails, or the broker goes away between transactions, nothing of the batch is
visible: the writer opens a new producer, the consumer goes back to the group's committed offsets,
the service reloads whatever state it keeps (`reload`), and the batch is read again. The worker,
which overlaps decoding one batch with recognising the one before, uses the same pieces (`gather`,
`next_offsets`, the writer's `commit` and `recover`) in a loop of its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from platestream.kafka import Send, make_consumer, take_reassigned
from platestream.log import get_logger
from platestream.service import Progress, Service
from platestream.settings import ServiceSettings
from platestream.transactions import TransactionalWriter, input_waiting, rewind_to_committed

log = get_logger(__name__)

FIRST_RECORD_WAIT_MS = 500  # how long one poll waits for a batch's first record
END_OFFSETS_TIMEOUT_MS = 5000  # the client's own wait for them has no end while a broker is away
STALLED_PARTITION_S = 60.0  # records waiting in an owned partition this long, none read: its fetching is reset

Step = Callable[[list[Any]], list[Send]]


def gather(
    consumer: KafkaConsumer, *, batch_size: int, wait_ms: int, stopping: Callable[[], bool], block: bool = True
) -> list[Any]:
    """Up to `batch_size` records: the first waited for up to FIRST_RECORD_WAIT_MS (not at all
    without `block`: only what the consumer has already fetched), then more for at most `wait_ms`.
    An empty list when nothing came."""
    messages: list[Any] = []
    deadline: float | None = None
    while len(messages) < batch_size and not stopping():
        if deadline is None:
            timeout = FIRST_RECORD_WAIT_MS if block else 0
        else:
            timeout = max(0, int((deadline - time.monotonic()) * 1000))
        for records in consumer.poll(timeout_ms=timeout, max_records=batch_size - len(messages)).values():
            messages.extend(records)
        reassigned = take_reassigned(consumer)
        if reassigned:
            # A rebalance in this poll: what was read may come from positions kept from before it,
            # behind what another member committed since. Drop it, and start every owned partition
            # again from the commits (what was dropped of a partition kept is read again too).
            log.info("rebalanced_rewound", partitions=len(reassigned), dropped=len(messages))
            rewind_to_committed(consumer)
            messages, deadline = [], None
            continue
        if deadline is None:
            if not messages:
                return []
            deadline = time.monotonic() + (wait_ms / 1000 if block else 0)
        if time.monotonic() >= deadline:
            break
    return messages


def next_offsets(messages: list[Any]) -> dict[TopicPartition, OffsetAndMetadata]:
    """The offsets to commit once `messages` are done: one past the last of each partition."""
    offsets: dict[TopicPartition, OffsetAndMetadata] = {}
    for message in messages:
        offsets[TopicPartition(message.topic, message.partition)] = OffsetAndMetadata(message.offset + 1, "", -1)
    return offsets


def by_partition(messages: list[Any]) -> dict[TopicPartition, list[Any]]:
    """`messages` grouped by their partition, each in offset order as read."""
    grouped: dict[TopicPartition, list[Any]] = {}
    for message in messages:
        grouped.setdefault(TopicPartition(message.topic, message.partition), []).append(message)
    return grouped


class PartitionWatch:
    """Partitions the consumer owns whose committed records wait unread for `after_s`. After
    repeated broker failures the Kafka client was seen to go on polling without ever fetching one
    partition again; the watch gives such a partition a fresh fetch state (seek to its position,
    resume) and reports it, so the service says it is stalled until records come again."""

    def __init__(self, after_s: float = STALLED_PARTITION_S) -> None:
        self.after_s = after_s
        self.stalled: list[TopicPartition] = []
        self._read: dict[TopicPartition, float] = {}
        self._checked = time.monotonic()

    def saw(self, messages: list[Any]) -> None:
        now = time.monotonic()
        for message in messages:
            self._read[TopicPartition(message.topic, message.partition)] = now
        if messages:
            self.stalled = [tp for tp in self.stalled if tp not in self._read or self._read[tp] < now]

    def check(self, consumer: KafkaConsumer) -> list[TopicPartition]:
        """The stalled partitions, asked of the broker at most every `after_s` / 3."""
        now = time.monotonic()
        if now - self._checked < self.after_s / 3:
            return self.stalled
        self._checked = now
        owned = list(consumer.assignment())
        for tp in owned:
            self._read.setdefault(tp, now)
        try:
            ends = consumer.end_offsets(owned, timeout_ms=END_OFFSETS_TIMEOUT_MS) if owned else {}
            positions = {tp: consumer.position(tp, timeout_ms=1000) for tp in owned}
        except KafkaError:
            return self.stalled  # the broker does not say now: ask again later
        self.stalled = [tp for tp in owned if positions[tp] is not None and positions[tp] < ends[tp]
                        and now - self._read[tp] >= self.after_s]  # fmt: skip
        for tp in self.stalled:
            log.warning("partition_not_fetched", topic=tp.topic, partition=tp.partition, position=positions[tp],
                        end=ends[tp], unread_s=round(now - self._read[tp], 1))  # fmt: skip
            consumer.resume(tp)
            consumer.seek(tp, positions[tp])
            self._read[tp] = now  # another after_s before it counts again
        return self.stalled

    def describe(self) -> str:
        names = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in self.stalled)
        return f"records waiting in {names} are not fetched; its fetching was reset"


def note_idle(consumer: KafkaConsumer, watch: PartitionWatch, progress: Progress) -> None:
    """A poll that brought nothing: caught up (progress), unless a partition is stalled."""
    if watch.check(consumer):
        progress.blocked(watch.describe())
    elif not input_waiting(consumer):
        progress.advanced()


def run_batches(
    consumer: KafkaConsumer, writer: TransactionalWriter, step: Step, *, batch_size: int, batch_wait_ms: int,
    stopping: Callable[[], bool], progress: Progress, reload: Callable[[], None] | None = None,
    until_idle_s: float | None = None, on_committed: Callable[[list[Any]], object] = lambda messages: None,
    stalled_after_s: float = STALLED_PARTITION_S,
) -> None:  # fmt: skip
    """Gather, `step`, commit, until `stopping` (or `until_idle_s` without a record). `step` gets
    each batch, empty ones too (a service may have output of its own to send: groups gone idle),
    and returns the records to send; its work must be redone the same way when a batch is read
    again. `reload` puts the service's own state back as of the last commit."""
    idle_since = time.monotonic()
    watch = PartitionWatch(stalled_after_s)
    while not stopping():
        try:
            messages = gather(consumer, batch_size=batch_size, wait_ms=batch_wait_ms, stopping=stopping)
            watch.saw(messages)
            sends = step(messages)
            if not messages and not sends:
                note_idle(consumer, watch, progress)
                if until_idle_s is not None and time.monotonic() - idle_since > until_idle_s:
                    return
                continue
            if messages:
                idle_since = time.monotonic()
            error = writer.commit(sends, next_offsets(messages), consumer)
            if error is None:
                on_committed(messages)
                continue
            log.warning("batch_aborted", service=writer.service, error=str(error), records=len(messages))
        except KafkaError as error:  # the broker went away outside a transaction
            log.warning("kafka_error", service=writer.service, error=str(error), kind=type(error).__name__)
            progress.blocked(f"Kafka: {error}")
        writer.recover(consumer, then=reload)  # the batch is read, and stepped, again


class BatchService(Service):
    """A service that reads one topic in its consumer group and commits what each batch gives
    (records, dead letters) with the batch's offsets: the store writer, the webhook sender, the
    alert matcher. Subclasses set `kind`, `transactional_id` and `settings`, and give `step`."""

    transactional_id: str
    writer: TransactionalWriter

    def serve_batches(
        self, settings: ServiceSettings, topic: str, step: Step, *, group_id: str, batch_size: int,
        until_idle_s: float | None, on_committed: Callable[[list[Any]], object] = lambda messages: None,
        **started: object,
    ) -> None:  # fmt: skip
        """Run the loop on `topic` until stopped (or idle for `until_idle_s`); close the clients."""
        consumer = make_consumer(settings, topic, group_id=group_id, max_poll_records=batch_size,
                                 session_timeout_ms=settings.session_timeout_ms,
                                 heartbeat_interval_ms=settings.session_timeout_ms // 4)  # fmt: skip
        writer = self.writer = TransactionalWriter(
            settings, self.transactional_id, transaction_timeout_ms=settings.transaction_timeout_ms,
            service=self.kind, stopping=lambda: self._stopping, progress=self.progress,
        )  # fmt: skip
        try:
            writer.open()
            self._ready = True
            log.info(f"{self.kind}_started", transactional_id=self.transactional_id, group_id=group_id, **started)
            run_batches(
                consumer, writer, step, batch_size=batch_size, batch_wait_ms=0, stopping=lambda: self._stopping,
                progress=self.progress, until_idle_s=until_idle_s, on_committed=on_committed,
                stalled_after_s=settings.stalled_partition_s,
            )  # fmt: skip
        finally:
            self._ready = False
            consumer.close()
            writer.close()
