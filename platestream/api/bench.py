"""`platestream bench api`: requests/s and latency of `platestream serve` at several concurrencies,
and what the server costs beyond the engine's own time (figures for BENCHMARKS.md, not a test)."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

from platestream.settings import ApiSettings


@dataclass(frozen=True)
class Run:
    concurrency: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    engine_ms: float  # the engine's own time per request, as the answers report it

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds


def measure(url: str, images: list[bytes], concurrency: int, count: int) -> Run:
    """`count` POST /alpr requests, `concurrency` at a time, each a 720p JPEG."""
    import requests

    local = threading.local()

    def call(n: int) -> tuple[float, float]:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        started = time.perf_counter()
        answer = session.post(url + "/alpr", files={"image": ("frame.jpg", images[n % len(images)])})
        answer.raise_for_status()
        return (time.perf_counter() - started) * 1000, float(answer.json()["processing_time_ms"])

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(call, range(concurrency)))  # warm-up: connections, first batches
        started = time.perf_counter()
        timings = list(pool.map(call, range(count)))
        seconds = time.perf_counter() - started
    latencies = sorted(t[0] for t in timings)
    return Run(concurrency, count, seconds, statistics.median(latencies),
               latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
               statistics.fmean(t[1] for t in timings))  # fmt: skip


@contextmanager
def pipeline_backend(settings: ApiSettings) -> Iterator[ApiSettings]:
    """A broker (the configured one, else the local one), topics of the run's own and one worker."""
    import uuid

    from platestream.broker import LocalBroker
    from platestream.kafka import create_topics
    from platestream.service import in_thread
    from platestream.settings import WorkerSettings
    from platestream.workers.service import Worker

    broker = None
    if not settings.kafka_bootstrap:
        broker = LocalBroker(settings.broker_dir)
        settings = settings.model_copy(update={"kafka_bootstrap": broker.start().bootstrap})
    prefix = f"{settings.topic_prefix}bench-{uuid.uuid4().hex[:6]}."
    settings = settings.model_copy(update={"topic_prefix": prefix})
    create_topics(settings, partitions=2)
    base = settings.model_dump(include=set(WorkerSettings.model_fields) & set(ApiSettings.model_fields))
    worker = Worker(WorkerSettings(**base | {"group_id": prefix + "w", "transactional_id": prefix + "w0",
                                             "health_port": 0, "batch_wait_ms": 5}))  # fmt: skip
    try:
        with in_thread(worker, name="worker"):
            yield settings
    finally:
        if broker is not None:
            broker.stop()
