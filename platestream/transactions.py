"""The Kafka side of the exactly-once loop, and how it outlives a broker that goes away.

The worker, the aggregator and the store writer each write their outputs and the offsets they
consumed in one transaction (`TransactionalWriter.commit`). When one fails, whether a request timed
out, the broker paused or restarted, or the coordinator aborted a transaction that outlived its
timeout, kafka-python's producer may be left in an error state that no abort clears. So a failed
transaction is never retried on the same producer: `recover` closes it, opens a new one with the
same transactional id (its init_transactions fences the old one and completes whatever transaction
it left open), and moves the consumer back to the group's committed offsets, which, written in the
same transactions as the outputs, say exactly what is already out. Each step is retried with a
capped exponential backoff until the broker answers or the service is asked to stop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError, KafkaTimeoutError
from kafka.structs import OffsetAndMetadata

from platestream.errors import BrokerError
from platestream.kafka import Send, make_producer, transact
from platestream.log import get_logger
from platestream.service import Progress, StallLimits
from platestream.settings import ServiceSettings

log = get_logger(__name__)

# A fresh producer blocks at most this long in init_transactions before the loop tries again.
INIT_BLOCK_MS = 10_000
# How long a service starting up waits for its transaction coordinator: when the broker that held
# it has just died, the cluster moves the coordinator to another broker within seconds.
OPEN_GRACE_S = 60.0
COMMITTED_TIMEOUT_MS = 10_000


@dataclass(frozen=True)
class Backoff:
    """Delays between attempts: `first_s`, doubling, never above `max_s`."""

    first_s: float = 0.25
    max_s: float = 5.0

    def delays(self) -> Iterator[float]:
        delay = self.first_s
        while True:
            yield min(delay, self.max_s)
            delay *= 2


class _Metrics:
    """Prometheus counters of failed transactions and recoveries; inert without prometheus-client."""

    def __init__(self) -> None:
        try:
            import prometheus_client as prom
        except ImportError:
            self.failed = self.recoveries = self.retries = None
            return
        self.failed = prom.Counter(
            "platestream_transactions_failed", "Transactions that failed and were consumed again.", ["service"]
        )
        self.recoveries = prom.Counter(
            "platestream_kafka_recoveries", "New producers opened and consumers rewound after a failure.", ["service"]
        )
        self.retries = prom.Counter(
            "platestream_kafka_recovery_retries", "Recovery attempts that failed and were tried again.", ["service"]
        )

    @staticmethod
    def inc(counter: Any, service: str) -> None:
        if counter is not None:
            counter.labels(service=service).inc()


@cache
def _metrics() -> _Metrics:
    return _Metrics()


@dataclass(frozen=True)
class Recovery:
    attempts: int
    seconds: float


class TransactionalWriter:
    """A transactional producer that is replaced, not retried, when a transaction fails."""

    def __init__(
        self,
        settings: ServiceSettings,
        transactional_id: str,
        *,
        transaction_timeout_ms: int,
        service: str,
        stopping: Callable[[], bool],
        progress: Progress | None = None,
    ) -> None:
        self.settings = settings
        self.transactional_id = transactional_id
        self.transaction_timeout_ms = transaction_timeout_ms
        self.service = service
        self.stopping = stopping
        self.progress = progress or Progress(StallLimits())
        self.backoff = Backoff(max_s=settings.kafka_retry_backoff_max_ms / 1000)
        self.recoveries: list[Recovery] = []
        self.commits = 0  # transactions committed
        self.last_commit = 0.0  # when the last one was (monotonic)
        self._producer: KafkaProducer | None = None
        self._initialized = False
        self._replace = False

    @property
    def producer(self) -> KafkaProducer:
        if self._producer is None or not self._initialized:
            raise RuntimeError("the transactional producer is not open")
        return self._producer

    def open(self, grace_s: float = OPEN_GRACE_S) -> None:
        """The first producer. A cluster that cannot be reached, or refuses the credentials, is an
        error here, not a retry; a transaction coordinator that does not answer (its broker just
        died and the cluster has not yet moved it) is waited for, up to `grace_s`."""
        deadline = time.monotonic() + grace_s
        for attempt, delay in enumerate(self.backoff.delays(), start=1):
            try:
                self._ensure_producer()
                return
            except KafkaTimeoutError as error:
                if self.stopping() or time.monotonic() + delay >= deadline:
                    raise
                self.progress.blocked(f"waiting for the transaction coordinator, attempt {attempt} ({error})")
                log.warning("kafka_coordinator_waiting", service=self.service, attempt=attempt, error=str(error),
                            next_in_s=delay)  # fmt: skip
                _sleep(delay, self.stopping)

    def commit(
        self,
        sends: Iterable[Send],
        offsets: dict[TopicPartition, OffsetAndMetadata] | None = None,
        consumer: KafkaConsumer | None = None,
        read_as: Any = None,
    ) -> KafkaError | None:
        """Write `sends` and `offsets` in one transaction; the error when it failed (then none of it
        is visible, and `recover` must run before the next). `read_as`: see kafka.transact."""
        self.progress.blocked("waiting for Kafka to commit a transaction")
        try:
            transact(self.producer, sends, offsets, consumer, timeout_ms=self.transaction_timeout_ms, read_as=read_as)
        except KafkaError as error:
            self._replace = True
            _Metrics.inc(_metrics().failed, self.service)
            log.warning("transaction_failed", service=self.service, error=str(error), kind=type(error).__name__)
            self.progress.blocked(f"transaction failed ({type(error).__name__}: {error})")
            return error
        self.commits += 1
        self.last_commit = time.monotonic()
        self.progress.advanced()
        return None

    def recover(self, consumer: KafkaConsumer | None = None, then: Callable[[], None] | None = None) -> bool:
        """A new producer with the same transactional id, the consumer back at the group's committed
        offsets, and `then` (a service's own state reload); retried until done. False when the
        service was asked to stop first."""
        started = time.monotonic()
        attempts = 0
        for delay in self.backoff.delays():
            if self.stopping():
                return False
            attempts += 1
            try:
                self._ensure_producer()
                if consumer is not None:
                    rewind_to_committed(consumer)
                if then is not None:
                    then()
            except (KafkaError, BrokerError) as error:  # BrokerError: a new client could not bootstrap
                self.progress.blocked(f"reconnecting to Kafka, attempt {attempts} ({type(error).__name__}: {error})")
                _Metrics.inc(_metrics().retries, self.service)
                log.warning("kafka_recovery_retry", service=self.service, attempt=attempts, error=str(error),
                            kind=type(error).__name__, next_in_s=delay)  # fmt: skip
                _sleep(delay, self.stopping)
                continue
            recovery = Recovery(attempts, time.monotonic() - started)
            self.recoveries.append(recovery)
            _Metrics.inc(_metrics().recoveries, self.service)
            log.info("kafka_recovered", service=self.service, attempts=attempts, seconds=round(recovery.seconds, 2))
            return True
        raise AssertionError("unreachable: the backoff never ends")

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=10 if not self._replace else 1)
            self._producer = None

    def _ensure_producer(self) -> None:
        if self._producer is not None and self._replace:
            self._producer.close(timeout=1)  # in an error state: nothing of it is worth waiting for
            self._producer = None
        if self._producer is None:
            self._producer = make_producer(
                self.settings, transactional_id=self.transactional_id,
                transaction_timeout_ms=self.transaction_timeout_ms, max_block_ms=INIT_BLOCK_MS,
            )  # fmt: skip
            self._initialized = False
            self._replace = False
        if not self._initialized:
            try:
                self._producer.init_transactions()
            except KafkaError:
                # Timed out too: a producer whose request went to a broker that died may wait on it
                # forever, even once the cluster has moved the transaction coordinator elsewhere.
                self._replace = True
                raise
            self._initialized = True


def rewind_to_committed(consumer: KafkaConsumer, partitions: Iterable[TopicPartition] | None = None) -> None:
    """Move every partition the consumer owns (or those of `partitions` it owns) to the group's
    committed offset (the start where none is committed): what was consumed since is read again."""
    owned = consumer.assignment()
    for tp in owned if partitions is None else [tp for tp in partitions if tp in owned]:
        committed = consumer.committed(tp, timeout_ms=COMMITTED_TIMEOUT_MS)
        if committed is None:
            consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, committed)


def input_waiting(consumer: KafkaConsumer) -> bool:
    """Whether any owned partition has records past the consumer's position (as last fetched)."""
    for tp in consumer.assignment():
        high = consumer.highwater(tp)
        try:
            position = consumer.position(tp, timeout_ms=1000)
        except KafkaError:
            return True  # the broker does not say: count it as waiting
        if high is not None and position is not None and high > position:
            return True
    return False


def caught_up(consumer: KafkaConsumer, tp: TopicPartition) -> bool:
    """Whether the consumer owns `tp` and has read it to its end as last fetched (False when it
    does not know: no fetch answered since it was assigned, or the broker does not answer)."""
    if tp not in consumer.assignment():
        return False
    high = consumer.highwater(tp)
    if high is None:
        return False
    try:
        position = consumer.position(tp, timeout_ms=1000)
    except KafkaError:
        return False
    return position is not None and position >= high


def _sleep(seconds: float, stopping: Callable[[], bool]) -> None:
    deadline = time.monotonic() + seconds
    while not stopping() and time.monotonic() < deadline:
        time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
