"""Running workers and feeding them frames, for the integration tests."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from platestream.kafka import codec, make_producer
from platestream.service import in_thread
from platestream.settings import Settings, WorkerSettings
from platestream.workers.engine import Engine
from platestream.workers.engine.images import encode_jpeg
from platestream.workers.service import Worker
from platestream.workers.synthetic import street_scene


def plate_jpeg(text: str, seed: int = 1) -> bytes:
    return encode_jpeg(street_scene(text, seed=seed, plate_width=280), quality=85)


def frame_record(camera: str, number: int, *, image: bytes | None = None, ref: dict[str, Any] | None = None,
                 request_id: str | None = None, country: str = "eu") -> dict[str, Any]:  # fmt: skip
    return {
        "camera_id": camera,
        "frame_number": number,
        "capture_time_ms": 1_700_000_000_000 + number * 100,
        "source_kind": "s3" if ref else "camera",
        "image": image,
        "image_ref": ref,
        "content_type": "image/jpeg",
        "source_uri": None,
        "options": {"country": country, "state": None, "regions": [], "region_strict": False, "topn": 5,
                    "request_id": request_id},
    }  # fmt: skip


def send_frames(settings: Settings, frames: list[dict[str, Any]], raw: Sequence[tuple[bytes, bytes]] = ()) -> None:
    producer = make_producer(settings)
    encode = codec(settings, "frame").encode
    for frame in frames:
        producer.send(settings.topic_name("frames"), encode(frame), key=frame["camera_id"].encode())
    for key, value in raw:
        producer.send(settings.topic_name("frames"), value, key=key)
    producer.flush()
    producer.close()


def worker_settings(settings: Settings, **overrides: Any) -> WorkerSettings:
    values = settings.model_dump() | {
        "group_id": f"{settings.topic_prefix}workers",
        "transactional_id": f"{settings.topic_prefix}worker-0",
        "health_port": 0,
        "batch_size": 4,
        "batch_wait_ms": 100,
        "session_timeout_ms": 6000,
        "heartbeat_interval_s": 3600.0,
    }
    return WorkerSettings(**(values | overrides))


@contextmanager
def running_worker(settings: WorkerSettings, engine: Engine) -> Iterator[Worker]:
    worker = Worker(settings, engine=SharedEngine(engine))
    with in_thread(worker, name="worker") as thread:
        yield worker
    assert not thread.is_alive(), "the worker did not stop"


class SharedEngine(Engine):
    """Shares the session's engine with a worker without letting it close it; `delay_s` per batch
    slows a stream of frames enough for a fault to land in its middle."""

    def __init__(self, engine: Engine, delay_s: float = 0.0) -> None:
        self._engine = engine
        self._delay_s = delay_s

    def recognize(self, images: Any, options: Any = None) -> Any:
        time.sleep(self._delay_s)
        return self._engine.recognize(images, options) if options is not None else self._engine.recognize(images)
