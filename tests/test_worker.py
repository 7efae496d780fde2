"""The worker on the real broker: results per frame, replies, and a dead letter for each bad input."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from platestream.kafka import read_topic
from platestream.settings import Settings
from platestream.workers.engine import Engine
from platestream.workers.engine.images import encode_jpeg
from platestream.workers.synthetic import street_scene
from tests.worker_tools import frame_record, plate_jpeg, running_worker, send_frames, worker_settings

pytestmark = pytest.mark.kafka


def test_each_frame_yields_one_result_with_its_plate(kafka_settings: Settings, engine: Engine) -> None:
    frames = [frame_record("12", n, image=plate_jpeg(text)) for n, text in enumerate(["AB12CDE", "XY98ZZT", "KL35PQR"])]
    frames.append(frame_record("gate-2", 7, image=plate_jpeg("", seed=3)))  # a car without a plate
    send_frames(kafka_settings, frames)
    with running_worker(worker_settings(kafka_settings), engine):
        results = read_topic(kafka_settings, "alpr_results", "alpr_results", count=4, timeout_s=60)
    by_frame = {(r["camera_id"], r["frame_number"]): r for _, r in results}
    assert len(results) == 4
    assert [by_frame[(12, n)]["results"][0]["plate"] for n in range(3)] == ["AB12CDE", "XY98ZZT", "KL35PQR"]
    assert by_frame[("gate-2", 7)]["results"] == []
    first = by_frame[(12, 0)]
    assert first["uuid"] == f"{first['agent_uid']}-12-{first['epoch_time']}"
    assert {key for key, _ in results} == {b"12", b"gate-2"}


def test_frames_without_plates_are_dropped_when_asked(kafka_settings: Settings, engine: Engine) -> None:
    send_frames(kafka_settings, [frame_record("1", 1, image=plate_jpeg("", seed=3)),
                                 frame_record("1", 2, image=plate_jpeg("AB12CDE"))])  # fmt: skip
    with running_worker(worker_settings(kafka_settings, emit_empty=False), engine):
        results = read_topic(kafka_settings, "alpr_results", "alpr_results", count=1, timeout_s=60)
        more = read_topic(kafka_settings, "alpr_results", "alpr_results", timeout_s=3)
    assert [r["frame_number"] for _, r in more] == [2]
    assert results[0][1]["results"][0]["plate"] == "AB12CDE"


def test_a_request_id_gets_its_result_on_the_reply_topic(kafka_settings: Settings, engine: Engine) -> None:
    send_frames(kafka_settings, [frame_record("9", 1, image=plate_jpeg("AB12CDE"), request_id="req-42")])
    with running_worker(worker_settings(kafka_settings), engine):
        replies = read_topic(kafka_settings, "alpr_replies", "alpr_results", count=1, timeout_s=60)
    key, reply = replies[0]
    assert key == b"req-42"
    assert reply["request_id"] == "req-42"
    assert reply["results"][0]["plate"] == "AB12CDE"


@pytest.fixture
def bucket(s3_endpoint: str, kafka_settings: Settings) -> str:
    name = kafka_settings.topic_prefix.strip(".").lower() + "-frames"
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=name)
    client.put_object(Bucket=name, Key="cam/1.jpg", Body=plate_jpeg("AB12CDE"))
    return name


def test_frames_that_reference_s3_objects_are_fetched(
    kafka_settings: Settings, engine: Engine, s3_endpoint: str, bucket: str
) -> None:
    send_frames(kafka_settings, [frame_record("3", 1, ref={"bucket": bucket, "key": "cam/1.jpg"})])
    with running_worker(worker_settings(kafka_settings, s3_endpoint_url=s3_endpoint), engine):
        results = read_topic(kafka_settings, "alpr_results", "alpr_results", count=1, timeout_s=60)
    assert results[0][1]["results"][0]["plate"] == "AB12CDE"


def dead_letters_for(kafka_settings: Settings, engine: Engine, count: int, **overrides: Any) -> list[dict[str, Any]]:
    with running_worker(worker_settings(kafka_settings, **overrides), engine):
        letters = read_topic(kafka_settings, "dead_letter", "dead_letter", count=count, timeout_s=60)
        # The worker went on: a good frame sent after the bad ones is still recognised.
        send_frames(kafka_settings, [frame_record("ok", 99, image=plate_jpeg("AB12CDE"))])
        results = read_topic(kafka_settings, "alpr_results", "alpr_results", count=1, timeout_s=60)
    assert any(r["frame_number"] == 99 for _, r in results)
    return [letter for _, letter in letters]


def test_bad_records_and_images_are_dead_lettered_with_the_original(kafka_settings: Settings, engine: Engine) -> None:
    jpeg = plate_jpeg("AB12CDE")
    send_frames(
        kafka_settings,
        [
            frame_record("c", 1, image=b"\xff\xd8 this is no jpeg"),
            frame_record("c", 2, image=jpeg[: len(jpeg) // 2]),
            frame_record("c", 3, image=encode_jpeg(street_scene("AB12CDE", 1920, 1080))),  # over the limit below
        ],
        raw=[(b"c", b"\x00\x01 not an avro frame")],
    )
    letters = dead_letters_for(kafka_settings, engine, 4, max_image_pixels=1280 * 720)
    reasons = sorted(letter["reason"] for letter in letters)
    assert reasons == ["image_too_large", "schema_invalid", "undecodable_image", "undecodable_image"]
    invalid = next(letter for letter in letters if letter["reason"] == "schema_invalid")
    assert invalid["original_value"] == b"\x00\x01 not an avro frame"
    assert invalid["source_topic"] == kafka_settings.topic_name("frames")
    assert invalid["source_offset"] is not None
    too_large = next(letter for letter in letters if letter["reason"] == "image_too_large")
    assert "1920x1080" in too_large["error_message"]
    assert all(letter["service"].startswith("worker/") for letter in letters)


def test_missing_and_changed_s3_objects_are_dead_lettered(
    kafka_settings: Settings, engine: Engine, s3_endpoint: str, bucket: str
) -> None:
    send_frames(
        kafka_settings,
        [
            frame_record("s", 1, ref={"bucket": bucket, "key": "cam/nope.jpg"}),
            frame_record("s", 2, ref={"bucket": bucket + "-absent", "key": "cam/1.jpg"}),
            frame_record("s", 3, ref={"bucket": bucket, "key": "cam/1.jpg", "etag": '"0000"'}),
        ],
    )
    letters = dead_letters_for(kafka_settings, engine, 3, s3_endpoint_url=s3_endpoint)
    assert sorted(letter["reason"] for letter in letters) == ["s3_object_changed", "s3_object_missing",
                                                               "s3_object_missing"]  # fmt: skip
    assert {letter["original_reference"] for letter in letters} >= {f"s3://{bucket}/cam/nope.jpg"}


class _RefusingS3(http.server.BaseHTTPRequestHandler):
    """An S3 endpoint that refuses every request (403, or 400), as a misconfigured store does."""

    status = 403

    def do_GET(self) -> None:
        code = "AccessDenied" if self.status == 403 else "InvalidRequest"
        body = f"<Error><Code>{code}</Code><Message>no</Message></Error>".encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture(params=[403, 400], ids=["forbidden", "bad request"])
def refusing_s3(request: pytest.FixtureRequest) -> Iterator[tuple[str, int]]:
    handler = type("Handler", (_RefusingS3,), {"status": request.param})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", request.param
    server.shutdown()


def test_requests_s3_refuses_for_good_are_dead_lettered(
    kafka_settings: Settings, engine: Engine, refusing_s3: tuple[str, int]
) -> None:
    endpoint, status = refusing_s3
    send_frames(kafka_settings, [frame_record("r", 1, ref={"bucket": "b", "key": "k.jpg"})])
    letters = dead_letters_for(kafka_settings, engine, 1, s3_endpoint_url=endpoint, s3_max_attempts=2)
    assert letters[0]["reason"] == ("s3_access_denied" if status == 403 else "s3_request_failed")
    assert letters[0]["original_reference"] == "s3://b/k.jpg"


class _FlakyS3(http.server.BaseHTTPRequestHandler):
    """An S3 endpoint in an outage (503 SlowDown) until `up` is set, then serving one image."""

    up = threading.Event()
    image = b""
    refused = 0

    def do_GET(self) -> None:
        if not self.up.is_set():
            type(self).refused += 1
            body, status, kind = b"<Error><Code>SlowDown</Code></Error>", 503, "application/xml"
        else:
            body, status, kind = self.image, 200, "image/jpeg"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


def test_an_s3_outage_holds_the_frames_back_until_it_ends_and_loses_none(
    kafka_settings: Settings, engine: Engine
) -> None:
    import json
    import urllib.error
    import urllib.request

    from platestream.broker import free_port

    class Handler(_FlakyS3):
        up = threading.Event()
        image = plate_jpeg("AB12CDE")
        refused = 0

    handler = Handler
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = free_port()
    frames = [frame_record("o", n, ref={"bucket": "b", "key": f"{n}.jpg"}) for n in range(3)]
    send_frames(kafka_settings, frames)
    settings = worker_settings(kafka_settings, s3_endpoint_url=f"http://127.0.0.1:{server.server_address[1]}",
                               s3_max_attempts=2, health_port=port, stall_not_ready_s=2.0)  # fmt: skip
    try:
        with running_worker(settings, engine):
            deadline = time.monotonic() + 30
            while True:  # the outage shows on /readyz, with its cause
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5)
                except urllib.error.HTTPError as error:
                    body = json.loads(error.read())
                    if "S3 unavailable" in body.get("reason", ""):
                        break
                except urllib.error.URLError:
                    pass
                assert time.monotonic() < deadline, "readiness never said S3 was unavailable"
                time.sleep(0.5)
            assert read_topic(kafka_settings, "alpr_results", "alpr_results", timeout_s=2) == []
            handler.up.set()
            results = read_topic(kafka_settings, "alpr_results", "alpr_results", count=3, timeout_s=90)
        letters = read_topic(kafka_settings, "dead_letter", "dead_letter", timeout_s=2)
    finally:
        server.shutdown()
    assert sorted(r["frame_number"] for _, r in results) == [0, 1, 2]
    assert letters == [], "no frame was given up during the outage"
    assert handler.refused >= 2


def test_heartbeats_health_and_metrics(kafka_settings: Settings, engine: Engine) -> None:
    import urllib.request

    from platestream.broker import free_port

    port = free_port()
    send_frames(kafka_settings, [frame_record("5", 1, image=plate_jpeg("AB12CDE"))])
    settings = worker_settings(kafka_settings, heartbeat_interval_s=0.5, health_port=port, agent_uid="pod-7")
    with running_worker(settings, engine):
        read_topic(kafka_settings, "alpr_results", "alpr_results", count=1, timeout_s=60)
        beats = read_topic(kafka_settings, "heartbeat", "heartbeat", count=2, timeout_s=30)
        ready = urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5)
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert len(beats) >= 2
    key, beat = beats[0]
    assert key == b"pod-7"
    assert beat["agent_uid"] == "pod-7"
    assert beat["cpu_cores"] >= 1
    assert ready.status == 200
    assert "platestream_worker_frames_total" in metrics


def test_a_failed_commit_is_aborted_and_the_batch_consumed_again(
    kafka_settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kafka.errors import KafkaTimeoutError

    import platestream.transactions
    from platestream.kafka import transact as real_transact

    failures = {"left": 1}

    def flaky_transact(producer: Any, sends: Any, *args: Any, **kwargs: Any) -> None:
        sends = list(sends)
        if failures["left"] and any(send.topic.endswith("alpr_results") for send in sends):
            failures["left"] -= 1  # a transaction with results fails as a broker timeout would
            producer.begin_transaction()
            producer.abort_transaction()
            raise KafkaTimeoutError("the broker did not answer (test)")
        real_transact(producer, sends, *args, **kwargs)

    monkeypatch.setattr(platestream.transactions, "transact", flaky_transact)
    texts = ["AB12CDE", "XY98ZZT", "KL35PQR", "RK346AL", "GWT2180", "FR45ABC"]
    send_frames(kafka_settings, [frame_record("8", n, image=plate_jpeg(t)) for n, t in enumerate(texts)])
    with running_worker(worker_settings(kafka_settings, batch_size=2, heartbeat_interval_s=3600.0), engine) as worker:
        results = read_topic(kafka_settings, "alpr_results", "alpr_results", count=len(texts), timeout_s=60)
        time.sleep(2)
        results = read_topic(kafka_settings, "alpr_results", "alpr_results", timeout_s=5)
    assert failures["left"] == 0, "the failure was injected"
    assert sorted(r["frame_number"] for _, r in results) == list(range(len(texts)))
    assert worker.totals["frames"] == len(texts)
    assert len(worker.writer.recoveries) == 1, "the failed transaction replaced the producer"


def test_two_images_of_one_camera_at_one_millisecond_get_two_uuids(kafka_settings: Settings, engine: Engine) -> None:
    # copied files, or an S3 backfill whose times have one-second resolution: the same capture time
    frames = []
    for number, (name, text) in enumerate([("a.jpg", "AB12CDE"), ("b.jpg", "XY98ZZT")]):
        frame = frame_record("7", number, image=plate_jpeg(text))
        frame.update(source_kind="file", source_uri=f"/photos/7/{name}", capture_time_ms=1_700_000_000_000)
        frames.append(frame)
    send_frames(kafka_settings, frames)
    with running_worker(worker_settings(kafka_settings), engine):
        results = read_topic(kafka_settings, "alpr_results", "alpr_results", count=2, timeout_s=60)
    uuids = [record["uuid"] for _, record in results]
    assert len(set(uuids)) == 2
    assert all(uuid.startswith(f"{results[0][1]['agent_uid']}-7-1700000000000-") for uuid in uuids)


def test_a_live_cameras_frames_keep_rekors_uuid_and_a_backfill_read_again_keeps_its_own() -> None:
    from platestream.workers.results import frame_uuid

    assert frame_uuid("agent", 12, 1000, source_kind="camera", source="rtsp://cam", frame_number=5) == "agent-12-1000"
    first = frame_uuid("agent", 12, 1000, source_kind="s3", source="s3://b/k.jpg?versionId=1", frame_number=5)
    assert first == frame_uuid("agent", 12, 1000, source_kind="s3", source="s3://b/k.jpg?versionId=1", frame_number=5)
    assert first != frame_uuid("agent", 12, 1000, source_kind="s3", source="s3://b/k2.jpg", frame_number=6)


def test_plate_and_vehicle_crops_are_attached_when_the_worker_is_told_to(
    kafka_settings: Settings, engine: Engine
) -> None:
    import base64

    import cv2
    import numpy as np

    def image(field: str) -> np.ndarray:
        decoded = cv2.imdecode(np.frombuffer(base64.b64decode(plate[field]), np.uint8), cv2.IMREAD_COLOR)
        assert decoded is not None, field
        return decoded

    send_frames(kafka_settings, [frame_record("5", 0, image=plate_jpeg("AB12CDE"))])
    settings = worker_settings(kafka_settings, plate_crop_jpeg=True, vehicle_crop_jpeg=True)
    with running_worker(settings, engine):
        ((_, record),) = read_topic(kafka_settings, "alpr_results", "alpr_results", count=1, timeout_s=60)
    (plate,) = record["results"]
    xs = [p["x"] for p in plate["coordinates"]]
    assert 0.8 * (max(xs) - min(xs)) < image("plate_crop_jpeg").shape[1] < 3 * (max(xs) - min(xs))  # not the frame
    vehicle, region = image("vehicle_crop_jpeg"), plate["vehicle_region"]
    assert max(vehicle.shape[:2]) <= 480  # bounded, whatever the frame's size
    assert abs(vehicle.shape[1] / vehicle.shape[0] - region["width"] / region["height"]) < 0.05


def test_a_vehicle_crop_is_bounded_and_clipped_to_the_image() -> None:
    import cv2
    import numpy as np

    from platestream.workers.engine import Box, ImageError, vehicle_crop

    frame = np.full((2160, 3840, 3), 128, np.uint8)
    crop = cv2.imdecode(np.frombuffer(vehicle_crop(frame, Box(3000, 1000, 2000, 1600)), np.uint8), cv2.IMREAD_COLOR)
    assert crop is not None
    assert crop.shape[:2] == (480, 348)  # 840 x 1160 inside the frame, shrunk to 480 px high
    with pytest.raises(ImageError, match="outside the 3840x2160 image"):
        vehicle_crop(frame, Box(4000, 10, 50, 50))


def test_results_carry_no_crops_unless_asked(kafka_settings: Settings, engine: Engine) -> None:
    send_frames(kafka_settings, [frame_record("6", 0, image=plate_jpeg("AB12CDE"))])
    with running_worker(worker_settings(kafka_settings), engine):
        ((_, record),) = read_topic(kafka_settings, "alpr_results", "alpr_results", count=1, timeout_s=60)
    (plate,) = record["results"]
    assert (plate["plate_crop_jpeg"], plate["vehicle_crop_jpeg"]) == (None, None)
