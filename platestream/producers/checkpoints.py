"""Producing frames in Kafka transactions, each carrying a checkpoint of how far the producer got
(S3 backfills, and file sends given a checkpoint id): a killed producer started again reads its
last committed checkpoint and goes on after it, so every item is produced exactly once."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kafka.errors import KafkaTimeoutError

from platestream.kafka import Send, codec, make_producer, read_to_end, transact
from platestream.log import get_logger
from platestream.settings import Settings
from platestream.transactions import INIT_BLOCK_MS, OPEN_GRACE_S

log = get_logger(__name__)


@dataclass(frozen=True)
class Pace:
    rate: float  # most items per second; 0: as fast as the broker takes them
    batch_size: int  # items per transaction (and checkpoint)
    batch_max_s: float  # a transaction at least this often, however few items are in it


def last_checkpoint(settings: Settings, producer_id: str) -> dict[str, Any] | None:
    """The last committed checkpoint of `producer_id` on producer_checkpoints, if any."""
    topic = settings.topic_name("producer_checkpoints")
    decode = codec(settings, "producer_checkpoint").decode
    found = None
    for message in read_to_end(settings, topic):
        if message.key == producer_id.encode():
            found = decode(message.value)
    return found


def send_checkpointed(
    settings: Settings,
    producer_id: str,
    source: str,
    frames: Iterable[tuple[str, dict[str, Any]]],
    *,
    before: int,
    after_key: str,
    pace: Pace,
    stopping: Callable[[], bool],
    progress: Callable[[int], None] | None = None,
) -> tuple[int, bool]:
    """Produce `frames` (each with the key it is checkpointed by), going on from earlier runs that
    produced `before` items, the last of them `after_key`; return how many this run produced and
    whether it reached the end (then its last checkpoint says done). `stopping` is asked before
    each item; `progress` gets the running total after each commit."""
    producer = _open_producer(settings, f"platestream-{producer_id}")
    encode_frame = codec(settings, "frame").encode
    encode_checkpoint = codec(settings, "producer_checkpoint").encode
    frames_topic = settings.topic_name("frames")
    checkpoints_topic = settings.topic_name("producer_checkpoints")
    timeout_ms = max(30_000, settings.kafka_request_timeout_ms)  # a commit never hangs

    def commit(batch: list[Send], last_key: str, total: int, done: bool) -> None:
        checkpoint = {
            "backfill_id": producer_id, "source": source, "last_key": last_key,
            "objects_produced": total, "done": done, "time_ms": int(time.time() * 1000),
        }  # fmt: skip
        transact(producer, [*batch, Send(checkpoints_topic, encode_checkpoint(checkpoint), producer_id.encode())],
                 timeout_ms=timeout_ms)  # fmt: skip
        if progress is not None:
            progress(total)

    interval = 1.0 / pace.rate if pace.rate else 0.0
    next_at = batch_started = time.monotonic()
    produced = 0
    stopped = False
    try:
        batch: list[Send] = []
        last_key = after_key
        for key, frame in frames:
            if stopping():
                stopped = True
                break
            if interval:
                # The rate is a ceiling: time lost to a slow commit is not made up in a burst.
                next_at = max(next_at + interval, time.monotonic())
                time.sleep(max(0.0, next_at - time.monotonic()))
            batch.append(Send(frames_topic, encode_frame(frame), frame["camera_id"].encode()))
            last_key = key
            # A slow (rate-limited) producer commits by time too: a crash redoes seconds, not minutes.
            if len(batch) >= pace.batch_size or time.monotonic() - batch_started >= pace.batch_max_s:
                produced += len(batch)
                commit(batch, last_key, before + produced, False)
                batch, batch_started = [], time.monotonic()
        produced += len(batch)
        if batch or not stopped:
            commit(batch, last_key, before + produced, not stopped)
    finally:
        producer.close(timeout=10)
    return produced, not stopped


def _open_producer(settings: Settings, transactional_id: str) -> Any:
    """A transactional producer past init_transactions. An unreachable cluster or refused
    credentials raise at once; a coordinator that does not answer is tried again, with a new
    client each time, for up to OPEN_GRACE_S."""
    deadline = time.monotonic() + OPEN_GRACE_S
    delay = 0.5
    while True:
        producer = make_producer(settings, transactional_id=transactional_id, compression_type=None,
                                 max_block_ms=INIT_BLOCK_MS)  # fmt: skip
        try:
            producer.init_transactions()
            return producer
        except KafkaTimeoutError as error:
            producer.close(timeout=1)
            if time.monotonic() + delay >= deadline:
                raise
            log.warning("kafka_coordinator_waiting", transactional_id=transactional_id, error=str(error),
                        next_in_s=delay)  # fmt: skip
            time.sleep(delay)
            delay = min(5.0, delay * 2)
