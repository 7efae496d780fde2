"""Sending frame records to Kafka: idempotent, acks=all, compressed; failures counted and reported."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from types import FrameType
from typing import Any

from kafka.errors import KafkaError

from platestream.kafka import codec, make_producer
from platestream.log import get_logger
from platestream.settings import Settings

log = get_logger(__name__)


@dataclass
class Delivery:
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    interrupted: bool = False


def produce_frames(settings: Settings, frames: Iterable[dict[str, Any]], *, handle_signals: bool = True) -> Delivery:
    """Send every frame keyed by camera id, flush, and count what the broker acknowledged.
    SIGTERM or SIGINT stop after the frame in hand; what was sent is still flushed."""
    # Encoded images do not compress: spare the CPU on both ends.
    producer = make_producer(settings, compression_type=None)
    encode = codec(settings, "frame").encode
    topic = settings.topic_name("frames")
    delivery = Delivery()
    lock = threading.Lock()
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("producer_stopping", signal=signum)
        stop.set()

    wanted = handle_signals and _main()
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)} if wanted else {}

    def delivered(_: Any) -> None:
        with lock:
            delivery.delivered += 1

    def failed(error: Exception, frame: dict[str, Any]) -> None:
        with lock:
            delivery.failed += 1
        log.error("delivery_failed", camera_id=frame["camera_id"], frame_number=frame["frame_number"],
                  error=str(error))  # fmt: skip

    try:
        for frame in frames:
            if stop.is_set():
                delivery.interrupted = True
                break
            future = producer.send(topic, encode(frame), key=frame["camera_id"].encode())
            future.add_callback(delivered)
            future.add_errback(failed, frame)
            delivery.sent += 1
    finally:
        try:
            producer.flush(timeout=60)
        except KafkaError as error:
            log.error("flush_failed", error=str(error))
        producer.close(timeout=10)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    with lock:
        delivery.failed += delivery.sent - delivery.delivered - delivery.failed
    log.info("frames_produced", sent=delivery.sent, delivered=delivery.delivered, failed=delivery.failed, topic=topic)
    return delivery


def _main() -> bool:
    return threading.current_thread() is threading.main_thread()
