"""S3 backfills: references, filters, camera and time from keys, and exactly-once resumption."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner

from platestream.cli import main
from platestream.kafka import read_topic
from platestream.producers.s3 import Backfill
from platestream.settings import BackfillSettings, Settings

pytestmark = pytest.mark.kafka


@pytest.fixture
def bucket_with(s3_endpoint: str, kafka_settings: Settings) -> Callable[[dict[str, bytes]], str]:
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")

    def make(objects: dict[str, bytes]) -> str:
        name = kafka_settings.topic_prefix.strip(".").lower() + "-backfill"
        client.create_bucket(Bucket=name)
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda item: client.put_object(Bucket=name, Key=item[0], Body=item[1]), objects.items()))
        return name

    return make


def backfill_settings(settings: Settings, s3_endpoint: str, **overrides: Any) -> BackfillSettings:
    return BackfillSettings(**(settings.model_dump() | {"s3_endpoint_url": s3_endpoint} | overrides))


def test_a_backfill_produces_references_with_camera_and_time_from_the_key(
    kafka_settings: Settings, s3_endpoint: str, bucket_with: Callable[[dict[str, bytes]], str]
) -> None:
    bucket = bucket_with({
        "2024/gate-1/1700000000123.jpg": b"a", "2024/gate-2/1700000005000.JPG": b"b",
        "2024/gate-1/notes.txt": b"c", "other/gate-9/1700000000000.jpg": b"d",
    })  # fmt: skip
    settings = backfill_settings(kafka_settings, s3_endpoint, key_pattern=r"(?P<camera>gate-\d+)/(?P<time>\d{13})\.")
    assert Backfill(f"s3://{bucket}/2024/", settings).run() == 2
    frames = [frame for _, frame in read_topic(kafka_settings, "frames", "frame", count=2)]
    by_key = {frame["image_ref"]["key"]: frame for frame in frames}
    assert set(by_key) == {"2024/gate-1/1700000000123.jpg", "2024/gate-2/1700000005000.JPG"}
    first = by_key["2024/gate-1/1700000000123.jpg"]
    assert (first["camera_id"], first["capture_time_ms"], first["source_kind"]) == ("gate-1", 1700000000123, "s3")
    assert first["image"] is None
    assert first["image_ref"]["etag"]
    # Run again: the checkpoint says it is done.
    assert Backfill(f"s3://{bucket}/2024/", settings).run() == 0


def test_dry_run_and_a_missing_bucket(kafka_settings: Settings, s3_endpoint: str,
                                      bucket_with: Callable[[dict[str, bytes]], str]) -> None:  # fmt: skip
    bucket = bucket_with({f"cam/{i}.jpg": b"x" for i in range(5)})
    env = {
        "PLATESTREAM_KAFKA_BOOTSTRAP": kafka_settings.kafka_bootstrap or "",
        "PLATESTREAM_TOPIC_PREFIX": kafka_settings.topic_prefix,
        "PLATESTREAM_S3_ENDPOINT_URL": s3_endpoint,
    }
    runner = CliRunner()
    dry = runner.invoke(main, ["produce", "s3", f"s3://{bucket}/cam/", "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    assert "5 objects would be produced" in dry.output
    assert read_topic(kafka_settings, "frames", "frame", timeout_s=2) == []
    missing = runner.invoke(main, ["produce", "s3", "s3://no-such-bucket-here/x/"], env=env)
    assert missing.exit_code == 2
    assert "cannot list s3://no-such-bucket-here/x/" in missing.output
    assert "NoSuchBucket" in missing.output
    bad = runner.invoke(main, ["produce", "s3", "/local/path"], env=env)
    assert bad.exit_code == 2
    assert "not an s3://bucket/prefix URI" in bad.output


@pytest.mark.slow
def test_a_backfill_killed_halfway_and_restarted_produces_each_object_once(
    kafka_settings: Settings, s3_endpoint: str, bucket_with: Callable[[dict[str, bytes]], str], tmp_path: Path
) -> None:
    keys = [f"cameras/cam-{i % 4}/{i:05d}.jpg" for i in range(1000)]
    bucket = bucket_with(dict.fromkeys(keys, b"jpeg"))
    env = os.environ | {
        "PLATESTREAM_KAFKA_BOOTSTRAP": kafka_settings.kafka_bootstrap or "",
        "PLATESTREAM_TOPIC_PREFIX": kafka_settings.topic_prefix,
        "PLATESTREAM_S3_ENDPOINT_URL": s3_endpoint,
        "PLATESTREAM_BATCH_SIZE": "50",
        "PLATESTREAM_LOG_FORMAT": "json",
    }
    command = [sys.executable, "-m", "platestream", "produce", "s3", f"s3://{bucket}/cameras/"]
    log = open(tmp_path / "backfill.log", "ab")  # noqa: SIM115
    slow = subprocess.Popen(command, env=env | {"PLATESTREAM_RATE": "250"}, stdout=log, stderr=log)
    deadline = time.monotonic() + 60
    produced: list[Any] = []
    while time.monotonic() < deadline and len(produced) < 400:
        produced = read_topic(kafka_settings, "frames", "frame", timeout_s=2)
    slow.send_signal(signal.SIGKILL)
    slow.wait(timeout=10)
    assert 0 < len(produced) < len(keys), (tmp_path / "backfill.log").read_text()[-2000:]

    done = subprocess.run(command, env=env, stdout=log, stderr=log, timeout=120, check=False)
    assert done.returncode == 0, (tmp_path / "backfill.log").read_text()[-2000:]
    frames = read_topic(kafka_settings, "frames", "frame", count=len(keys), timeout_s=60)
    time.sleep(1)
    frames = read_topic(kafka_settings, "frames", "frame", timeout_s=5)
    seen = Counter(frame["image_ref"]["key"] for _, frame in frames)
    assert sorted(seen) == sorted(keys), "every object is produced"
    assert max(seen.values()) == 1, f"duplicated: {[k for k, n in seen.items() if n > 1][:5]}"


def test_keys_with_unusual_characters_are_backfilled_and_read(
    kafka_settings: Settings, s3_endpoint: str, bucket_with: Callable[[dict[str, bytes]], str], engine: Any
) -> None:
    """Spaces, plus signs, percent signs, hashes, question marks, non-ASCII letters and long names
    go from the listing to the frame's reference to the worker's fetch unchanged."""
    from tests.worker_tools import plate_jpeg, running_worker, worker_settings

    keys = ["in/cam 1/a+b.jpg", "in/cam%201/100%.jpg", "in/#hash?query=1.jpg", "in/über/straße é.jpg",
            "in/" + "long-" * 150 + ".jpg", "in/./dots/../x.jpg"]  # fmt: skip
    bucket = bucket_with({key: plate_jpeg("AB12CDE") for key in keys})
    settings = backfill_settings(kafka_settings, s3_endpoint)
    assert Backfill(f"s3://{bucket}/in/", settings).run() == len(keys)
    with running_worker(worker_settings(kafka_settings, s3_endpoint_url=s3_endpoint), engine):
        results = read_topic(kafka_settings, "alpr_results", "alpr_results", count=len(keys), timeout_s=90)
    letters = read_topic(kafka_settings, "dead_letter", "dead_letter", timeout_s=2)
    assert letters == [], [letter["error_message"] for _, letter in letters]
    assert sorted(len(record["results"]) for _, record in results) == [1] * len(keys)
    frames = [frame for _, frame in read_topic(kafka_settings, "frames", "frame", count=len(keys))]
    assert sorted(frame["image_ref"]["key"] for frame in frames) == sorted(keys)


def test_a_slow_backfill_commits_by_time_as_well_as_by_count(
    kafka_settings: Settings, s3_endpoint: str, bucket_with: Callable[[dict[str, bytes]], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Rate-limited, a batch of 500 objects would stay uncommitted for minutes (and a crash would
    redo them all); it commits at least every batch_max_s, and time lost to a slow commit (a busy
    broker: the first here) is not made up in a burst that one batch would swallow."""
    from platestream.kafka import transact
    from platestream.producers import checkpoints as module

    commits: list[int] = []

    def slow_first_commit(*args: Any, **kwargs: Any) -> None:
        if not commits:
            time.sleep(0.5)
        commits.append(1)
        transact(*args, **kwargs)

    monkeypatch.setattr(module, "transact", slow_first_commit)
    bucket = bucket_with({f"slow/{n:03d}.jpg": b"x" for n in range(24)})
    settings = backfill_settings(kafka_settings, s3_endpoint, rate=40.0, batch_size=500, batch_max_s=0.2)
    assert Backfill(f"s3://{bucket}/slow/", settings).run() == 24
    checkpoints = [c for _, c in read_topic(kafka_settings, "producer_checkpoints", "producer_checkpoint", count=3)]
    assert len(checkpoints) >= 3, "several commits, not one at the end"
    assert checkpoints[0]["objects_produced"] < 24
