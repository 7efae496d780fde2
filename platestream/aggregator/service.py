"""`platestream aggregate`: alpr_results in, alpr_group out, exactly once.

Each alpr_results partition has its own grouper. Every transaction holds the groups it closed,
a snapshot of the open groups of each partition it touched (on aggregator_state, same partition
number), and the consumed offsets; a restarted or newly assigned instance restores the snapshot
and goes on from the committed offsets, so no group is lost or sent twice.
"""

from __future__ import annotations

import json
import socket
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition

from platestream.aggregator.grouping import Grouper, GroupingConfig, reads_from_results, restore, snapshot
from platestream.aggregator.records import alpr_group
from platestream.consume_loop import run_batches
from platestream.deadletter import Origin, dead_letter, service_name
from platestream.errors import ConfigError, SchemaError
from platestream.kafka import Send, codec, make_consumer, read_to_end, subscribe
from platestream.log import get_logger
from platestream.service import ProgressLog, Service, StallLimits, run_until_signalled
from platestream.settings import AggregatorSettings
from platestream.transactions import TransactionalWriter, caught_up

log = get_logger(__name__)


def grouping_config(settings: AggregatorSettings) -> GroupingConfig:
    return GroupingConfig(
        time_delta_ms=settings.plate_groups_time_delta_ms,
        min_plates=settings.plate_groups_min_plates_to_group,
        min_confidence=settings.plate_groups_min_confidence,
        max_plates=settings.plate_groups_max_plates_to_group,
        max_delay_ms=settings.plate_groups_max_delay_to_send,
        span_cameras=settings.plate_groups_span_cameras,
        lateness_ms=settings.group_lateness_ms,
    )


class Aggregator(Service):
    kind = "aggregator"

    def __init__(self, settings: AggregatorSettings) -> None:
        super().__init__(settings.health_port, StallLimits(settings.stall_not_ready_s, settings.stall_not_alive_s))
        self.settings = settings
        self.totals = {"results": 0, "commits": 0}
        self.progress_log = ProgressLog("aggregator_progress", settings.progress_log_s)
        self.config = grouping_config(settings)
        self.transactional_id = settings.transactional_id or f"platestream-aggregator-{socket.gethostname()}"
        self.groupers: dict[int, Grouper] = {}
        self.last_read: dict[int, float] = {}
        self.positions: dict[int, int] = {}  # next offset to read, per input partition
        self.to_restore: set[int] = set()  # assigned partitions whose open groups are not loaded yet
        self.service = service_name("aggregator")
        self._codecs = {name: codec(settings, name) for name in ("alpr_results", "alpr_group", "dead_letter",
                                                                 "aggregator_state")}  # fmt: skip
        self.input_topic = settings.topic_name("alpr_results")
        self.state_topic = settings.topic_name("aggregator_state")

    def run(self) -> None:
        with self.serving_health():
            self._run()

    def _run(self) -> None:
        settings = self.settings
        consumer = make_consumer(
            settings, group_id=settings.group_id, max_poll_records=settings.batch_size,
            session_timeout_ms=settings.session_timeout_ms, heartbeat_interval_ms=settings.session_timeout_ms // 4,
        )  # fmt: skip
        self._check_span_cameras(consumer)
        subscribe(consumer, [self.input_topic], listener=_Restorer(self))
        writer = self.writer = TransactionalWriter(
            settings, self.transactional_id, transaction_timeout_ms=settings.transaction_timeout_ms,
            service="aggregator", stopping=lambda: self._stopping, progress=self.progress,
        )  # fmt: skip
        try:
            writer.open()
            self._ready = True
            log.info("aggregator_started", transactional_id=self.transactional_id)
            run_batches(
                consumer, writer, lambda messages: self._step(messages, consumer), batch_size=settings.batch_size,
                batch_wait_ms=settings.batch_wait_ms, stopping=lambda: self._stopping, progress=self.progress,
                reload=lambda: self._reload(consumer), on_committed=self._committed,
                stalled_after_s=settings.stalled_partition_s,
            )  # fmt: skip
        finally:
            self._ready = False
            consumer.close()
            writer.close()
            log.info("aggregator_stopped")

    def _step(self, messages: list[Any], consumer: KafkaConsumer) -> list[Send]:
        """A batch's closed groups, the groups gone idle, and a snapshot of the open groups of each
        partition it touched."""
        self._restore_assigned()
        sends, touched = self._consume(messages)
        sends += self._flush_idle(touched, consumer)
        if not sends and not messages:
            return []
        return sends + [self._state_send(partition) for partition in sorted(touched)]

    def _committed(self, messages: list[Any]) -> None:
        self.totals["results"] += len(messages)
        self.totals["commits"] += 1
        self.progress_log.update(self.totals)

    def _check_span_cameras(self, consumer: KafkaConsumer) -> None:
        """Results are keyed by camera, and each partition has its own grouper: cameras of one site
        meet in one grouper only when the input topic has one partition."""
        if not self.settings.plate_groups_span_cameras:
            return
        partitions = consumer.partitions_for_topic(self.input_topic) or set()
        if len(partitions) > 1:
            consumer.close()
            raise ConfigError(
                f"PLATESTREAM_PLATE_GROUPS_SPAN_CAMERAS=true cannot hold: {self.input_topic} has {len(partitions)}"
                " partitions and results are keyed by camera, so reads of one vehicle at two cameras would land"
                " in different groupers; give it one partition (a topic of its own), or leave cameras apart"
            )

    def _consume(self, messages: list[Any]) -> tuple[list[Send], set[int]]:
        """The groups that `messages` close, and the partitions they touched."""
        sends: list[Send] = []
        touched: set[int] = set()
        now = time.monotonic()
        for message in messages:
            partition = message.partition
            touched.add(partition)
            self.last_read[partition] = now
            self.positions[partition] = message.offset + 1
            grouper = self.groupers.setdefault(partition, Grouper(self.config))
            try:
                record = self._codecs["alpr_results"].decode(message.value)
            except SchemaError as error:
                origin = Origin(message.topic, partition, message.offset, message.key, message.value)
                letter = dead_letter(origin, "schema_invalid", error, self.service)
                sends.append(Send(self.settings.topic_name("dead_letter"), self._codecs["dead_letter"].encode(letter),
                                  message.key))  # fmt: skip
                continue
            for read in reads_from_results(record):
                sends += self._group_sends(grouper.add(read))
        return sends, touched

    def _flush_idle(self, touched: set[int], consumer: KafkaConsumer) -> list[Send]:
        """Groups of partitions that went quiet (in wall time) with nothing left to read: a backfill's
        tail, a camera gone dark. A partition the consumer cannot read (a broker away, a rebalance)
        is not quiet: its groups wait, or a vehicle's reads would be split in two."""
        if not self.settings.idle_flush_ms:
            return []
        now = time.monotonic()
        sends = []
        for partition, grouper in self.groupers.items():
            if grouper.open and not caught_up(consumer, TopicPartition(self.input_topic, partition)):
                self.last_read[partition] = now
                continue
            idle = now - self.last_read.get(partition, now) >= self.settings.idle_flush_ms / 1000
            if idle and grouper.open:
                sends += self._group_sends(grouper.close_all())
                touched.add(partition)
        return sends

    def _group_sends(self, groups: Iterable[Any]) -> list[Send]:
        sends = []
        for group in groups:
            record = alpr_group(group, self.config, country=self.settings.country, topn=self.settings.topn,
                                gps=self.settings.gps_of(group.reads[0].camera_id))  # fmt: skip
            key = str(record["camera_id"]).encode()
            sends.append(Send(self.settings.topic_name("alpr_group"), self._codecs["alpr_group"].encode(record), key))
        return sends

    def _state_send(self, partition: int) -> Send:
        state = {
            "source_topic": self.input_topic,
            "source_partition": partition,
            "next_offset": self.positions.get(partition, -1),
            "state_json": json.dumps(snapshot(self.groupers[partition]), separators=(",", ":")),
            "state_version": 1,
            "time_ms": int(time.time() * 1000),
        }
        value = self._codecs["aggregator_state"].encode(state)
        return Send(self.state_topic, value, str(partition).encode(), partition=partition)

    def load_state(self, partition: int) -> Grouper:
        """The open groups of `partition` as last committed, from the changelog."""
        latest = deque(read_to_end(self.settings, self.state_topic, [partition]), maxlen=1)
        if not latest:
            return Grouper(self.config)
        state = self._codecs["aggregator_state"].decode(latest[0].value)
        grouper = restore(self.config, json.loads(state["state_json"]))
        log.info("aggregator_state_restored", partition=partition, open_groups=sum(map(len, grouper.open.values())))
        return grouper

    def _restore_assigned(self) -> None:
        """Open groups of partitions assigned since the last batch, from their snapshots (before any
        of their records is grouped)."""
        while self.to_restore:
            partition = min(self.to_restore)
            self.groupers[partition] = self.load_state(partition)
            self.positions.pop(partition, None)
            self.last_read[partition] = time.monotonic()  # restored groups may go idle too
            self.to_restore.discard(partition)

    def _reload(self, consumer: KafkaConsumer) -> None:
        """After a failed transaction: every owned partition's open groups as last committed (the
        consumer is back at the matching offsets)."""
        owned = {tp.partition for tp in consumer.assignment()}
        for partition in list(self.groupers):
            if partition not in owned:
                del self.groupers[partition]
        self.to_restore = set(owned)
        self._restore_assigned()


class _Restorer(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, aggregator: Aggregator) -> None:
        self.aggregator = aggregator

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        for tp in revoked:
            self.aggregator.groupers.pop(tp.partition, None)
            self.aggregator.to_restore.discard(tp.partition)

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        # Restored by the main loop, where a broker that does not answer is retried, not lost.
        self.aggregator.to_restore.update(tp.partition for tp in assigned)


def run_aggregator(settings: AggregatorSettings) -> None:
    run_until_signalled(Aggregator(settings))
