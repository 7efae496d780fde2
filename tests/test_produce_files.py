"""`platestream produce files`: frames from local images, and with --checkpoint-id each file sent
exactly once across a crash and a restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from platestream.cli import main
from platestream.kafka import read_topic
from platestream.producers.files import file_frames, find_images
from platestream.settings import Settings

START_MS = 1_767_225_600_123


def write_images(folder: Path, count: int, cameras: int = 3) -> list[Path]:
    """`count` small files over `cameras` folders, each modified at its own millisecond."""
    paths = []
    for n in range(count):
        path = folder / f"cam-{n % cameras}" / f"{n:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\xff\xd8 frame %d " % n + bytes(200))
        moment_ns = (START_MS + n * 7) * 1_000_000
        os.utime(path, ns=(moment_ns, moment_ns))
        paths.append(path)
    return paths


def test_frames_carry_the_files_camera_number_and_modification_time_to_the_millisecond(tmp_path: Path) -> None:
    write_images(tmp_path, 9)
    frames = list(file_frames(find_images([tmp_path])))
    in_file_order = sorted(range(9), key=lambda n: (n % 3, n))  # folder by folder
    assert [f["capture_time_ms"] for f in frames] == [START_MS + n * 7 for n in in_file_order]
    assert [(f["camera_id"], f["frame_number"]) for f in frames][:4] == [
        ("cam-0", 0), ("cam-0", 1), ("cam-0", 2), ("cam-1", 0),
    ]  # fmt: skip
    # Skipping (a resumed run) numbers the rest as a whole run would, without reading the skipped.
    assert list(file_frames(find_images([tmp_path]), skip=4)) == frames[4:]


def _env(settings: Settings) -> dict[str, str]:
    return os.environ | {
        "PLATESTREAM_KAFKA_BOOTSTRAP": settings.kafka_bootstrap or "",
        "PLATESTREAM_TOPIC_PREFIX": settings.topic_prefix,
        "PLATESTREAM_LOG_FORMAT": "json",
    }


@pytest.mark.kafka
@pytest.mark.slow
def test_files_sent_under_a_checkpoint_killed_halfway_and_started_again_go_once_each(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    paths = write_images(tmp_path / "images", 300)
    command = [sys.executable, "-m", "platestream", "produce", "files", str(tmp_path / "images"),
               "--checkpoint-id", "gate-backlog"]  # fmt: skip
    env = _env(kafka_settings) | {"PLATESTREAM_BATCH_SIZE": "20"}
    log = open(tmp_path / "produce.log", "ab")  # noqa: SIM115
    slow = subprocess.Popen(command, env=env | {"PLATESTREAM_RATE": "100"}, stdout=log, stderr=log)
    deadline = time.monotonic() + 60
    produced: list[Any] = []
    while time.monotonic() < deadline and len(produced) < 60:
        produced = read_topic(kafka_settings, "frames", "frame", timeout_s=2)
    slow.send_signal(signal.SIGKILL)
    slow.wait(timeout=10)
    assert 0 < len(produced) < len(paths), (tmp_path / "produce.log").read_text()[-2000:]

    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "in all under checkpoint 'gate-backlog'" in done.stdout
    read_topic(kafka_settings, "frames", "frame", count=len(paths), timeout_s=60)
    time.sleep(1)
    frames = [frame for _, frame in read_topic(kafka_settings, "frames", "frame", timeout_s=5)]
    seen = Counter(frame["source_uri"] for frame in frames)
    assert sorted(seen) == sorted(str(path) for path in paths), "every file is sent"
    assert max(seen.values()) == 1, f"sent twice: {[k for k, n in seen.items() if n > 1][:5]}"
    numbers = sorted((frame["camera_id"], frame["frame_number"]) for frame in frames)
    assert numbers == sorted((f"cam-{c}", n) for c in range(3) for n in range(100)), "numbered as one run"

    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "0 of 300 images sent" in again.stdout
    assert "300 in all" in again.stdout


@pytest.mark.kafka
def test_a_checkpoint_whose_files_changed_is_refused_saying_so(kafka_settings: Settings, tmp_path: Path) -> None:
    from platestream.producers.files import send_files
    from platestream.settings import FilesSettings

    paths = write_images(tmp_path / "images", 10)
    settings = FilesSettings(**kafka_settings.model_dump(), checkpoint_id="changing", batch_size=3)
    calls = iter(range(100))
    sent, total, finished = send_files(settings, paths, None, source="images", stopping=lambda: next(calls) >= 5)
    assert (sent, total, finished) == (5, 5, False)
    paths[2].unlink()  # one of those already sent
    env = _env(kafka_settings)
    result = CliRunner().invoke(main, ["produce", "files", str(tmp_path / "images"), "--checkpoint-id", "changing"],
                                env=env)  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "checkpoint 'changing' has sent 5 files" in result.output
    assert "send them under a new --checkpoint-id" in result.output
    assert len(read_topic(kafka_settings, "frames", "frame", timeout_s=3)) == 5, "nothing more was sent"
