"""`platestream bench producers`: frames/s a producer sustains from a 1080p file, and objects/s a
backfill lists and produces. Figures for BENCHMARKS.md, not a test."""

from __future__ import annotations

import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from platestream.kafka import create_topics
from platestream.producers.s3 import Backfill
from platestream.producers.video import run_video
from platestream.settings import BackfillSettings, Settings, VideoSettings


def _video(path: Path, frames: int, fps: float = 25.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (1920, 1080))
    rng = np.random.default_rng(0)
    background = rng.integers(0, 255, (1080, 1920, 3), dtype=np.uint8)
    background = np.asarray(cv2.GaussianBlur(background, (31, 31), 0), dtype=np.uint8)
    for i in range(frames):
        frame = background.copy()
        x = (i * 23) % 1600
        cv2.rectangle(frame, (x, 500), (x + 300, 700), (30, 30, 200), -1)
        writer.write(frame)
    writer.release()
    return path


def video_rate(settings: Settings, frames: int) -> tuple[int, float]:
    settings = settings.model_copy(update={"topic_prefix": f"bench-{uuid.uuid4().hex[:6]}."})
    create_topics(settings, partitions=4)
    with tempfile.TemporaryDirectory() as folder:
        video = _video(Path(folder) / "1080p.avi", frames)
        video_settings = VideoSettings(**settings.model_dump(), camera_id="bench", sample_fps=1000.0,
                                       buffer_frames=100_000)  # fmt: skip
        started = time.perf_counter()
        delivered, _ = run_video(video_settings, str(video))
        return delivered, delivered / (time.perf_counter() - started)


def backfill_rate(settings: Settings, s3_endpoint: str, objects: int) -> tuple[int, float]:
    import boto3

    settings = settings.model_copy(update={"topic_prefix": f"bench-{uuid.uuid4().hex[:6]}."})
    create_topics(settings, partitions=4)
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    bucket = settings.topic_prefix.strip(".")
    client.create_bucket(Bucket=bucket)
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: client.put_object(Bucket=bucket, Key=f"cam-{i % 8}/{i:07d}.jpg", Body=b"x"),
                      range(objects)))  # fmt: skip
    backfill_settings = BackfillSettings(**settings.model_dump(), s3_endpoint_url=s3_endpoint)
    started = time.perf_counter()
    produced = Backfill(f"s3://{bucket}/", backfill_settings).run()
    return produced, produced / (time.perf_counter() - started)
