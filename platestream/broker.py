"""Real Apache Kafka brokers (KRaft) run from their jars on Maven Central.

For tests and the demo: fetch the pinned jars with Maven (cached), format storage, start on
free loopback ports, wait until it answers, stop cleanly. `LocalBroker` is one node that is its
own controller (the demo's); `LocalCluster` is N nodes that each are a broker and one voter of
the controller quorum, with topics replicated to 3 and at least 2 in sync, as production runs.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from platestream.errors import BrokerError
from platestream.log import get_logger

KAFKA_VERSION = "3.9.1"
_STATE_FILE = "broker.json"
_PORTS_FILE = "ports.json"
_LOG_TAIL_LINES = 40

log = get_logger(__name__)


def jar_cache_dir() -> Path:
    """Where the jars are kept across runs (PLATESTREAM_JAR_CACHE, else the user cache)."""
    configured = os.environ.get("PLATESTREAM_JAR_CACHE")
    if configured:
        return Path(configured)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "platestream" / f"kafka-{KAFKA_VERSION}"


def fetch_jars(cache: Path | None = None) -> Path:
    """Copy the broker's jars from Maven Central into `cache` once; return the folder."""
    cache = cache or jar_cache_dir()
    marker = cache / ".complete"
    if marker.exists():
        return cache
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("Maven (mvn) is not installed; it fetches the Kafka jars (apt-get install maven)")
    if shutil.which("java") is None:
        raise BrokerError("Java is not installed; the Kafka broker needs a JRE 17+ (apt-get install default-jre)")
    partial = cache.with_name(cache.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    pom = resources.files(__package__).joinpath("kafka-pom.xml")
    with resources.as_file(pom) as pom_path:
        command = [
            mvn, "-B", "-q", "-f", str(pom_path), "dependency:copy-dependencies",
            f"-Dkafka.version={KAFKA_VERSION}", f"-DoutputDirectory={partial}", "-DincludeScope=runtime",
        ]  # fmt: skip
        log.info("fetching_kafka_jars", version=KAFKA_VERSION, into=str(cache))
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BrokerError(f"Maven could not fetch Kafka {KAFKA_VERSION}: {_tail(done.stdout + done.stderr)}")
    (partial / ".complete").write_text(KAFKA_VERSION)
    shutil.rmtree(cache, ignore_errors=True)
    partial.rename(cache)
    return cache


def new_cluster_id() -> str:
    """A random cluster id in Kafka's form: a UUID as URL-safe base64, without padding.

    Like Kafka's own ``Uuid.randomUuid``, ids starting with ``-`` are drawn again: the storage
    tool's command line would read one as an option and find the id missing (1 draw in 64).
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _tail(text: str, lines: int = _LOG_TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


@dataclass(frozen=True)
class BrokerState:
    pid: int
    bootstrap: str
    controller_port: int
    log_file: str


@dataclass(frozen=True)
class Security:
    """A broker that takes clients only over TLS with SCRAM-SHA-512 passwords (SASL_SSL): its
    certificate and key in a PKCS12 keystore, the CA that signed it (PEM, for its own connections
    and its clients), and the users it knows, created when its storage is formatted."""

    keystore: Path
    keystore_password: str
    ca_file: Path
    users: tuple[tuple[str, str], ...]  # (name, password); the first is the broker's own

    def client_config(self, user: str, password: str) -> dict[str, object]:
        """kafka-python settings of a client that logs in as `user`."""
        return {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": user,
                "sasl_plain_password": password, "ssl_cafile": str(self.ca_file)}  # fmt: skip

    def properties(self) -> list[str]:
        name, password = self.users[0]
        login = "org.apache.kafka.common.security.scram.ScramLoginModule required"
        return [
            "sasl.enabled.mechanisms=SCRAM-SHA-512",
            "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
            f'listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={login} username="{name}" password="{password}";',
            f"ssl.keystore.location={self.keystore}",
            "ssl.keystore.type=PKCS12",
            f"ssl.keystore.password={self.keystore_password}",
            f"ssl.key.password={self.keystore_password}",
            f"ssl.truststore.location={self.ca_file}",
            "ssl.truststore.type=PEM",
            "ssl.client.auth=none",
        ]


@dataclass(frozen=True)
class Membership:
    """A node's place in its cluster: its id, the controller quorum's voters ('1@host:port,...';
    None: the node alone), the cluster id all share, and how many copies topics are kept in."""

    node_id: int = 1
    voters: str | None = None
    cluster_id: str | None = None
    replicas: int = 1


class LocalBroker:
    """One broker process whose data, logs and state live in `directory`."""

    def __init__(self, directory: Path, *, heap_mb: int = 512, membership: Membership | None = None,
                 security: Security | None = None) -> None:  # fmt: skip
        self.directory = directory.resolve()
        self.heap_mb = heap_mb
        self.membership = membership or Membership()
        self.security = security
        self._process: subprocess.Popen[bytes] | None = None  # the process this object started

    @property
    def log_file(self) -> Path:
        return self.directory / "server.log"

    @property
    def _state_file(self) -> Path:
        return self.directory / _STATE_FILE

    def state(self) -> BrokerState | None:
        """The running broker's state, or None when none runs from this folder."""
        try:
            state = BrokerState(**json.loads(self._state_file.read_text()))
        except (FileNotFoundError, json.JSONDecodeError, TypeError):
            return None
        return state if _alive(state.pid) else None

    def start(self, *, timeout_s: float = 90.0, wait: bool = True) -> BrokerState:
        """Start the broker (if it is not running) and, with `wait`, wait until it answers. A node of
        a cluster answers only once a majority of the quorum runs: start them all, then wait."""
        running = self.state()
        if running is not None:
            return running
        jars = fetch_jars()
        self.directory.mkdir(parents=True, exist_ok=True)
        port, controller_port = self._ports()
        properties = self._write_config(port, controller_port)
        self._format(jars, properties)
        java = shutil.which("java") or "java"
        command = [
            java, f"-Xmx{self.heap_mb}m", f"-Xms{min(self.heap_mb, 256)}m", "-XX:+UseG1GC",
            f"-Dlog4j.configuration=file:{self.directory / 'log4j.properties'}",
            "-cp", f"{jars}/*", "kafka.Kafka", str(properties),
        ]  # fmt: skip
        with open(self.directory / "stdout.log", "ab") as out:
            process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        state = BrokerState(process.pid, f"127.0.0.1:{port}", controller_port, str(self.log_file))
        self._state_file.write_text(json.dumps(state.__dict__))
        self._process = process
        if wait:
            self.wait_ready(timeout_s)
        return state

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        """Wait until the started broker answers; stop it and raise BrokerError if it does not."""
        state = self.state()
        if state is None:
            raise BrokerError(f"no broker runs from {self.directory}; its log ends:\n{self.log_tail()}")
        try:
            self._wait_ready(self._process, state, timeout_s)
        except BrokerError:
            self.stop()
            raise
        log.info("broker_started", bootstrap=state.bootstrap, pid=state.pid, directory=str(self.directory),
                 node_id=self.membership.node_id)  # fmt: skip

    def _ports(self) -> tuple[int, int]:
        """The ports this data folder was first started on (clients given its address find it again
        after a restart); free ones on the first start."""
        recorded = self.directory / _PORTS_FILE
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            ports = json.loads(recorded.read_text())
            port, controller_port = int(ports["port"]), int(ports["controller_port"])
        except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError, ValueError):
            port, controller_port = free_port(), free_port()
            recorded.write_text(json.dumps({"port": port, "controller_port": controller_port}))
            return port, controller_port
        for taken in (port, controller_port):
            if not _port_free(taken):
                raise BrokerError(
                    f"port {taken} of the broker in {self.directory} is in use by another process; stop it, or"
                    f" delete {recorded} to start on new ports (clients must then be given the new address)"
                )
        return port, controller_port

    def send_signal(self, signum: int) -> int:
        """Signal the running broker process (tests of faults: SIGKILL, SIGSTOP, SIGCONT); its pid."""
        state = self.state()
        if state is None:
            raise BrokerError(f"no broker runs from {self.directory}")
        os.kill(state.pid, signum)
        return state.pid

    def kill(self, *, timeout_s: float = 30.0) -> None:
        """SIGKILL the broker, as a crash would, and wait until it is gone; its data folder stays."""
        pid = self.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + timeout_s
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def freeze(self) -> None:
        """SIGSTOP: the broker holds its connections but answers nothing (a long GC pause)."""
        self.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.send_signal(signal.SIGCONT)

    def stop(self, *, timeout_s: float = 30.0) -> bool:
        """Stop the broker cleanly (SIGTERM, then SIGKILL); False when none was running."""
        try:
            state = BrokerState(**json.loads(self._state_file.read_text()))
        except (FileNotFoundError, json.JSONDecodeError, TypeError):
            return False
        stopped = _alive(state.pid)
        _terminate(state.pid, timeout_s)
        self._state_file.unlink(missing_ok=True)
        if stopped:
            log.info("broker_stopped", pid=state.pid)
        return stopped

    def log_tail(self) -> str:
        texts = []
        for name in ("stdout.log", "server.log"):
            try:
                texts.append(_tail((self.directory / name).read_text(errors="replace")))
            except FileNotFoundError:
                continue
        return "\n".join(texts) or "(the broker wrote no log)"

    def _write_config(self, port: int, controller_port: int) -> Path:
        data = self.directory / "data"
        properties = self.directory / "server.properties"
        node = self.membership
        in_sync = min(2, node.replicas)
        client = "SASL_SSL" if self.security else "PLAINTEXT"
        properties.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    f"node.id={node.node_id}",
                    f"controller.quorum.voters={node.voters or f'{node.node_id}@127.0.0.1:{controller_port}'}",
                    f"listeners={client}://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
                    f"advertised.listeners={client}://127.0.0.1:{port}",
                    "controller.listener.names=CONTROLLER",
                    f"inter.broker.listener.name={client}",
                    f"listener.security.protocol.map={client}:{client},CONTROLLER:PLAINTEXT",
                    *(self.security.properties() if self.security else []),
                    f"log.dirs={data}",
                    "num.partitions=1",
                    f"default.replication.factor={node.replicas}",
                    f"min.insync.replicas={in_sync}",
                    f"offsets.topic.replication.factor={node.replicas}",
                    "offsets.topic.num.partitions=6",
                    f"transaction.state.log.replication.factor={node.replicas}",
                    f"transaction.state.log.min.isr={in_sync}",
                    "transaction.state.log.num.partitions=6",
                    "group.initial.rebalance.delay.ms=0",
                    # Topics are declared, never auto-created: a typo must fail loudly.
                    "auto.create.topics.enable=false",
                    "message.max.bytes=26214400",
                    "replica.fetch.max.bytes=26214400",
                    "",
                ]
            )
        )
        (self.directory / "log4j.properties").write_text(
            "\n".join(
                [
                    "log4j.rootLogger=INFO, file",
                    "log4j.appender.file=org.apache.log4j.FileAppender",
                    f"log4j.appender.file.File={self.log_file}",
                    "log4j.appender.file.layout=org.apache.log4j.PatternLayout",
                    "log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n",
                    "log4j.logger.kafka=INFO",
                    "log4j.logger.org.apache.kafka=INFO",
                    "",
                ]
            )
        )
        return properties

    def _format(self, jars: Path, properties: Path) -> None:
        if (self.directory / "data" / "meta.properties").exists():
            return
        cluster_id = self.membership.cluster_id or new_cluster_id()
        java = shutil.which("java") or "java"
        users = [f"SCRAM-SHA-512=[name={name},password={password}]" for name, password in
                 (self.security.users if self.security else ())]  # fmt: skip
        done = subprocess.run(
            [java, "-cp", f"{jars}/*", "-Dlog4j.configuration=file:/dev/null",
             "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(properties),
             *(argument for user in users for argument in ("--add-scram", user))],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise BrokerError(f"formatting Kafka storage failed: {_tail(done.stdout + done.stderr)}")

    def _wait_ready(self, process: subprocess.Popen[bytes] | None, state: BrokerState, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise BrokerError(
                    f"the Kafka broker exited with code {process.returncode} while starting;"
                    f" its log ends:\n{self.log_tail()}"
                )
            client = self.security.client_config(*self.security.users[0]) if self.security else {}
            if broker_answers(state.bootstrap, **client):
                return
            time.sleep(0.3)
        raise BrokerError(
            f"the Kafka broker did not answer on {state.bootstrap} within {timeout_s:.0f} s;"
            f" its log ends:\n{self.log_tail()}"
        )


class LocalCluster:
    """`size` nodes on loopback, each a broker and a voter of the one controller quorum, in
    `directory`/node-N; topics are kept in 3 copies (fewer nodes: one per node), 2 in sync. Any one
    node can be stopped, killed, frozen and started again by its id, at the same address."""

    def __init__(self, directory: Path, *, size: int = 3, heap_mb: int = 384) -> None:
        if size < 1:
            raise BrokerError(f"a cluster has at least one node, not {size}")
        self.directory = directory.resolve()
        self.size = size
        ports = self._ports()
        voters = ",".join(f"{node}@127.0.0.1:{ports[node][1]}" for node in sorted(ports))
        cluster_id = self._cluster_id()
        self.nodes = {
            node: LocalBroker(self.directory / f"node-{node}", heap_mb=heap_mb,
                              membership=Membership(node, voters, cluster_id, replicas=min(3, size)))
            for node in sorted(ports)
        }  # fmt: skip

    @property
    def bootstrap(self) -> str:
        ports = self._ports()
        return ",".join(f"127.0.0.1:{ports[node][0]}" for node in sorted(ports))

    def start(self, *, timeout_s: float = 120.0) -> str:
        """Start every node that is not running, wait until all answer; the bootstrap list."""
        for node in self.nodes.values():
            node.start(wait=False)
        try:
            for node in self.nodes.values():
                node.wait_ready(timeout_s)
            self._wait_brokers(timeout_s)
        except BrokerError:
            self.stop()
            raise
        log.info("cluster_started", bootstrap=self.bootstrap, nodes=len(self.nodes))
        return self.bootstrap

    def node(self, node_id: int) -> LocalBroker:
        try:
            return self.nodes[node_id]
        except KeyError:
            raise BrokerError(f"the cluster has nodes {sorted(self.nodes)}, not {node_id}") from None

    def controller(self) -> int:
        """The node that leads the controller quorum now (the active controller), from the
        quorum state the nodes keep: the latest epoch's leader."""
        best: tuple[int, int] | None = None
        for node in self.nodes.values():
            try:
                state = json.loads((node.directory / "data" / "__cluster_metadata-0" / "quorum-state").read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                continue
            epoch, leader = int(state.get("leaderEpoch", -1)), int(state.get("leaderId", -1))
            if leader > 0 and (best is None or epoch > best[0]) and self.nodes[leader].state() is not None:
                best = (epoch, leader)
        if best is None:
            raise BrokerError("no node of the cluster says which controller leads")
        return best[1]

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()

    def _wait_brokers(self, timeout_s: float) -> None:
        """Until every node is a registered broker (topics can then be given all their copies)."""
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        deadline = time.monotonic() + timeout_s
        seen: set[int] = set()
        while time.monotonic() < deadline:
            try:
                admin = KafkaAdminClient(bootstrap_servers=self.bootstrap.split(","), request_timeout_ms=5000)
                try:
                    seen = {broker["broker_id"] for broker in admin.describe_cluster()["brokers"]}
                finally:
                    admin.close()
            except (KafkaError, OSError):
                seen = set()
            if seen == set(self.nodes):
                return
            time.sleep(0.5)
        raise BrokerError(f"only brokers {sorted(seen)} of {sorted(self.nodes)} joined in {timeout_s:.0f} s")

    def _ports(self) -> dict[int, tuple[int, int]]:
        """Each node's (port, controller port), chosen on the first start and kept in the folder."""
        recorded = self.directory / _PORTS_FILE
        try:
            saved = json.loads(recorded.read_text())
            return {int(node): (int(ports[0]), int(ports[1])) for node, ports in saved.items()}
        except (FileNotFoundError, json.JSONDecodeError, TypeError, ValueError, IndexError):
            pass
        chosen = {node: (free_port(), free_port()) for node in range(1, self.size + 1)}
        self.directory.mkdir(parents=True, exist_ok=True)
        recorded.write_text(json.dumps({str(node): list(ports) for node, ports in chosen.items()}))
        for node, (port, controller_port) in chosen.items():
            folder = self.directory / f"node-{node}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / _PORTS_FILE).write_text(json.dumps({"port": port, "controller_port": controller_port}))
        return chosen

    def _cluster_id(self) -> str:
        recorded = self.directory / "cluster-id"
        if not recorded.exists():
            recorded.write_text(new_cluster_id())
        return recorded.read_text().strip()


def broker_answers(bootstrap: str, **client: object) -> bool:
    """True once the broker serves metadata (its listener alone is not enough); `client`: the
    kafka-python settings of a secured listener."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    host, _, port = bootstrap.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return False  # not listening yet; spare the client's connection warnings
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000, **client)
    except (KafkaError, OSError, ValueError):
        return False
    try:
        admin.describe_cluster()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie of ours counts as gone
        done_pid, _ = os.waitpid(pid, os.WNOHANG)
        return done_pid == 0
    except ChildProcessError:
        return True


def _terminate(pid: int, timeout_s: float) -> None:
    if not _alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
