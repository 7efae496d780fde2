"""Running a soak: a three-node cluster, a local S3 server (behind a proxy that can be made slow or
unavailable) and a folder with the rendered traffic, the pipeline as separate processes (an S3
backfill, a file sender, workers, the aggregator, store writers to SQLite and PostgreSQL, a webhook
sender to a target that can be made slow or unavailable), the fault schedule carried out on them,
and the committed outputs collected and checked."""

from __future__ import annotations

import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from kafka import TopicPartition
from kafka.errors import KafkaError

from platestream.aggregator.service import grouping_config
from platestream.broker import LocalCluster, free_port
from platestream.errors import PlatestreamError
from platestream.kafka import codec, create_topics, make_consumer, read_topic
from platestream.log import get_logger
from platestream.settings import AggregatorSettings, Settings
from platestream.soak.check import Report, verify
from platestream.soak.faults import Fault, schedule
from platestream.soak.outages import DOWN, SLOW, UP, FlakyProxy, WebhookTarget
from platestream.soak.traffic import KEY_PATTERN, START_MS, Frame, render, traffic

log = get_logger(__name__)

BUCKET = "soak"
SESSION_TIMEOUT_MS = 6000
# Longer than any fault starves a camera's results (an S3 outage and the workers' backoff after it
# came to 50 s): a group is never split by a fault, only closed after the camera's last frame.
IDLE_FLUSH_MS = 120_000
DOWN_S = 3.0  # how long a killed part stays down
OUTAGE_S = 15.0  # how long S3 or the webhook target stays slow or unavailable
PRODUCERS = ("producer-s3", "producer-files")


class SoakError(PlatestreamError):
    """The soak could not be set up or run (not: it found something lost; that is its report)."""


@dataclass(frozen=True)
class Plan:
    duration_s: float = 180.0
    vehicles: int = 30
    workers: int = 2
    seed: int = 1
    bad_objects: int = 3
    faults: tuple[str, ...] | None = None  # kinds; None: all
    directory: Path = Path(".platestream/soak")
    postgres_dsn: str | None = None  # a server for a second store writer; None: SQLite only


class Part:
    """One service of the pipeline, run as its own process so it can be killed and paused."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], logs: Path) -> None:
        self.name, self.args, self.env = name, args, env
        self.log_path = logs / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._out: IO[bytes] | None = None

    def start(self) -> None:
        if self._out is not None:
            self._out.close()  # the previous run's
        self._out = open(self.log_path, "ab")  # noqa: SIM115 (kept open while the process runs)
        command = [sys.executable, "-m", "platestream", *self.args]
        self.process = subprocess.Popen(
            command, env=self.env, stdout=self._out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        self.starts += 1

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        if self.running():
            assert self.process is not None
            self.process.send_signal(signum)

    def kill(self) -> None:
        self.signal(signal.SIGCONT)  # a paused process dies too
        self.signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=30)

    def stop(self, timeout_s: float = 30.0) -> int | None:
        if self.process is None:
            return None
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self._out is not None:
            self._out.close()
        return self.process.returncode


class Collector(threading.Thread):
    """Reads alpr_results as read_committed consumers do, noting when each was written (its Kafka
    timestamp: when the worker that committed it sent it)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(name="soak-collector", daemon=True)
        self.settings = settings
        self.records: list[dict[str, Any]] = []
        self.written: list[float] = []  # epoch seconds
        self._done = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        topic = self.settings.topic_name("alpr_results")
        decode = codec(self.settings, "alpr_results").decode
        consumer = make_consumer(self.settings, group_id=None)
        try:
            partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
            consumer.assign(partitions)
            consumer.seek_to_beginning()
            while not self._done.is_set():
                try:
                    polled = consumer.poll(timeout_ms=500)
                except KafkaError:
                    time.sleep(0.5)  # a broker away: the client finds the partitions' new leaders
                    continue
                with self._lock:
                    for messages in polled.values():
                        for message in messages:
                            self.records.append(decode(message.value))
                            self.written.append(message.timestamp / 1000)
        finally:
            consumer.close()

    def frames_seen(self) -> set[tuple[int, int]]:
        with self._lock:
            return {(int(r["camera_id"]), int(r["epoch_time"])) for r in self.records}

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=30)


@dataclass
class Injected:
    fault: Fault
    started: float  # epoch seconds
    ended: float
    detail: str


def run_soak(settings: Settings, plan: Plan) -> Report:
    """Run the soak; its report (`report.ok` says whether nothing was lost or duplicated)."""
    started = time.monotonic()
    logging.getLogger("kafka").setLevel(logging.CRITICAL)  # the collector rides out broker faults quietly
    directory = plan.directory.resolve() / time.strftime("%Y%m%d-%H%M%S")
    logs = directory / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    frames = traffic(plan.vehicles, seed=plan.seed)
    postgres = _soak_database(plan.postgres_dsn) if plan.postgres_dsn else None
    settings, cluster, kinds = _cluster(settings, plan, directory)
    settings = settings.model_copy(update={"topic_prefix": f"{settings.topic_prefix}soak-{uuid.uuid4().hex[:6]}."})
    create_topics(settings, partitions=4)
    s3, endpoint = _s3_server()
    proxy = FlakyProxy(int(endpoint.rsplit(":", 1)[1]))
    target = WebhookTarget()
    parts: dict[str, Part] = {}
    collector = Collector(settings)
    try:
        bad_keys, counts = _inputs(directory, endpoint, frames, plan.bad_objects)
        if postgres:
            print(f"PostgreSQL store in database {postgres[1]} (kept)", flush=True)
        window = plan.duration_s * 0.6
        parts = _parts(settings, plan, Outside(proxy.url, target.url, postgres[0] if postgres else None), logs,
                       directory, rates=(counts[0] / window, counts[1] / window))  # fmt: skip
        collector.start()
        for part in parts.values():
            part.start()
        traffic_start = time.time()
        stores = tuple(name for name in parts if name.startswith("store"))
        faults = schedule(plan.duration_s, seed=plan.seed, workers=plan.workers, kinds=kinds, stores=stores,
                          producers=PRODUCERS)  # fmt: skip
        injected = _inject(faults, parts, cluster, {"s3": proxy, "webhook": target}, traffic_start)
        _drain(parts, collector, frames, deadline=time.monotonic() + plan.duration_s + 300)
        config = grouping_config(AggregatorSettings(**_aggregator_overrides()))
        report = _finish(settings, parts, collector, frames, bad_keys, config, directory, target,
                         postgres[0] if postgres else None)  # fmt: skip
        report.faults = {
            kind: sum(1 for i in injected if i.fault.kind == kind) for kind in sorted({f.kind for f in faults})
        }
        report.longest_recovery_s, report.longest_gap_s = _recovery(injected, collector, traffic_start)
        report.duration_s = round(time.monotonic() - started, 1)
        _save(directory, report, injected, traffic_start)
        return report
    finally:
        collector.stop()
        for part in parts.values():
            part.stop()
        proxy.close()
        target.close()
        s3.stop()
        if cluster is not None:
            cluster.stop()


def _inputs(directory: Path, endpoint: str, frames: list[Frame], bad_inputs: int) -> tuple[list[str], tuple[int, int]]:
    """Odd cameras' frames into S3, the others' into files, the bad inputs shared between them;
    the bad inputs' keys, and how many frames each producer has."""
    by_s3 = [frame for frame in frames if frame.camera % 2]
    by_files = [frame for frame in frames if not frame.camera % 2]
    bad_s3, bad_files = (bad_inputs + 1) // 2, bad_inputs // 2
    bad_keys = _upload(endpoint, by_s3, bad_s3) + _write_files(directory, by_files, bad_files)
    print(f"{len(frames)} frames of {len({f.vehicle for f in frames})} vehicles: {len(by_s3)} and {bad_s3} bad "
          f"objects in s3://{BUCKET}, {len(by_files)} and {bad_files} bad files in {directory / 'files'}",
          flush=True)  # fmt: skip
    return bad_keys, (len(by_s3), len(by_files))


def _save(directory: Path, report: Report, injected: list[Injected], traffic_start: float) -> None:
    (directory / "report.json").write_text(json.dumps(asdict(report) | {"ok": report.ok}, indent=2))
    (directory / "faults.json").write_text(json.dumps(
        [asdict(i.fault) | {"at": round(i.started - traffic_start, 1), "down_s": round(i.ended - i.started, 1),
                            "detail": i.detail} for i in injected], indent=2))  # fmt: skip


def _cluster(settings: Settings, plan: Plan, directory: Path) -> tuple[Settings, LocalCluster | None, list[str] | None]:
    """A local three-node cluster unless one is configured (on which brokers are not killed); the
    settings that reach it, the cluster, the fault kinds (None: all)."""
    kinds = list(plan.faults) if plan.faults else None
    if settings.kafka_bootstrap:
        return (
            settings,
            None,
            [kind for kind in (kinds or _all_kinds()) if kind not in ("kill-broker", "kill-controller")],
        )
    cluster = LocalCluster(directory / "cluster", size=3)
    print(f"cluster of 3 on {cluster.start()}", flush=True)
    return settings.model_copy(update={"kafka_bootstrap": cluster.bootstrap}), cluster, kinds


def _all_kinds() -> list[str]:
    from platestream.soak.faults import KINDS

    return list(KINDS)


def _aggregator_overrides() -> dict[str, Any]:
    return {"idle_flush_ms": IDLE_FLUSH_MS, "country": "eu"}


def _s3_server() -> tuple[Any, str]:
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        raise SoakError("the soak's S3 server is moto's: pip install 'platestream[test]'") from None
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "soak")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "soak")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # not a line per request
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server, f"http://127.0.0.1:{port}"


def _upload(endpoint: str, frames: list[Frame], bad_objects: int) -> list[str]:
    """The frames as the cameras' JPEGs, and `bad_objects` objects that are not images; their keys."""
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda frame: client.put_object(Bucket=BUCKET, Key=frame.key, Body=render(frame)), frames))
    bad = [f"frames/9/{START_MS + n}.jpg" for n in range(bad_objects)]
    for n, key in enumerate(bad):
        client.put_object(Bucket=BUCKET, Key=key, Body=b"\xff\xd8 not a jpeg " + bytes([n]) * 64)
    return bad


def _write_files(directory: Path, frames: list[Frame], bad_files: int) -> list[str]:
    """The frames as the cameras' JPEGs under directory/files/<camera>/, modified at their capture
    time, and `bad_files` files that are not images; the bad files' paths under `directory`."""

    def write(path: Path, body: bytes, moment_ms: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        os.utime(path, ns=(moment_ms * 1_000_000, moment_ms * 1_000_000))

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda f: write(directory / "files" / str(f.camera) / f"{f.capture_ms}.jpg", render(f),
                                      f.capture_ms), frames))  # fmt: skip
    bad = [f"files/8/{START_MS + n}.jpg" for n in range(bad_files)]
    for n, name in enumerate(bad):
        write(directory / name, b"\xff\xd8 not a jpeg " + bytes([n]) * 64, START_MS + n)
    return bad


def _soak_database(dsn: str) -> tuple[str, str]:
    """A new database on the server of `dsn` for this soak's PostgreSQL store (kept afterwards, to
    look at); its DSN and name."""
    try:
        import psycopg
        from psycopg.conninfo import make_conninfo
    except ImportError:
        raise SoakError("a PostgreSQL store needs psycopg: pip install 'platestream[postgres]'") from None
    name = f"soak_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as connection:
            connection.execute(f"CREATE DATABASE {name}")
    except psycopg.Error as error:
        raise SoakError(f"cannot create the soak's database on {dsn.rsplit('@', maxsplit=1)[-1]}: {error}") from None
    return make_conninfo(dsn, dbname=name), name


@dataclass(frozen=True)
class Outside:
    """Where the parts reach what the soak serves them."""

    s3_endpoint: str
    webhook_url: str
    postgres_dsn: str | None


def _parts(
    settings: Settings, plan: Plan, outside: Outside, logs: Path, directory: Path, *, rates: tuple[float, float]
) -> dict[str, Part]:
    prefix = settings.topic_prefix
    base = {key: value for key, value in os.environ.items() if not key.startswith("PLATESTREAM_")} | {
        "PLATESTREAM_KAFKA_BOOTSTRAP": str(settings.kafka_bootstrap),
        "PLATESTREAM_TOPIC_PREFIX": prefix,
        "PLATESTREAM_STATE_DIR": str(directory / "state"),
        "PLATESTREAM_S3_ENDPOINT_URL": outside.s3_endpoint,
        "PLATESTREAM_HEALTH_PORT": "0",
        "PLATESTREAM_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
        "PLATESTREAM_TRANSACTION_TIMEOUT_MS": "10000",
        "PLATESTREAM_KAFKA_REQUEST_TIMEOUT_MS": "10000",
        "PLATESTREAM_KAFKA_RETRY_BACKOFF_MAX_MS": "1000",
        "PLATESTREAM_PROGRESS_LOG_S": "0",
        "PLATESTREAM_LOG_FORMAT": "json",
    }
    workers = {
        "PLATESTREAM_GROUP_ID": prefix + "workers", "PLATESTREAM_BATCH_SIZE": "4", "PLATESTREAM_COUNTRY": "eu",
        "PLATESTREAM_HEARTBEAT_INTERVAL_S": "3600",
        "PLATESTREAM_EMIT_EMPTY": "true",  # a frame read without a plate has its record too: each frame is counted
    }  # fmt: skip
    parts = {}
    for n in range(1, plan.workers + 1):
        env = base | workers | {"PLATESTREAM_TRANSACTIONAL_ID": f"{prefix}worker-{n}"}
        parts[f"worker-{n}"] = Part(f"worker-{n}", ["worker"], env, logs)
    aggregator = {f"PLATESTREAM_{key.upper()}": str(value) for key, value in _aggregator_overrides().items()}
    env = base | aggregator | {"PLATESTREAM_GROUP_ID": prefix + "aggregator",
                               "PLATESTREAM_TRANSACTIONAL_ID": prefix + "aggregator-0"}  # fmt: skip
    parts["aggregator"] = Part("aggregator", ["aggregate"], env, logs)
    env = base | {"PLATESTREAM_GROUP_ID": prefix + "store", "PLATESTREAM_TRANSACTIONAL_ID": prefix + "store-0",
                  "PLATESTREAM_SQLITE_PATH": str(directory / "soak.db"),
                  "PLATESTREAM_JSONL_TARGET": str(directory / "lake")}  # fmt: skip
    parts["store"] = Part("store", ["store"], env, logs)
    if outside.postgres_dsn:
        env = base | {"PLATESTREAM_GROUP_ID": prefix + "store-pg", "PLATESTREAM_TRANSACTIONAL_ID": prefix + "store-pg",
                      "PLATESTREAM_POSTGRES_DSN": outside.postgres_dsn}  # fmt: skip
        parts["store-pg"] = Part("store-pg", ["store"], env, logs)
    env = base | {"PLATESTREAM_GROUP_ID": prefix + "webhooks", "PLATESTREAM_TRANSACTIONAL_ID": prefix + "webhooks",
                  "PLATESTREAM_WEBHOOK_URLS": outside.webhook_url, "PLATESTREAM_WEBHOOK_TIMEOUT_S": "5",
                  "PLATESTREAM_WEBHOOK_ATTEMPTS": "12", "PLATESTREAM_WEBHOOK_BACKOFF_S": "0.5"}  # fmt: skip
    parts["webhooks"] = Part("webhooks", ["webhooks"], env, logs)
    s3_rate, files_rate = rates
    command = ["produce", "s3", f"s3://{BUCKET}/frames/", "--key-pattern", KEY_PATTERN, "--rate", f"{s3_rate:.3f}"]
    env = base | {"PLATESTREAM_BACKFILL_ID": prefix + "backfill"}
    parts["producer-s3"] = Part("producer-s3", command, env, logs)
    command = ["produce", "files", str(directory / "files"), "--checkpoint-id", prefix + "files",
               "--rate", f"{files_rate:.3f}"]  # fmt: skip
    parts["producer-files"] = Part("producer-files", command, base, logs)
    return parts


def _inject(faults: list[Fault], parts: dict[str, Part], cluster: LocalCluster | None,
            outages: dict[str, FlakyProxy | WebhookTarget], start: float) -> list[Injected]:  # fmt: skip
    done = []
    for fault in faults:
        time.sleep(max(0.0, start + fault.at_s - time.time()))
        _revive(parts)
        began = time.time()
        detail = ""
        if fault.kind in ("kill-broker", "kill-controller"):
            assert cluster is not None
            leader = cluster.controller()
            node = leader if fault.kind == "kill-controller" else next(n for n in cluster.nodes if n != leader)
            detail = f"node {node}"
            cluster.node(node).kill()
            time.sleep(DOWN_S)
            cluster.node(node).start()
        elif fault.kind == "pause-worker":
            part = parts[fault.target]
            part.signal(signal.SIGSTOP)
            time.sleep(SESSION_TIMEOUT_MS / 1000 + 6)  # its partitions move to the others meanwhile
            part.signal(signal.SIGCONT)
        elif fault.target in outages:  # slow-s3, down-s3, slow-webhook, down-webhook
            outages[fault.target].set(SLOW if fault.kind.startswith("slow") else DOWN)
            time.sleep(OUTAGE_S)
            outages[fault.target].set(UP)
        else:
            part = parts[fault.target]
            if fault.target in PRODUCERS and not part.running():
                detail = "skipped: the producer had finished"  # _revive restarts one that gave up
            else:
                part.kill()
                time.sleep(DOWN_S)
                part.start()
        ended = time.time()
        log.info("soak_fault", kind=fault.kind, target=fault.target, detail=detail, seconds=round(ended - began, 1))
        print(f"  {ended - start:6.1f} s  {fault.kind} {fault.target} {detail}".rstrip(), flush=True)
        done.append(Injected(fault, began, ended, detail))
    return done


def _revive(parts: dict[str, Part]) -> None:
    """Start again any part that exited on its own (a backfill that gave up on the broker: it
    resumes from its checkpoint); a backfill that finished stays finished."""
    for part in parts.values():
        if part.process is not None and not part.running() and part.process.returncode != 0:
            log.warning("soak_part_exited", part=part.name, code=part.process.returncode)
            part.start()


def _drain(parts: dict[str, Part], collector: Collector, frames: list[Frame], *, deadline: float) -> None:
    """Until every frame has its result (the backfill started again whenever it stopped short)."""
    wanted = {(frame.camera, frame.capture_ms) for frame in frames}
    while time.monotonic() < deadline:
        _revive(parts)
        if wanted <= collector.frames_seen():
            return
        time.sleep(1.0)


def _finish(settings: Settings, parts: dict[str, Part], collector: Collector, frames: list[Frame],
            bad_keys: list[str], config: Any, directory: Path, target: WebhookTarget,
            postgres_dsn: str | None) -> Report:  # fmt: skip
    """Wait for the groups to be sent, stored and delivered (the last after the idle flush), then check."""
    from platestream.soak.check import expected_groups

    results = list(collector.records)
    expected = sum(expected_groups(results, config).values())
    # Each camera's last group is sent by the idle flush after its last result: not before.
    flushed = max(collector.written, default=time.time()) + IDLE_FLUSH_MS / 1000 + 5
    deadline = flushed + 120
    while time.time() < deadline:
        _revive(parts)
        groups = [record for _, record in read_topic(settings, "alpr_group", "alpr_group", timeout_s=5)]
        counts = [len(groups), len(_stored(directory / "soak.db")), len(target.delivered)]
        if postgres_dsn:
            counts.append(len(_stored_postgres(postgres_dsn)))
        if time.time() >= flushed and min(counts) >= expected:
            break
        time.sleep(3)
    time.sleep(3)  # anything sent twice would show now
    groups = [record for _, record in read_topic(settings, "alpr_group", "alpr_group", timeout_s=5)]
    stored = _stored(directory / "soak.db")
    postgres = _stored_postgres(postgres_dsn) if postgres_dsn else None
    letters = [record for _, record in read_topic(settings, "dead_letter", "dead_letter", timeout_s=5)]
    results = [record for _, record in read_topic(settings, "alpr_results", "alpr_results", timeout_s=10)]
    lake = [json.loads(line) for path in sorted((directory / "lake").rglob("*.jsonl"))
            for line in path.read_text().splitlines() if line]  # fmt: skip
    return verify(frames, bad_keys, results, groups, stored, lake, letters, config, postgres=postgres,
                  delivered=target.delivered.copy())  # fmt: skip


def _stored(database: Path) -> list[dict[str, Any]]:
    import sqlite3

    if not database.exists():
        return []
    try:
        with sqlite3.connect(database, timeout=10) as connection:
            return [json.loads(row[0]) for row in connection.execute("SELECT record FROM plate_groups")]
    except sqlite3.Error:
        return []  # not created yet


def _stored_postgres(dsn: str) -> list[dict[str, Any]]:
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=10) as connection:
            return [row[0] for row in connection.execute("SELECT record FROM plate_groups")]
    except psycopg.Error:
        return []  # not created yet


def _recovery(injected: list[Injected], collector: Collector, start: float) -> tuple[float, float]:
    """The longest wait, after a fault ended, for the next result to be written (counted for faults
    that ended while results flowed: after the first and before the last); and the longest gap
    between results written after traffic began."""
    written = sorted(collector.written)
    recovery = 0.0
    for item in injected:
        after = [t for t in written if t >= item.ended]
        if written and item.started < written[0]:
            continue  # the pipeline had not got going yet
        if after:
            recovery = max(recovery, after[0] - item.ended)
    gaps = [b - a for a, b in itertools.pairwise(written) if a >= start]
    return round(recovery, 1), round(max(gaps, default=0.0), 1)


def print_report(report: Report) -> None:
    rows = [
        ("frames sent", report.frames_sent), ("bad objects sent", report.bad_objects_sent),
        ("alpr_results committed", report.results), ("frames lost", report.frames_lost),
        ("frames read twice", report.frames_duplicated), ("vehicles", report.vehicles),
        ("vehicles read right", report.vehicles_read), ("groups expected", report.groups_expected),
        ("groups sent", report.groups_sent), ("groups lost", report.groups_lost),
        ("groups sent twice", report.groups_duplicated), ("groups stored (SQLite)", report.groups_stored),
        ("stored groups missing", report.stored_lost), ("stored groups extra", report.stored_extra),
        ("groups in JSON-lines files", report.groups_in_lake), ("missing from the files", report.lake_lost),
        ("extra in the files", report.lake_extra),
        ("groups stored (PostgreSQL)", "not run" if report.groups_in_postgres is None else report.groups_in_postgres),
        ("missing from PostgreSQL", report.postgres_lost), ("extra in PostgreSQL", report.postgres_extra),
        ("groups delivered by webhook", "not run" if report.webhook_delivered is None else report.webhook_delivered),
        ("not delivered", report.webhook_lost),
        ("deliveries of no group", report.webhook_unknown),
        ("deliveries repeated (same Idempotency-Key)", report.webhook_repeats),
        ("dead letters", report.dead_letters), ("dead letters not injected", report.dead_letters_unexpected),
        ("faults", ", ".join(f"{kind} x{n}" for kind, n in report.faults.items()) or "none"),
        ("longest wait for a result after a fault", f"{report.longest_recovery_s} s"),
        ("longest gap between results", f"{report.longest_gap_s} s"),
        ("duration", f"{report.duration_s} s"),
    ]  # fmt: skip
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print("OK: nothing lost, nothing duplicated" if report.ok else "FAILED: something was lost or duplicated")
