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
from platestream.settings import Settings
from schemas import TOPICS
from tests.factories import REPO
from workers.engine import Engine, make_engine


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
