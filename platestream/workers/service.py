"""`platestream worker`: consume frames, recognise, produce alpr_results, exactly once.

Each batch is one Kafka transaction holding its results, replies, dead letters and the consumed
offsets; a downstream read_committed consumer sees all of a batch or none of it. A worker killed
mid-batch leaves an open transaction that its successor (same transactional id) aborts, and the
batch is consumed again from the committed offsets: no frame lost, none duplicated.
"""

from __future__ import annotations

import socket
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from platestream import __version__
from platestream.consume_loop import PartitionWatch, gather, next_offsets, note_idle
from platestream.deadletter import Origin, service_name
from platestream.heartbeat import heartbeat, install_id
from platestream.kafka import Send, codec, make_consumer
from platestream.log import get_logger
from platestream.service import ProgressLog, Service, StallLimits, run_until_signalled
from platestream.settings import WorkerSettings
from platestream.transactions import TransactionalWriter
from platestream.workers.engine import Engine, engine_from_settings
from platestream.workers.fetch import S3Fetcher, S3UnavailableError
from platestream.workers.metrics import worker_metrics
from platestream.workers.pipeline import BatchReport, FrameDefaults, FramePipeline, Output, Prepared

log = get_logger(__name__)

S3_RETRY_MAX_S = 30.0  # the longest wait before a batch that S3 failed is read again


class Worker(Service):
    kind = "worker"

    def __init__(self, settings: WorkerSettings, engine: Engine | None = None) -> None:
        super().__init__(settings.health_port, StallLimits(settings.stall_not_ready_s, settings.stall_not_alive_s))
        self.settings = settings
        self.agent_uid = settings.agent_uid or install_id()
        self.transactional_id = settings.transactional_id or f"platestream-worker-{socket.gethostname()}"
        self.engine = engine or engine_from_settings(settings)
        self.metrics = worker_metrics()
        self._last_heartbeat = 0.0
        self._s3_outages = 0  # S3 outages in a row: the wait before reading the batch again doubles
        self.totals = {"frames": 0, "batches": 0, "busy_s": 0.0, "engine_s": 0.0, "fetch_decode_s": 0.0}
        self.progress_log = ProgressLog("worker_progress", settings.progress_log_s)
        self._codecs = {name: codec(settings, name) for name in ("frame", "alpr_results", "dead_letter", "heartbeat")}

    def run(self) -> None:
        with self.serving_health():
            self._run()

    def _run(self) -> None:
        settings = self.settings
        executor = ThreadPoolExecutor(settings.decode_threads, thread_name_prefix="decode")
        prefetch = ThreadPoolExecutor(1, thread_name_prefix="prefetch")
        pipeline = self._pipeline(executor)
        consumer = make_consumer(
            settings, "frames", group_id=settings.group_id, max_poll_records=settings.batch_size,
            session_timeout_ms=settings.session_timeout_ms, heartbeat_interval_ms=settings.session_timeout_ms // 4,
            max_poll_interval_ms=settings.max_poll_interval_ms,
        )  # fmt: skip
        writer = self.writer = TransactionalWriter(
            settings, self.transactional_id, transaction_timeout_ms=settings.transaction_timeout_ms,
            service="worker", stopping=lambda: self._stopping, progress=self.progress,
        )  # fmt: skip
        try:
            writer.open()
            self._ready = True
            log.info("worker_started", transactional_id=self.transactional_id, group_id=settings.group_id)
            # One batch is fetched and decoded while the engine works on the one before.
            pending: _Batch | None = None
            watch = PartitionWatch(settings.stalled_partition_s)
            while not self._stopping:
                try:
                    if not self._maybe_heartbeat():
                        pending = None  # read again from the committed offsets
                        writer.recover(consumer)
                        continue
                    messages = gather(consumer, batch_size=settings.batch_size, wait_ms=settings.batch_wait_ms,
                                      stopping=lambda: self._stopping, block=pending is None)  # fmt: skip
                    # The group's generation the batch was read in: the next gather may rejoin the
                    # group before this batch is committed, and its offsets must not pass then.
                    upcoming = (
                        _Batch(
                            messages, prefetch.submit(pipeline.prepare, _origins(messages)), consumer.group_metadata()
                        )
                        if messages
                        else None
                    )
                    if pending is not None and not self._complete(pending, pipeline, consumer):
                        # Nothing of the failed batch is visible: it, and what came after, are read again.
                        pending = None
                        writer.recover(consumer)
                        continue
                    pending = upcoming
                    watch.saw(messages)
                    if pending is None:
                        note_idle(consumer, watch, self.progress)
                    self._record_lag(consumer)
                except KafkaError as error:  # the broker went away outside a transaction
                    log.warning("kafka_error", error=str(error), kind=type(error).__name__)
                    self.progress.blocked(f"Kafka: {error}")
                    pending = None
                    writer.recover(consumer)
                except S3UnavailableError as error:  # nothing of the batch was sent: wait, read it again
                    pending = None
                    self._wait_for_s3(error)
                    writer.recover(consumer)
            if pending is not None:
                self._complete(pending, pipeline, consumer)  # finish the batch in hand
        finally:
            self._ready = False
            prefetch.shutdown(wait=True)
            executor.shutdown(wait=True)
            consumer.close()  # leaves the group: its partitions move at once
            writer.close()
            self.engine.close()
            log.info("worker_stopped", **{key: round(value, 3) for key, value in self.totals.items()})

    def _complete(self, batch: _Batch, pipeline: FramePipeline, consumer: KafkaConsumer) -> bool:
        """Recognise a prepared batch and commit it with its offsets; False when the transaction
        failed (nothing of it is visible: the writer must recover before the next)."""
        started = time.perf_counter()
        report = pipeline.finish(batch.prepared.result())
        error = self._transact(report.outputs, next_offsets(batch.messages), consumer, batch.read_as)
        if error is not None:
            log.warning("batch_aborted", error=str(error), frames=len(batch.messages))
            self.metrics.aborted.inc()
            return False
        self._s3_outages = 0
        busy = time.perf_counter() - started  # the main thread's time; decoding ran beside it
        self.metrics.observe(report, len(batch.messages), busy)
        self.totals["frames"] += len(batch.messages)
        self.totals["batches"] += 1
        self.totals["busy_s"] += busy
        self.totals["engine_s"] += report.engine_s
        self.totals["fetch_decode_s"] += report.fetch_decode_s
        log.debug("batch_committed", frames=len(batch.messages), plates=report.plates, dead_letters=report.dead_letters)
        self.progress_log.update({"frames": self.totals["frames"], "batches": self.totals["batches"]})
        return True

    def _transact(
        self,
        outputs: list[Output],
        offsets: dict[TopicPartition, OffsetAndMetadata],
        consumer: KafkaConsumer | None = None,
        read_as: Any = None,
    ) -> KafkaError | None:
        sends = [
            Send(self.settings.topic_name(o.topic), self._codecs[o.schema].encode(o.record), o.key) for o in outputs
        ]
        return self.writer.commit(sends, offsets, consumer, read_as)

    def _pipeline(self, executor: ThreadPoolExecutor) -> FramePipeline:
        settings = self.settings
        return FramePipeline(
            self.engine,
            self._codecs["frame"],
            FrameDefaults(
                country=settings.country,
                state=settings.state,
                topn=settings.topn,
                emit_empty=settings.emit_empty,
                agent_uid=self.agent_uid,
                agent_version=__version__,
                company_id=settings.company_id,
                max_image_bytes=settings.max_image_bytes,
                max_image_pixels=settings.max_image_pixels,
                plate_crop=settings.plate_crop_jpeg,
                vehicle_crop=settings.vehicle_crop_jpeg,
            ),
            service_name("worker"),
            executor,
            _LazyS3(settings).get,
        )

    def _wait_for_s3(self, error: S3UnavailableError) -> None:
        """An outage: readiness says so, and the wait before the batch is read again doubles."""
        self._s3_outages += 1
        delay = min(S3_RETRY_MAX_S, 0.5 * 2 ** min(self._s3_outages, 8))
        log.warning("s3_unavailable", error=str(error), attempt=self._s3_outages, next_in_s=delay)
        self.progress.blocked(f"S3 unavailable, attempt {self._s3_outages}: {error}")
        self.metrics.s3_unavailable.inc()
        deadline = time.monotonic() + delay
        while not self._stopping and time.monotonic() < deadline:
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def _maybe_heartbeat(self) -> bool:
        """Send a heartbeat record when one is due; False when its transaction failed."""
        now = time.monotonic()
        if now - self._last_heartbeat < self.settings.heartbeat_interval_s:
            return True
        self._last_heartbeat = now
        record = heartbeat(
            self.agent_uid, __version__, "platestream-worker",
            threads_active=1, threads_configured=self.settings.decode_threads + self.settings.engine_threads,
        )  # fmt: skip
        error = self._transact([Output("heartbeat", "heartbeat", self.agent_uid.encode(), record)], {})
        if error is not None:
            log.warning("heartbeat_failed", error=str(error))
        return error is None

    def _record_lag(self, consumer: KafkaConsumer) -> None:
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            if high is not None:
                self.metrics.lag.labels(partition=str(tp.partition)).set(
                    max(0, high - (consumer.position(tp, timeout_ms=1000) or high))
                )


@dataclass(frozen=True)
class _Batch:
    messages: list[Any]
    prepared: Future[Prepared]
    read_as: Any = None  # the consumer's group metadata when the batch was read


def _origins(messages: list[Any]) -> list[Origin]:
    return [Origin(m.topic, m.partition, m.offset, m.key, m.value) for m in messages]


class _LazyS3:
    """Builds the S3 client on the first frame that references an object (boto3 may be absent)."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self._fetcher: S3Fetcher | None = None

    def get(self, ref: Any) -> bytes:
        if self._fetcher is None:
            s = self.settings
            self._fetcher = S3Fetcher(
                endpoint_url=s.s3_endpoint_url, region=s.s3_region, max_attempts=s.s3_max_attempts,
                timeout_s=s.s3_timeout_s, max_bytes=s.max_image_bytes,
            )  # fmt: skip
        return self._fetcher.get(ref)


def run_worker(settings: WorkerSettings) -> None:
    run_until_signalled(Worker(settings))


__all__ = ["BatchReport", "Worker", "run_worker"]
