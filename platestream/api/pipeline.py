"""The API through the pipeline: each request becomes a frame with a request id on `frames`, any
worker recognises it, and its reply comes back on `alpr_replies`; the API then scales with the
workers. A request whose reply does not come in time is answered 504 and never sent again, so it is
recognised once (its result still reaches `alpr_results`, and the aggregator when it names a camera)."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import Future
from typing import Any

from kafka import TopicPartition

from platestream.kafka import codec, make_consumer, make_producer
from platestream.log import get_logger
from platestream.settings import ApiSettings
from platestream.workers.engine.base import ImageResult, Options
from platestream.workers.engine.openalpr import image_result

log = get_logger(__name__)


class PipelineClient:
    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings
        self._encode_frame = codec(settings, "frame").encode
        self._decode_reply = codec(settings, "alpr_results").decode
        self._frames = settings.topic_name("frames")
        self._pending: dict[str, Future[ImageResult]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._producer = make_producer(settings)
        self._replies = make_consumer(settings, group_id=None)
        topic = settings.topic_name("alpr_replies")
        partitions = [TopicPartition(topic, p) for p in sorted(self._replies.partitions_for_topic(topic) or [])]
        if not partitions:
            from platestream.errors import ConfigError

            raise ConfigError(f"topic {topic!r} does not exist: run `platestream topics create`")
        self._replies.assign(partitions)
        self._replies.seek_to_end()
        for tp in partitions:  # positions fixed now: no reply to a request sent from here on is missed
            self._replies.position(tp)
        self._frame_number = 0
        self._thread = threading.Thread(target=self._listen, name="api-replies", daemon=True)
        self._thread.start()

    def submit(self, encoded: bytes, options: Options, camera_id: str | None) -> tuple[str, Future[ImageResult]]:
        request_id = uuid.uuid4().hex
        future: Future[ImageResult] = Future()
        with self._lock:
            self._pending[request_id] = future
            self._frame_number += 1
            number = self._frame_number
        frame: dict[str, Any] = {
            "camera_id": camera_id or "api",
            "frame_number": number,
            "capture_time_ms": int(time.time() * 1000),
            "source_kind": "http",
            "image": encoded,
            "image_ref": None,
            "content_type": "image/jpeg",
            "source_uri": None,
            "options": {"country": options.country, "state": options.state, "regions": list(options.regions),
                        "region_strict": options.region_strict, "topn": options.topn, "request_id": request_id},
        }  # fmt: skip
        sent = self._producer.send(self._frames, self._encode_frame(frame), key=(camera_id or request_id).encode())
        sent.add_errback(lambda error: self._fail(request_id, error))
        return request_id, future

    def forget(self, request_id: str) -> None:
        with self._lock:
            self._pending.pop(request_id, None)

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=10)
        self._producer.close(timeout=5)
        self._replies.close()

    def _fail(self, request_id: str, error: BaseException) -> None:
        with self._lock:
            future = self._pending.pop(request_id, None)
        if future is not None and not future.done():
            future.set_exception(error)

    def _listen(self) -> None:
        while not self._stopping.is_set():
            for records in self._replies.poll(timeout_ms=200).values():
                for record in records:
                    request_id = record.key.decode() if record.key else None
                    with self._lock:
                        future = self._pending.pop(request_id, None) if request_id else None
                    if future is None or future.done():
                        continue  # another server's request, or one that timed out
                    try:
                        future.set_result(image_result(self._decode_reply(record.value)))
                    except Exception as error:  # a reply we cannot read fails its request, not the listener
                        log.error("api_reply_unreadable", error=str(error))
                        future.set_exception(error)


class CameraResults:
    """Local mode: the result of a request that names a camera, produced to `alpr_results` in the
    agent form (keyed by camera), as a worker would, so that the aggregator groups it."""

    def __init__(self, settings: ApiSettings) -> None:
        from platestream import __version__
        from platestream.heartbeat import install_id

        self._producer = make_producer(settings)
        self._encode = codec(settings, "alpr_results").encode
        self._topic = settings.topic_name("alpr_results")
        self._agent = {"agent_uid": install_id(), "agent_version": __version__, "agent_type": "platestream-api"}
        self._numbers: dict[str, int] = {}
        self._lock = threading.Lock()

    def publish(self, result: ImageResult, camera_id: str, epoch_ms: int) -> None:
        from platestream.workers.results import alpr_results

        with self._lock:
            number = self._numbers[camera_id] = self._numbers.get(camera_id, -1) + 1
        record = alpr_results(result, epoch_ms=epoch_ms, camera_id=camera_id, frame_number=number, **self._agent)
        sent = self._producer.send(self._topic, self._encode(record), key=camera_id.encode())
        sent.add_errback(lambda error: log.error("api_camera_result_lost", camera_id=camera_id, error=str(error)))

    def close(self) -> None:
        self._producer.close(timeout=10)  # what is still buffered goes out first
