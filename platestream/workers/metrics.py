"""Prometheus metrics of a worker; inert when prometheus-client is not installed."""

from __future__ import annotations

from functools import cache
from typing import Any

from platestream.workers.pipeline import BatchReport


class _Inert:
    def labels(self, **_: str) -> _Inert:
        return self

    def inc(self, amount: float = 1) -> None:
        return None

    def set(self, value: float) -> None:
        return None

    def observe(self, value: float) -> None:
        return None


class WorkerMetrics:
    def __init__(self) -> None:
        try:
            import prometheus_client as prom
        except ImportError:
            inert: Any = _Inert()
            self.frames = self.results = self.dead_letters = self.aborted = self.s3_unavailable = inert
            self.batch_size = self.engine_seconds = self.fetch_seconds = self.end_to_end = self.lag = inert
            return
        self.frames = prom.Counter("platestream_worker_frames", "Frames consumed and committed.")
        self.results = prom.Counter("platestream_worker_plates", "Plates found.")
        self.dead_letters = prom.Counter("platestream_worker_dead_letters", "Frames dead-lettered.", ["reason"])
        self.aborted = prom.Counter("platestream_worker_aborted_batches", "Batches aborted and consumed again.")
        self.s3_unavailable = prom.Counter(
            "platestream_worker_s3_unavailable", "Batches held back because S3 did not answer, read again later."
        )
        self.batch_size = prom.Histogram(
            "platestream_worker_batch_size", "Frames per batch.", buckets=(1, 2, 4, 8, 16, 32, 64, 128)
        )
        self.engine_seconds = prom.Histogram("platestream_worker_engine_seconds", "Engine time per batch.")
        self.fetch_seconds = prom.Histogram("platestream_worker_fetch_decode_seconds", "Fetch and decode per batch.")
        self.end_to_end = prom.Histogram(
            "platestream_worker_end_to_end_seconds",
            "From capture to committed result.",
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
        )
        self.lag = prom.Gauge("platestream_worker_consumer_lag", "Frames not yet consumed.", ["partition"])

    def observe(self, report: BatchReport, frames: int, batch_seconds: float) -> None:
        self.frames.inc(frames)
        self.results.inc(report.plates)
        for reason, count in report.dead_letters.items():
            self.dead_letters.labels(reason=reason).inc(count)
        self.batch_size.observe(frames)
        self.engine_seconds.observe(report.engine_s)
        self.fetch_seconds.observe(report.fetch_decode_s)
        for lag in report.capture_lag_s:
            self.end_to_end.observe(lag)


@cache
def worker_metrics() -> WorkerMetrics:
    """The process's metrics: Prometheus allows each name once per registry."""
    return WorkerMetrics()
