"""Health tells the truth: a service that stops moving with input waiting turns not-ready, then
not-alive, and says why, in the log and in the probe's body."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from platestream.broker import LocalBroker
from platestream.errors import BrokerError
from platestream.service import Progress, Service, StallLimits
from platestream.transactions import Backoff


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_stalled_service_turns_not_ready_then_not_alive_with_its_reason() -> None:
    clock = Clock()
    progress = Progress(StallLimits(not_ready_s=60, not_alive_s=300), clock)
    progress.blocked("reconnecting to Kafka, attempt 4 (KafkaTimeoutError: ...)")
    clock.now += 59
    assert progress.probe(60).ok
    clock.now += 2
    ready = progress.probe(60)
    assert not ready.ok
    assert ready.details["status"] == "stalled"
    assert str(ready.details["reason"]) == (
        "no progress for 61 s with input waiting: reconnecting to Kafka, attempt 4 (KafkaTimeoutError: ...)"
    )
    assert progress.probe(300).ok, "still alive: a restart would not bring the broker back sooner"
    clock.now += 240
    assert not progress.probe(300).ok
    progress.advanced()
    assert progress.probe(60).ok
    assert progress.probe(300).ok


def test_a_caught_up_service_is_never_stalled() -> None:
    clock = Clock()
    progress = Progress(StallLimits(not_ready_s=5, not_alive_s=10), clock)
    for _ in range(100):  # idle for a long time, looking every second and finding nothing to do
        clock.now += 1
        progress.advanced()
    assert progress.probe(5).ok


def test_health_endpoint_answers_503_with_the_reason_in_its_body() -> None:
    class Stuck(Service):
        kind = "stuck"

    service = Stuck(health_port=0, limits=StallLimits(not_ready_s=0.01, not_alive_s=0.02))
    service.health_port = _free_port()
    service._ready = True
    service.progress.blocked("waiting for Kafka to commit a transaction")
    with service.serving_health():
        import time

        time.sleep(0.05)
        for path in ("/readyz", "/healthz"):
            with pytest.raises(urllib.error.HTTPError) as answer:
                urllib.request.urlopen(f"http://127.0.0.1:{service.health_port}{path}", timeout=5)
            assert answer.value.code == 503
            body = json.loads(answer.value.read())
            assert body["ok"] is False
            assert body["status"] == "stalled"
            assert body["reason"].endswith("waiting for Kafka to commit a transaction")
        service.progress.advanced()
        with urllib.request.urlopen(f"http://127.0.0.1:{service.health_port}/healthz", timeout=5) as ok:
            assert ok.status == 200
            assert json.loads(ok.read())["status"] == "ok"


def test_backoff_doubles_up_to_its_cap() -> None:
    delays = Backoff(first_s=0.25, max_s=5.0).delays()
    assert [next(delays) for _ in range(7)] == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_a_broker_data_folder_keeps_its_ports(tmp_path: Path) -> None:
    broker = LocalBroker(tmp_path)
    first = broker._ports()
    assert broker._ports() == first, "a restart on the same data folder has the same address"
    assert LocalBroker(tmp_path / "other")._ports() != first
    import socket

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", first[0]))
        squatter.listen()
        with pytest.raises(BrokerError, match=f"port {first[0]} .* in use"):
            broker._ports()


def _free_port() -> int:
    from platestream.broker import free_port

    return free_port()


def test_the_images_healthcheck_follows_the_health_endpoint() -> None:
    """`python -m platestream.healthcheck`, as the images' HEALTHCHECK runs it."""
    import os
    import subprocess
    import sys

    def healthcheck(port: int) -> int:
        env = os.environ | {"PLATESTREAM_HEALTH_PORT": str(port)}
        return subprocess.run([sys.executable, "-m", "platestream.healthcheck"], env=env, capture_output=True,
                              check=False).returncode  # fmt: skip

    class Stuck(Service):
        kind = "stuck"

    clock = Clock()
    service = Stuck(health_port=_free_port())
    service.progress = Progress(StallLimits(not_ready_s=60, not_alive_s=300), clock)
    with service.serving_health():
        assert healthcheck(service.health_port) == 0
        service.progress.blocked("waiting for Kafka to commit a transaction")
        clock.now += 301
        assert healthcheck(service.health_port) == 1  # /healthz answers 503
    assert healthcheck(service.health_port) == 1  # nothing listens
    assert healthcheck(0) == 0  # the endpoint is off: nothing to check


def test_a_working_service_logs_its_totals_and_rates_at_each_interval_and_nothing_when_idle() -> None:
    from platestream.service import ProgressLog

    now = [0.0]
    progress = ProgressLog("worker_progress", 60.0, clock=lambda: now[0])
    now[0] = 30.0
    assert progress.update({"frames": 300}) is None  # the interval has not passed
    now[0] = 61.0
    assert progress.update({"frames": 610}) == {"frames": 610, "frames_per_s": 10.0}
    now[0] = 125.0
    assert progress.update({"frames": 610}) is None  # idle for a minute: nothing to say
    now[0] = 190.0
    assert progress.update({"frames": 1260}, partition=3) == {"frames": 1260, "frames_per_s": 10.0, "partition": 3}
    assert ProgressLog("off", 0.0).update({"frames": 1}) is None  # 0 turns the lines off


def test_the_agent_uid_has_rekors_form_and_the_heartbeat_measures_this_process() -> None:
    import re

    import psutil

    from platestream.heartbeat import heartbeat, install_id

    uid = install_id("worker-3")
    assert re.fullmatch(r"[0-9a-f]{40}", uid)  # as /etc/openalpr/install_id
    assert install_id("worker-3") == uid  # a StatefulSet pod keeps it across restarts
    assert install_id("worker-4") != uid
    beat = heartbeat(uid, "1.0", "platestream-worker", threads_active=1, threads_configured=1)
    rss = psutil.Process().memory_info().rss
    assert 0.5 * rss < beat["memory_consumed_bytes"] < 2 * rss  # resident memory now, not the peak
    assert beat["memory_total_bytes"] == psutil.virtual_memory().total
    assert 0 <= beat["cpu_usage_percent"] <= 100
    assert beat["system_uptime_seconds"] > 0
