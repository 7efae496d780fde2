"""Kafka clients built from settings, and the declared topics created on a cluster."""

from __future__ import annotations

import json
import logging
import ssl
import time
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import (
    CommitFailedError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    ProducerFencedError,
    SaslAuthenticationFailedError,
    TopicAlreadyExistsError,
    UnknownBrokerIdError,
)
from kafka.structs import OffsetAndMetadata

from platestream.errors import BrokerError, ConfigError
from platestream.log import get_logger
from platestream.schemas import TOPICS, Codec, TopicSpec, WireFormat
from platestream.schemas.registry import registry
from platestream.settings import Settings

log = get_logger(__name__)


def _keep_bytes_read_with_a_disconnect() -> None:
    """kafka-python 3.0 drops the bytes it read in the same pass as the broker's close: a client
    slow to read (a loaded machine) finds the broker's last response and its close together and
    loses the response. A broker refusing a password answers and closes at once, so the refusal
    ("authentication failed") was lost and the client retried to its timeout. Here the bytes are
    handed on first; the close is seen on the next read, as the socket stays readable at its end."""
    from kafka.net.transport import KafkaSSLTransport, KafkaTCPTransport

    for transport in (KafkaTCPTransport, KafkaSSLTransport):
        receive = transport.__dict__.get("_sock_recv")
        if receive is None or getattr(receive, "keeps_bytes", False):
            continue

        def keeping(self: Any, receive: Any = receive) -> tuple[bytes, Exception | None]:
            data, error = receive(self)
            return (data, None) if data and error is not None else (data, error)

        keeping.keeps_bytes = True  # type: ignore[attr-defined]
        transport._sock_recv = keeping


_keep_bytes_read_with_a_disconnect()


def bootstrap_servers(settings: Settings) -> str:
    """The configured cluster, else the local broker started from the state folder."""
    if settings.kafka_bootstrap:
        return settings.kafka_bootstrap
    state_file = settings.broker_dir / "broker.json"
    try:
        bootstrap: str = json.loads(Path(state_file).read_text())["bootstrap"]
        return bootstrap
    except (FileNotFoundError, KeyError, json.JSONDecodeError):
        raise ConfigError(
            "no Kafka cluster: set PLATESTREAM_KAFKA_BOOTSTRAP, or run `platestream broker start`"
            f" (looked for {state_file})"
        ) from None


def client_config(settings: Settings) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers(settings).split(","),
        "security_protocol": settings.kafka_security_protocol,
        "bootstrap_timeout_ms": settings.kafka_connect_timeout_ms,
        "request_timeout_ms": settings.kafka_request_timeout_ms,
    }
    if settings.kafka_ssl_cafile is not None:
        config["ssl_cafile"] = str(settings.kafka_ssl_cafile)
    if settings.kafka_sasl_mechanism:
        config["sasl_mechanism"] = settings.kafka_sasl_mechanism
        config["sasl_plain_username"] = settings.kafka_sasl_username
        if settings.kafka_sasl_password is not None:
            config["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return config


def codec(settings: Settings, schema: str) -> Codec:
    writers = registry(settings.schema_registry_url).schema if settings.schema_registry_url else None
    return Codec(schema, WireFormat(settings.wire_format), settings.schema_id(schema), writer_schemas=writers,
                 write_release=settings.write_schema_release)  # fmt: skip


def make_producer(settings: Settings, **overrides: Any) -> KafkaProducer:
    """An idempotent producer (acks=all) with compression; transactional when given an id."""
    config = client_config(settings) | {
        "acks": "all",
        "enable_idempotence": True,
        "compression_type": "gzip",
        "linger_ms": 5,
        "max_request_size": 25 * 1024 * 1024,
    }
    with explained_connect_errors(settings):
        return KafkaProducer(**(config | overrides))


def make_consumer(settings: Settings, *topics: str, group_id: str | None, **overrides: Any) -> KafkaConsumer:
    """A consumer that commits nothing by itself and reads only committed transactions."""
    config = client_config(settings) | {
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
        # Every fetch names every partition, so each answer carries each partition's end: with
        # incremental fetch sessions a partition re-joined at its end with nothing new is left out of
        # the answers, its end stays unknown, and whatever waits for it (an idle flush) waits forever.
        "enable_incremental_fetch_sessions": False,
        "max_partition_fetch_bytes": 26 * 1024 * 1024,
        "fetch_max_bytes": 64 * 1024 * 1024,
    }
    with explained_connect_errors(settings):
        consumer = KafkaConsumer(**(config | overrides))
    if topics:
        subscribe(consumer, [settings.topic_name(name) for name in topics])
    return consumer


class Reassignments(ConsumerRebalanceListener):  # type: ignore[misc]
    """The partitions each rebalance gave this consumer, for the loop to move back to the group's
    committed offsets before it reads from them (`take_reassigned`). kafka-python keeps the position
    of a partition that a rebalance takes away and gives back; another member may have read and
    committed past it meanwhile (this one was paused past its session timeout), and reading on from
    the kept position would do that work twice. `then`: the service's own listener."""

    def __init__(self, then: ConsumerRebalanceListener | None = None) -> None:
        self.then = then
        self.assigned: set[TopicPartition] = set()

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.assigned.difference_update(revoked)
        if self.then is not None:
            self.then.on_partitions_revoked(revoked)

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.assigned.update(assigned)
        if self.then is not None:
            self.then.on_partitions_assigned(assigned)


_REASSIGNMENTS: weakref.WeakKeyDictionary[KafkaConsumer, Reassignments] = weakref.WeakKeyDictionary()


def subscribe(consumer: KafkaConsumer, topics: list[str], listener: ConsumerRebalanceListener | None = None) -> None:
    """Subscribe, noting each rebalance's assignment (see Reassignments)."""
    reassignments = Reassignments(listener)
    _REASSIGNMENTS[consumer] = reassignments
    consumer.subscribe(topics, listener=reassignments)


def take_reassigned(consumer: KafkaConsumer) -> set[TopicPartition]:
    """The partitions assigned since the last call (empty for a consumer not made by `subscribe`)."""
    reassignments = _REASSIGNMENTS.get(consumer)
    if reassignments is None or not reassignments.assigned:
        return set()
    taken, reassignments.assigned = reassignments.assigned, set()
    return taken


def make_admin(settings: Settings) -> KafkaAdminClient:
    with explained_connect_errors(settings):
        return KafkaAdminClient(**client_config(settings) | {"request_timeout_ms": 15000})


class _ConnectFailures(logging.Handler):
    """Why connections to the brokers failed, as kafka-python logs it (the timeout it raises in the
    end does not say): a refused password, a certificate that does not verify (kafka-python logs
    that as a connection error whose context is the ssl module's error).

    A refusal while bootstrapping ends the bootstrap there: kafka-python 3.0 retries a wrong
    password or an unverifiable certificate until its bootstrap timeout, so either took the whole
    connect timeout to report. Raised from this handler, the failure leaves kafka-python's bootstrap
    loop at the line that logs it and fails the client's construction with it, as the Java client
    fails at once on an authentication or TLS verification error."""

    BOOTSTRAP_FAILED = "Bootstrap connection to"  # kafka-python's line for a failed bootstrap attempt

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.refused: list[BaseException] = []

    def emit(self, record: logging.LogRecord) -> None:
        arguments = record.args if isinstance(record.args, tuple) else ()
        for argument in arguments:
            if not isinstance(argument, BaseException):
                continue
            reason = _refusal(argument)
            if reason is None:
                continue
            self.refused.append(reason)
            final = isinstance(reason, (SaslAuthenticationFailedError, ssl.SSLCertVerificationError))
            if final and str(record.msg).startswith(self.BOOTSTRAP_FAILED):
                raise argument if isinstance(argument, KafkaError) else KafkaConnectionError(str(reason))


def _refusal(error: BaseException) -> BaseException | None:
    """The refused password or TLS error behind a logged connection failure, if any."""
    seen: BaseException | None = error
    for _ in range(4):  # the error, and what it was raised from or while handling
        if seen is None:
            return None
        if isinstance(seen, (SaslAuthenticationFailedError, ssl.SSLError)):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


@contextmanager
def explained_connect_errors(settings: Settings) -> Iterator[None]:
    """A client that cannot bootstrap raises BrokerError saying why, where kafka-python knew: a
    wrong password or user, or a broker certificate the CA does not vouch for."""
    logger = logging.getLogger("kafka.net.manager")
    watcher = _ConnectFailures()
    level, propagate, shown = logger.level, logger.propagate, logger.getEffectiveLevel()
    logger.addHandler(watcher)
    logger.setLevel(min(shown, logging.WARNING))
    logger.propagate = propagate and shown <= logging.WARNING  # what the log settings hid stays hidden
    try:
        yield
    except KafkaError as error:
        where = f"cannot reach Kafka at {bootstrap_servers(settings)!r}"
        refused: BaseException | None = watcher.refused[-1] if watcher.refused else None
        if isinstance(error, SaslAuthenticationFailedError):  # raised as itself, not only logged
            refused = error
        if isinstance(refused, SaslAuthenticationFailedError):
            raise BrokerError(
                f"{where}: authentication failed for user {settings.kafka_sasl_username!r}"
                f" ({settings.kafka_sasl_mechanism}): check PLATESTREAM_KAFKA_SASL_USERNAME and _PASSWORD"
            ) from None
        if isinstance(refused, ssl.SSLError):
            raise BrokerError(
                f"{where}: TLS handshake failed ({refused.reason or refused}): check PLATESTREAM_KAFKA_SSL_CAFILE"
            ) from None
        raise BrokerError(f"{where}: {error}") from None
    finally:
        logger.removeHandler(watcher)
        logger.setLevel(level)
        logger.propagate = propagate


@dataclass(frozen=True)
class Send:
    """One record to write in a transaction."""

    topic: str  # the full topic name
    value: bytes
    key: bytes | None
    partition: int | None = None


def transact(
    producer: KafkaProducer,
    sends: Iterable[Send],
    offsets: dict[TopicPartition, OffsetAndMetadata] | None = None,
    consumer: KafkaConsumer | None = None,
    *,
    timeout_ms: int | None = None,
    read_as: Any = None,
) -> None:
    """Write `sends` and commit the consumed `offsets` atomically: all of it becomes visible to
    read_committed consumers, or none. Aborts and re-raises on failure; a fenced producer (another
    instance took over its transactional id) raises ProducerFencedError without aborting.

    `read_as`: the consumer's group metadata when the offsets' records were read (default: now).
    The broker accepts the offsets only from that generation of the group: a batch read before a
    rebalance that gave its partitions to another member fails here instead of being committed
    beside that member's work. A loop that polls between reading a batch and committing it must
    pass the metadata of the read.

    Records read while the consumer was no member of its group (generation -1: it lost its
    membership, say after a pause past its session timeout, and has not rejoined yet) are refused
    with CommitFailedError before anything is sent: the broker would take their offsets without a
    generation check, beside the work of the member the group gave their partitions to.

    With `timeout_ms`, no step waits longer than that for the broker (KafkaTimeoutError): the
    client's own commit waits forever on a request lost with a broker that was killed."""
    metadata = read_as or (consumer.group_metadata() if offsets and consumer is not None else None)
    if (
        offsets
        and metadata is not None
        and metadata.group_id
        and (metadata.generation_id < 0 or not metadata.member_id)
    ):
        raise CommitFailedError(
            f"the records were read while the consumer was no member of group {metadata.group_id} (rejoining): "
            "their offsets are not committed, and they are read again once it has rejoined"
        )
    producer.begin_transaction()
    try:
        for send in sends:
            producer.send(send.topic, value=send.value, key=send.key, partition=send.partition)
        if timeout_ms is not None:
            producer.flush(timeout=timeout_ms / 1000)
        if offsets and consumer is not None:
            _await(producer, "send_offsets", timeout_ms, offsets, metadata)
        _await(producer, "commit", timeout_ms)
    except ProducerFencedError:
        raise
    except KafkaError:
        try:
            _await(producer, "abort", timeout_ms)
        except KafkaError as error:
            log.error("abort_failed", error=str(error))
        raise


def _await(producer: KafkaProducer, step: str, timeout_ms: int | None, *args: Any) -> None:
    """One transactional step, waiting at most `timeout_ms` for the broker's answer."""
    manager = getattr(producer, "_transaction_manager", None)
    sender = getattr(producer, "_sender", None)
    if timeout_ms is None or manager is None or sender is None:  # the client's own, unbounded wait
        {"send_offsets": producer.send_offsets_to_transaction, "commit": producer.commit_transaction,
         "abort": producer.abort_transaction}[step](*args)  # fmt: skip
        return
    start = {"send_offsets": manager.send_offsets_to_transaction, "commit": manager.begin_commit,
             "abort": manager.begin_abort}[step]  # fmt: skip
    result = start(*args)
    sender.wakeup()
    if not result.wait(timeout_ms=timeout_ms):
        raise KafkaTimeoutError(f"no answer from Kafka to the transaction's {step} within {timeout_ms} ms")


def topic_manifests(cluster: str = "platestream", replicas: int = 3, namespace: str = "kafka") -> str:
    """The declared topics as Strimzi KafkaTopic resources (Strimzi 1.0+, kafka.strimzi.io/v1) in the
    namespace of the Kafka cluster, which its topic operator watches: topics are declared, not
    auto-created."""
    documents = []
    for spec in TOPICS:
        documents.append(
            "\n".join(
                [
                    f"# {spec.doc} Schema: platestream/schemas/{spec.schema}.avsc",
                    "apiVersion: kafka.strimzi.io/v1",
                    "kind: KafkaTopic",
                    "metadata:",
                    f"  name: {spec.name.replace('_', '-')}",
                    f"  namespace: {namespace}",
                    "  labels:",
                    f"    strimzi.io/cluster: {cluster}",
                    "spec:",
                    f"  topicName: {spec.name}",
                    f"  partitions: {spec.partitions}",
                    f"  replicas: {replicas}",
                    "  config:",
                    *(f'    {key}: "{value}"' for key, value in spec.configs.items()),
                    '    min.insync.replicas: "2"',
                ]
            )
        )
    return "---\n" + "\n---\n".join(documents) + "\n"


class _Admin:
    """An admin client made again when it no longer knows the cluster: one that started while a
    broker was registering keeps asking after a broker id it never heard of."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client = make_admin(settings)

    def renew(self) -> None:
        self.client.close()
        self.client = make_admin(self.settings)

    def close(self) -> None:
        self.client.close()


def _create_topic(admin: _Admin, new_topic: NewTopic, *, timeout_s: float = 60.0) -> bool:
    """Create one topic; False when it exists. A cluster still settling (a broker just started, the
    controller moving) is asked again for up to `timeout_s`, by a new client where the old one
    names a broker it does not know."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin.client.create_topics([new_topic])
            return True
        except TopicAlreadyExistsError:
            return False
        except (UnknownBrokerIdError, KafkaError) as error:
            settling = isinstance(error, UnknownBrokerIdError) or getattr(error, "retriable", False)
            if not settling or time.monotonic() > deadline:
                raise
            time.sleep(0.5)
            if isinstance(error, UnknownBrokerIdError):
                admin.renew()


def create_topics(
    settings: Settings, specs: Iterable[TopicSpec] = TOPICS, *, partitions: int | None = None
) -> list[str]:
    """Create the declared topics that do not exist yet; return the names created."""
    admin = _Admin(settings)
    try:
        existing = set(admin.client.list_topics())
        wanted = [
            NewTopic(
                settings.topic_name(spec.name),
                num_partitions=partitions or spec.partitions,
                replication_factor=-1,  # the cluster's default
                topic_configs=spec.configs,
            )
            for spec in specs
            if settings.topic_name(spec.name) not in existing
        ]
        created = []
        for new_topic in wanted:
            if _create_topic(admin, new_topic):
                created.append(new_topic.name)
        log.info("topics_created", created=created, existing=sorted(existing))
        return created
    finally:
        admin.close()


def read_to_end(
    settings: Settings, topic: str, partitions: Iterable[int] | None = None, *, timeout_s: float = 60.0
) -> Iterator[Any]:
    """The committed records of `topic` (its full name; of `partitions`, all by default) from the
    start to its end as of the call. KafkaTimeoutError when the end is not reached in `timeout_s`
    (a broker that stopped answering), so a caller that retries Kafka errors retries this too;
    ConfigError when the topic does not exist."""
    reader = make_consumer(settings, group_id=None)
    try:
        existing = reader.partitions_for_topic(topic)
        if not existing:
            raise ConfigError(f"topic {topic} does not exist: run `platestream topics create`")
        tps = [TopicPartition(topic, number) for number in sorted(existing if partitions is None else partitions)]
        reader.assign(tps)
        reader.seek_to_beginning(*tps)
        ends = reader.end_offsets(tps, timeout_ms=int(timeout_s * 1000))
        deadline = time.monotonic() + timeout_s
        while any(_behind(reader, tp, ends[tp]) for tp in tps):
            if time.monotonic() > deadline:
                raise KafkaTimeoutError(f"{topic} was not read to its end in {timeout_s:.0f} s")
            for records in reader.poll(timeout_ms=1000).values():
                yield from records
    finally:
        reader.close()


def read_topic(
    settings: Settings, topic: str, schema: str, *, count: int | None = None, timeout_s: float = 30.0
) -> list[tuple[bytes | None, dict[str, Any]]]:
    """(key, record) of a topic from the start, in partition order: `count` of them, or all there
    are when `count` is None (waiting `timeout_s` for the first, then until the end)."""
    consumer = make_consumer(settings, group_id=None)
    name = settings.topic_name(topic)
    partitions = [TopicPartition(name, p) for p in sorted(consumer.partitions_for_topic(name) or [])]
    consumer.assign(partitions)
    consumer.seek_to_beginning()
    decode = codec(settings, schema).decode
    found: list[tuple[bytes | None, dict[str, Any]]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=500)
            for messages in batch.values():
                found += [(message.key, decode(message.value)) for message in messages]
            if count is not None and len(found) >= count:
                break
            if count is None and found and not batch and _at_end(consumer, partitions):
                break
        return found
    finally:
        consumer.close()


def _at_end(consumer: Any, partitions: list[TopicPartition]) -> bool:
    ends = consumer.end_offsets(partitions, timeout_ms=10_000)
    return not any(_behind(consumer, tp, ends[tp]) for tp in partitions)


def _behind(consumer: Any, tp: TopicPartition, end: int) -> bool:
    """Whether the consumer's position in `tp` is before `end` (or unknown in 5 s)."""
    position = consumer.position(tp, timeout_ms=5000)
    return position is None or position < end
