"""Kafka secured as production runs it: TLS with a certificate of the tests' own CA, SCRAM-SHA-512
passwords. The services work through it; a wrong password fails fast, saying so; and no password
or credential in a URL reaches a log line."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from platestream.broker import LocalBroker, Security
from platestream.errors import BrokerError
from platestream.kafka import create_topics, make_admin, read_topic
from platestream.settings import Settings
from platestream.workers.engine import Engine
from tests.worker_tools import frame_record, plate_jpeg, running_worker, send_frames, worker_settings

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

SERVICE_USER, SERVICE_PASSWORD = "pipeline", "tr0ub4dor-and-3"


@dataclass(frozen=True)
class Secured:
    bootstrap: str
    ca_file: Path


def _certificates(folder: Path) -> tuple[Path, Path]:
    """A CA, and a broker certificate for 127.0.0.1 that it signed, in a PKCS12 keystore."""
    folder.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=platestream test CA")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "broker.key", "-out", "broker.csr",
            "-subj", "/CN=127.0.0.1")  # fmt: skip
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "broker.pem", "-days", "2", "-extfile", "san.cnf")  # fmt: skip
    openssl("pkcs12", "-export", "-in", "broker.pem", "-inkey", "broker.key", "-out", "broker.p12",
            "-passout", "pass:keystore-secret", "-name", "broker")  # fmt: skip
    return folder / "broker.p12", folder / "ca.pem"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    folder = tmp_path_factory.mktemp("secured-kafka")
    keystore, ca_file = _certificates(folder / "tls")
    security = Security(keystore, "keystore-secret", ca_file,
                        users=(("broker-admin", "admin-s3cret"), (SERVICE_USER, SERVICE_PASSWORD)))  # fmt: skip
    broker = LocalBroker(folder / "broker", security=security)
    state = broker.start()
    try:
        yield Secured(state.bootstrap, ca_file)
    finally:
        broker.stop()


def _env(secured: Secured, password: str) -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("PLATESTREAM_")} | {
        "PLATESTREAM_KAFKA_BOOTSTRAP": secured.bootstrap,
        "PLATESTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "PLATESTREAM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "PLATESTREAM_KAFKA_SASL_USERNAME": SERVICE_USER,
        "PLATESTREAM_KAFKA_SASL_PASSWORD": password,
        "PLATESTREAM_KAFKA_SSL_CAFILE": str(secured.ca_file),
        # Room for TLS and SCRAM on a loaded machine: runs of the whole suite twice timed out here
        # before the broker had answered the handshake (kafka-python gives one connection attempt
        # 10 s, the next 20 s), and so before it could say "wrong password".
        "PLATESTREAM_KAFKA_CONNECT_TIMEOUT_MS": "40000",
    }


def test_the_worker_reads_and_commits_over_tls_with_a_scram_password(
    secured: Secured, engine: Engine, tmp_path: Path
) -> None:
    settings = Settings.model_validate({
        "kafka_bootstrap": secured.bootstrap, "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": "SCRAM-SHA-512", "kafka_sasl_username": SERVICE_USER,
        "kafka_sasl_password": SERVICE_PASSWORD, "kafka_ssl_cafile": secured.ca_file,
        "topic_prefix": f"s{time.monotonic_ns() % 10**9}.", "state_dir": tmp_path,
    })  # fmt: skip
    create_topics(settings, partitions=2)
    send_frames(settings, [frame_record("5", n, image=plate_jpeg("AB12CDE")) for n in range(4)])
    with running_worker(worker_settings(settings), engine):
        results = read_topic(settings, "alpr_results", "alpr_results", count=4, timeout_s=90)
    assert sorted(r["frame_number"] for _, r in results) == [0, 1, 2, 3]
    assert all(r["results"][0]["plate"] == "AB12CDE" for _, r in results)


def test_a_wrong_password_fails_fast_saying_so_and_not_printing_it(secured: Secured) -> None:
    wrong = "not-the-password-42"
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "platestream", "topics", "create"], env=_env(secured, wrong),
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    elapsed = time.monotonic() - started
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "authentication" in lines[0].lower(), lines[0]
    assert wrong not in done.stdout + done.stderr
    # kafka-python alone retries a refused password until the connect timeout (40 s here) runs out
    assert elapsed < 30, f"{elapsed:.1f} s: a wrong password is not a broker to wait for"


def test_a_wrong_password_is_reported_by_a_client_too_slow_to_read_before_the_broker_closes(
    secured: Secured, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broker refusing a password answers and closes at once; a client on a loaded machine reads
    the answer and the close together (the CI failure this test stands for). Each read waits here
    first, so both are always there."""
    recv = ssl.SSLSocket.recv

    def late_recv(sock: ssl.SSLSocket, size: int = 1024, flags: int = 0) -> bytes:
        time.sleep(0.3)
        return recv(sock, size, flags)

    monkeypatch.setattr(ssl.SSLSocket, "recv", late_recv)
    settings = Settings.model_validate({
        "kafka_bootstrap": secured.bootstrap, "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": "SCRAM-SHA-512", "kafka_sasl_username": SERVICE_USER,
        "kafka_sasl_password": "not-the-password-42", "kafka_ssl_cafile": secured.ca_file,
        "kafka_connect_timeout_ms": 20000,
    })  # fmt: skip
    with pytest.raises(BrokerError, match="authentication failed for user 'pipeline'"):
        make_admin(settings)


def test_a_broker_certificate_the_ca_does_not_vouch_for_fails_fast_saying_so(secured: Secured, tmp_path: Path) -> None:
    _, other_ca = _certificates(tmp_path / "other")  # a CA that did not sign the broker's certificate
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "platestream", "topics", "create"],
                          env=_env(Secured(secured.bootstrap, other_ca), SERVICE_PASSWORD),
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    elapsed = time.monotonic() - started
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "TLS handshake failed (CERTIFICATE_VERIFY_FAILED)" in lines[0], lines[0]
    assert "PLATESTREAM_KAFKA_SSL_CAFILE" in lines[0]
    # kafka-python alone retries the handshake until the connect timeout (40 s here) runs out
    assert elapsed < 30, f"{elapsed:.1f} s: a certificate that does not verify is not a broker to wait for"


def test_no_password_or_url_credential_reaches_a_log_line(secured: Secured, tmp_path: Path) -> None:
    """A worker run at DEBUG with every secret set: none of them is in anything it printed."""
    secrets = {SERVICE_PASSWORD, "s3-key-s3cret", "registry-pw-s3cret"}
    env = _env(secured, SERVICE_PASSWORD) | {
        "PLATESTREAM_TOPIC_PREFIX": f"l{time.monotonic_ns() % 10**9}.",
        "PLATESTREAM_LOG_LEVEL": "DEBUG",
        "PLATESTREAM_HEALTH_PORT": "0",
        "PLATESTREAM_S3_ENDPOINT_URL": "http://key-id:s3-key-s3cret@127.0.0.1:9",
        "PLATESTREAM_SCHEMA_REGISTRY_URL": "http://reader:registry-pw-s3cret@127.0.0.1:9",
        "PLATESTREAM_STATE_DIR": str(tmp_path),
        "AWS_SECRET_ACCESS_KEY": "s3-key-s3cret",
    }
    subprocess.run([sys.executable, "-m", "platestream", "topics", "create"], env=env, check=True,
                   capture_output=True, timeout=120)  # fmt: skip
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen([sys.executable, "-m", "platestream", "worker"], env=env, stdout=out,
                                  stderr=subprocess.STDOUT)  # fmt: skip
        try:
            deadline = time.monotonic() + 90
            while b"worker_started" not in log.read_bytes() and worker.poll() is None:
                assert time.monotonic() < deadline, log.read_text()[-2000:]
                time.sleep(0.5)
            time.sleep(3)
        finally:
            worker.terminate()
            worker.wait(timeout=60)
    printed = log.read_text()
    assert "worker_started" in printed
    assert [secret for secret in secrets if secret in printed] == []
