"""Shared fixtures: one real Kafka broker per session, and per-test topics and settings."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from platestream.broker import LocalBroker, broker_answers
from platestream.errors import BrokerError
from platestream.kafka import create_topics
from platestream.schemas import TOPICS
from platestream.settings import Settings
from platestream.workers.engine import Engine, make_engine
from tests.factories import REPO


def _docker_engine_present() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0


@pytest.fixture(scope="session")
def docker_compose_file() -> str:
    return str(REPO / "docker-compose.yml")


@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An existing cluster (PLATESTREAM_KAFKA_BOOTSTRAP), docker-compose's broker, or the local one."""
    existing = os.environ.get("PLATESTREAM_KAFKA_BOOTSTRAP")
    if existing:
        yield existing
        return
    if _docker_engine_present() and os.environ.get("PLATESTREAM_TEST_DOCKER", "1") == "1":
        services = request.getfixturevalue("docker_services")
        bootstrap = "127.0.0.1:9092"
        services.wait_until_responsive(check=lambda: broker_answers(bootstrap), timeout=120.0, pause=1.0)
        yield bootstrap
        return
    broker = LocalBroker(tmp_path_factory.mktemp("kafka"))
    try:
        state = broker.start()
    except BrokerError as error:
        pytest.fail(f"the test broker did not start: {error}", pytrace=False)
    try:
        yield state.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def make_settings(kafka_bootstrap: str, tmp_path: Path) -> Callable[..., Settings]:
    """Settings on the test broker with topics of their own: a fresh prefix per test."""
    prefix = f"t{uuid.uuid4().hex[:10]}."

    def build(**overrides: object) -> Settings:
        values = {"kafka_bootstrap": kafka_bootstrap, "topic_prefix": prefix, "state_dir": tmp_path / "state"}
        return Settings(**(values | overrides))  # type: ignore[arg-type]

    return build


@pytest.fixture
def kafka_settings(make_settings: Callable[..., Settings]) -> Settings:
    """Settings whose declared topics exist (2 partitions each) on the test broker."""
    settings = make_settings()
    create_topics(settings, TOPICS, partitions=2)
    return settings


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A local S3-compatible server spoken to over HTTP (moto's server mode)."""
    from moto.server import ThreadedMotoServer

    from platestream.broker import free_port

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    """The default engine, loaded once."""
    built = make_engine("default")
    yield built
    built.close()


def _postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A PostgreSQL server: PLATESTREAM_TEST_POSTGRES_DSN, or a throwaway cluster of the machine's
    PostgreSQL (scripts/ensure-system.sh installs it)."""
    import tempfile

    from platestream.broker import free_port

    configured = os.environ.get("PLATESTREAM_TEST_POSTGRES_DSN")
    if configured:
        yield configured
        return
    binaries = _postgres_bin()
    if binaries is None:
        pytest.skip("no PostgreSQL server binaries (apt-get install postgresql) and no PLATESTREAM_TEST_POSTGRES_DSN")
    folder = Path(tempfile.mkdtemp(prefix="platestream-pg-", dir="/tmp"))
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        shutil.chown(folder, "postgres", "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", free_port()

    def run(*command: str) -> None:
        done = subprocess.run([*as_postgres, *command], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            pytest.fail(f"{' '.join(command)} failed: {done.stdout}{done.stderr}", pytrace=False)

    run(str(binaries / "initdb"), "-D", str(data), "-U", "platestream", "--auth=trust", "-E", "UTF8")
    run(str(binaries / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w", "start",
        "-o", f"-p {port} -k {folder} -h 127.0.0.1")  # fmt: skip
    try:
        yield f"postgresql://platestream@127.0.0.1:{port}/postgres"
    finally:
        run(str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)
