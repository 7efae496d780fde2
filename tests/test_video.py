"""Video producers: sampling, frame numbers and times, re-opening a dropped stream, bad sources."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from platestream.cli import main
from platestream.kafka import read_topic
from platestream.producers.video import MotionGate, Sampler, run_video
from platestream.settings import Settings, VideoSettings


def write_video(path: Path, frames: int, fps: float = 25.0, moving: bool = True) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (320, 240))
    assert writer.isOpened()
    for i in range(frames):
        image = np.full((240, 320, 3), 40, np.uint8)
        x = (i * 7) % 280 if moving else 10
        cv2.rectangle(image, (x, 100), (x + 40, 140), (255, 255, 255), -1)
        writer.write(image)
    writer.release()
    return path


def test_sampler_keeps_the_requested_rate() -> None:
    sampler = Sampler(5.0)
    kept = [t for t in range(0, 4000, 40) if sampler.keep(t)]  # 25 fps for 4 s
    assert len(kept) == 20
    assert kept[:3] == [0, 200, 400]


def test_motion_gate_skips_still_frames() -> None:
    gate = MotionGate(2.0)
    still = np.full((240, 320, 3), 40, np.uint8)
    moved = still.copy()
    cv2.rectangle(moved, (100, 100), (200, 200), (255, 255, 255), -1)
    assert [gate.passes(still), gate.passes(still), gate.passes(moved)] == [True, False, True]


@pytest.mark.kafka
def test_a_video_file_yields_frames_at_the_sampled_rate(kafka_settings: Settings, tmp_path: Path) -> None:
    video = write_video(tmp_path / "gate.avi", frames=100)  # 4 s at 25 fps
    settings = VideoSettings(**kafka_settings.model_dump(), camera_id="gate-1", sample_fps=5.0)
    delivered, (capture,) = run_video(settings, str(video))
    assert delivered == 20
    assert capture.stats.read == 100
    frames = [frame for _, frame in read_topic(kafka_settings, "frames", "frame", count=20)]
    frames.sort(key=lambda f: f["frame_number"])
    numbers = [f["frame_number"] for f in frames]
    times = [f["capture_time_ms"] for f in frames]
    assert numbers == list(range(0, 100, 5))
    assert [b - a for a, b in pairwise(times)] == [200] * 19
    assert all(f["camera_id"] == "gate-1" and f["source_kind"] == "file" for f in frames)
    decoded = cv2.imdecode(np.frombuffer(frames[0]["image"], np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None
    assert decoded.shape == (240, 320, 3)


@pytest.mark.kafka
def test_a_stream_that_ends_is_reopened_and_numbering_goes_on(kafka_settings: Settings, tmp_path: Path) -> None:
    video = write_video(tmp_path / "cam.avi", frames=10)
    settings = VideoSettings(**kafka_settings.model_dump(), camera_id="cam-7", sample_fps=25.0, live=True,
                             max_reconnects=2, reconnect_max_s=0.05)  # fmt: skip
    delivered, (capture,) = run_video(settings, str(video))
    assert capture.stats.reconnects == 2
    assert delivered == 30
    frames = sorted((f for _, f in read_topic(kafka_settings, "frames", "frame", count=30)),
                    key=lambda f: f["frame_number"])  # fmt: skip
    assert [f["frame_number"] for f in frames] == list(range(30))
    times = [f["capture_time_ms"] for f in frames]
    assert times == sorted(times)
    assert len(set(times)) == 30


def test_an_unreadable_source_is_a_clear_error_and_a_non_zero_exit(tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    result = CliRunner().invoke(
        main, ["produce", "video", str(broken), "--camera-id", "x", "--kafka-bootstrap", "127.0.0.1:9"]
    )
    assert result.exit_code != 0
    assert "cannot open" in result.output
    assert str(broken) in result.output
