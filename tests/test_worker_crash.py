"""Exactly once across a crash: a worker SIGKILLed mid-batch loses no frame and duplicates none."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from platestream.kafka import read_topic
from platestream.settings import Settings
from tests.worker_tools import frame_record, plate_jpeg, send_frames

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

FRAMES_PER_CAMERA = 30


def start_worker(settings: Settings, name: str, log_dir: Path) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "PLATESTREAM_KAFKA_BOOTSTRAP": settings.kafka_bootstrap or "",
        "PLATESTREAM_TOPIC_PREFIX": settings.topic_prefix,
        "PLATESTREAM_GROUP_ID": settings.topic_prefix + "workers",
        "PLATESTREAM_TRANSACTIONAL_ID": settings.topic_prefix + name,
        "PLATESTREAM_TRANSACTION_TIMEOUT_MS": "10000",
        "PLATESTREAM_SESSION_TIMEOUT_MS": "6000",
        "PLATESTREAM_BATCH_SIZE": "4",
        "PLATESTREAM_HEALTH_PORT": "0",
        "PLATESTREAM_LOG_FORMAT": "json",
        "PLATESTREAM_LOG_LEVEL": "DEBUG",
    }
    log = open(log_dir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([sys.executable, "-m", "platestream", "worker"], env=env, stdout=log, stderr=log)


def test_a_worker_killed_mid_batch_loses_and_duplicates_nothing(kafka_settings: Settings, tmp_path: Path) -> None:
    texts = ["AB12CDE", "XY98ZZT", "KL35PQR"]
    images = {text: plate_jpeg(text) for text in texts}
    frames = [
        frame_record(camera, n, image=images[texts[n % 3]])
        for n in range(FRAMES_PER_CAMERA)
        for camera in ("101", "102")
    ]
    send_frames(kafka_settings, frames)

    first = start_worker(kafka_settings, "worker-a", tmp_path)
    second = start_worker(kafka_settings, "worker-b", tmp_path)
    try:
        before = read_topic(kafka_settings, "alpr_results", "alpr_results", count=8, timeout_s=120)
        assert len(before) >= 8, (tmp_path / "worker-a.log").read_text()[-3000:]
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        assert len(before) < len(frames), "the workers finished before the crash: nothing was tested"

        results = read_topic(kafka_settings, "alpr_results", "alpr_results", count=len(frames), timeout_s=180)
        time.sleep(3)  # anything duplicated would arrive now
        results = read_topic(kafka_settings, "alpr_results", "alpr_results", timeout_s=10)
    finally:
        for process in (first, second):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        exit_code = second.wait(timeout=60)
        first.wait(timeout=10)

    seen = Counter((r["camera_id"], r["frame_number"]) for _, r in results)
    duplicated = {frame: n for frame, n in seen.items() if n > 1}
    missing = {(int(f["camera_id"]), f["frame_number"]) for f in frames} - set(seen)
    assert not duplicated, f"duplicated results: {duplicated}"
    assert not missing, f"lost frames: {sorted(missing)}"
    assert len(results) == len(frames)
    for _, record in results:
        assert record["results"][0]["plate"] == texts[record["frame_number"] % 3]
    assert exit_code == 0, "SIGTERM must end the worker cleanly"
