"""`platestream bench worker`: frames/s of 1 and 2 worker processes draining a backlog on Kafka,
and the share of their time spent outside the engine. Figures for BENCHMARKS.md, not a test."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psutil

from platestream.kafka import create_topics, make_consumer
from platestream.producers import produce_frames
from platestream.settings import Settings
from platestream.workers.engine.images import encode_jpeg
from platestream.workers.synthetic import street_scene

PLATES = ["AB12CDE", "XY98ZZT", "KL35PQR", "RK346AL", "GWT2180", "BRA2E19", "7XYZ123", "FR45ABC"]


@dataclass(frozen=True)
class WorkerRun:
    processes: int
    frames: int
    seconds: float
    frames_per_second: float
    busy_s: float
    engine_s: float
    fetch_decode_s: float
    peak_rss_mb: float = 0.0  # the largest resident memory of any one worker while it drained the backlog

    @property
    def overhead(self) -> float:
        """Wall time each worker spent outside the engine, per unit of its engine time: Kafka,
        Avro, transactions and waiting; decoding runs beside the engine, off this path."""
        engine_per_process = self.engine_s / self.processes
        return (self.seconds - engine_per_process) / engine_per_process if engine_per_process else 0.0


def _backlog(settings: Settings, frames: int) -> None:
    images = [encode_jpeg(street_scene(text, seed=i + 1, plate_width=240), quality=85) for i, text in enumerate(PLATES)]
    records = (
        {
            "camera_id": f"cam-{n % 8}",
            "frame_number": n // 8,
            "capture_time_ms": int(time.time() * 1000),
            "source_kind": "camera",
            "image": images[n % len(images)],
            "image_ref": None,
            "content_type": "image/jpeg",
            "source_uri": None,
            "options": None,
        }
        for n in range(frames)
    )
    produce_frames(settings, records)


def run(settings: Settings, frames: int, processes: int, log_dir: Path) -> WorkerRun:
    settings = settings.model_copy(update={"topic_prefix": f"bench-{uuid.uuid4().hex[:6]}."})
    create_topics(settings, partitions=4)
    _backlog(settings, frames)
    env = os.environ | {
        "PLATESTREAM_KAFKA_BOOTSTRAP": settings.kafka_bootstrap or "",
        "PLATESTREAM_TOPIC_PREFIX": settings.topic_prefix,
        "PLATESTREAM_GROUP_ID": settings.topic_prefix + "workers",
        "PLATESTREAM_HEALTH_PORT": "0",
        "PLATESTREAM_LOG_FORMAT": "json",
        "PLATESTREAM_DECODE_THREADS": "1",
    }
    logs = [log_dir / f"{settings.topic_prefix}{i}.log" for i in range(processes)]
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "platestream", "worker"],
            env=env | {"PLATESTREAM_TRANSACTIONAL_ID": f"{settings.topic_prefix}worker-{i}"},
            stdout=open(logs[i], "wb"),  # noqa: SIM115 - closed with the process
            stderr=subprocess.STDOUT,
        )
        for i in range(processes)
    ]
    consumer = make_consumer(settings, "alpr_results", group_id=None)
    watched = [psutil.Process(worker.pid) for worker in workers]
    peak_rss = 0
    seen = 0
    first_at = last_at = None
    first_count = 0
    deadline = time.monotonic() + 1800
    while seen < frames and time.monotonic() < deadline:
        polled = consumer.poll(timeout_ms=500)
        peak_rss = max([peak_rss, *(_rss(process) for process in watched)])
        got = sum(len(batch) for batch in polled.values())
        if got:
            now = time.monotonic()
            if first_at is None:
                first_at, first_count = now, got
            last_at = now
            seen += got
    consumer.close()
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        worker.wait(timeout=120)
    totals = {"busy_s": 0.0, "engine_s": 0.0, "fetch_decode_s": 0.0}
    for log in logs:
        for line in log.read_text().splitlines():
            if '"worker_stopped"' in line:
                event = json.loads(line)
                for key in totals:
                    totals[key] += float(event.get(key, 0.0))
    elapsed = (last_at or 0.0) - (first_at or 0.0)
    rate = (seen - first_count) / elapsed if elapsed > 0 else 0.0
    return WorkerRun(processes, seen, elapsed, rate, **totals, peak_rss_mb=round(peak_rss / 2**20, 1))


def _rss(process: psutil.Process) -> int:
    try:
        return int(process.memory_info().rss)
    except psutil.Error:
        return 0  # it ended


def bench(settings: Settings, frames: int, process_counts: list[int]) -> list[WorkerRun]:
    with tempfile.TemporaryDirectory() as folder:
        return [run(settings, frames, count, Path(folder)) for count in process_counts]
