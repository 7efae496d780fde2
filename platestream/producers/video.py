"""`platestream produce video SOURCE`: camera streams (RTSP, HTTP), video files and webcams.

One capture thread per camera reads frames through OpenCV, keeps `sample_fps` of them (and, with
a motion gate, only those that changed), encodes them as JPEG and puts them in a bounded buffer;
the main thread sends them. A slow broker never stalls capture: a full buffer drops its oldest
frame and counts it. A live stream that drops is re-opened with exponential backoff.
"""

from __future__ import annotations

import collections
import signal
import threading
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from platestream.errors import ConfigError, PlatestreamError
from platestream.log import get_logger
from platestream.settings import VideoSettings

log = get_logger(__name__)


class StreamError(PlatestreamError):
    """A video source cannot be opened or read."""


@dataclass(frozen=True)
class Camera:
    camera_id: str
    url: str
    name: str = ""
    sample_fps: float | None = None


def cameras_from(settings: VideoSettings, source: str | None) -> list[Camera]:
    if settings.cameras_file is not None:
        try:
            entries = tomllib.loads(settings.cameras_file.read_text()).get("camera", [])
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise ConfigError(f"cannot read cameras from {settings.cameras_file}: {error}") from None
        cameras = []
        for index, entry in enumerate(entries):
            if "id" not in entry or "url" not in entry:
                raise ConfigError(f"{settings.cameras_file}: camera {index} needs `id` and `url`")
            cameras.append(Camera(str(entry["id"]), str(entry["url"]), str(entry.get("name", "")),
                                  entry.get("sample_fps")))  # fmt: skip
        if not cameras:
            raise ConfigError(f"{settings.cameras_file} lists no [[camera]]")
        return cameras
    if source is None:
        raise ConfigError("name a SOURCE or a cameras file (--cameras-file)")
    camera_id = settings.camera_id or (Path(source).stem if Path(source).exists() else None)
    if not camera_id:
        raise ConfigError(f"--camera-id is needed for {source!r}")
    return [Camera(camera_id, source)]


class Sampler:
    """Keeps frames at `rate` per second of source time (pure)."""

    def __init__(self, rate: float) -> None:
        self.interval_ms = 1000.0 / rate
        self.next_ms: float | None = None

    def keep(self, t_ms: float) -> bool:
        if self.next_ms is None or t_ms >= self.next_ms - 1e-6:
            base = t_ms if self.next_ms is None or t_ms - self.next_ms > self.interval_ms else self.next_ms
            self.next_ms = base + self.interval_ms
            return True
        return False


class MotionGate:
    """Passes a frame when it differs enough from the last frame passed (pure, numpy)."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.last: NDArray[np.float32] | None = None

    def passes(self, frame: NDArray[Any]) -> bool:
        if self.threshold <= 0:
            return True
        small = cv2.resize(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), (64, 36)).astype(np.float32)
        if self.last is not None and float(np.abs(small - self.last).mean()) < self.threshold:
            return False
        self.last = small
        return True


@dataclass
class CameraStats:
    read: int = 0
    sampled: int = 0
    dropped: int = 0
    reconnects: int = 0
    streaming: bool = False
    last_update_ms: int = 0
    fps: float = 0.0
    error: str | None = None
    finished: bool = False
    buffer: collections.deque[dict[str, Any]] = field(default_factory=collections.deque)


class Capture(threading.Thread):
    """Reads one camera into its bounded buffer."""

    def __init__(self, camera: Camera, settings: VideoSettings, stop: threading.Event) -> None:
        super().__init__(name=f"capture-{camera.camera_id}", daemon=True)
        self.camera = camera
        self.settings = settings
        self.stop_event = stop
        self.stats = CameraStats(buffer=collections.deque(maxlen=settings.buffer_frames))
        self.lock = threading.Lock()
        self.is_file = Path(camera.url).is_file()
        self.live = settings.live if settings.live is not None else not self.is_file
        # A file's frames are stamped from its modification time on, by their position in it.
        self.start_ms = int(Path(camera.url).stat().st_mtime * 1000) if self.is_file else 0

    def open(self) -> cv2.VideoCapture:
        source: Any = int(self.camera.url) if self.camera.url.isdigit() else self.camera.url  # a webcam index
        capture = cv2.VideoCapture(source)
        if not capture.isOpened():
            capture.release()
            raise StreamError(f"camera {self.camera.camera_id}: cannot open {_redact(self.camera.url)}")
        return capture

    def run(self) -> None:
        sampler = Sampler(self.camera.sample_fps or self.settings.sample_fps)
        gate = MotionGate(self.settings.motion_threshold)
        attempt = 0
        offset_ms = 0.0  # source time carried across re-opens of a file played as a stream
        try:
            while not self.stop_event.is_set():
                try:
                    capture = self.open()
                except StreamError as error:
                    if not self.live or not self._wait_to_reconnect(attempt, str(error)):
                        self.stats.error = str(error)
                        return
                    attempt += 1
                    continue
                self.stats.streaming = True
                read_before = self.stats.read
                last_ms = self._read_all(capture, sampler, gate, offset_ms)
                capture.release()
                self.stats.streaming = False
                offset_ms = last_ms + sampler.interval_ms
                if not self.live or not self._wait_to_reconnect(attempt, "stream ended"):
                    return
                # A stream that gave frames starts its backoff afresh; one that ends at once does not.
                attempt = 0 if self.stats.read > read_before else attempt + 1
        finally:
            self.stats.finished = True

    def _read_all(self, capture: cv2.VideoCapture, sampler: Sampler, gate: MotionGate, offset_ms: float) -> float:
        """Read until the source ends; return the source time reached (ms)."""
        source_fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
        t_ms = offset_ms
        local = 0
        while not self.stop_event.is_set():
            ok, frame = capture.read()
            if not ok or frame is None:
                break
            t_ms = offset_ms + local * 1000.0 / source_fps if self.is_file else time.time() * 1000
            local += 1
            number = self.stats.read
            self.stats.read += 1
            if not sampler.keep(t_ms) or not gate.passes(frame):
                continue
            ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.settings.jpeg_quality])
            if ok:
                self._push(number, int(self.start_ms + t_ms), bytes(jpeg))
        return t_ms

    def _push(self, number: int, capture_ms: int, jpeg: bytes) -> None:
        frame = {
            "camera_id": self.camera.camera_id,
            "frame_number": number,
            "capture_time_ms": capture_ms,
            "source_kind": "camera" if self.live else "file",
            "image": jpeg,
            "image_ref": None,
            "content_type": "image/jpeg",
            "source_uri": _redact(self.camera.url),
            "options": None,
        }
        with self.lock:
            if len(self.stats.buffer) == self.stats.buffer.maxlen:
                self.stats.dropped += 1  # the oldest frame gives way: capture never waits for the broker
            self.stats.buffer.append(frame)
            self.stats.sampled += 1
            self.stats.last_update_ms = capture_ms

    def take(self) -> list[dict[str, Any]]:
        with self.lock:
            frames = list(self.stats.buffer)
            self.stats.buffer.clear()
        return frames

    def _wait_to_reconnect(self, attempt: int, why: str) -> bool:
        limit = self.settings.max_reconnects
        if limit >= 0 and self.stats.reconnects >= limit:
            log.error("stream_given_up", camera_id=self.camera.camera_id, reconnects=self.stats.reconnects, why=why)
            return False
        delay = min(self.settings.reconnect_max_s, 0.5 * 2**attempt)
        log.warning("stream_reconnecting", camera_id=self.camera.camera_id, why=why, in_s=delay)
        self.stats.reconnects += 1
        return not self.stop_event.wait(delay)


def _redact(url: str) -> str:
    """A stream URL without its credentials, for logs and records."""
    if "://" in url and "@" in url.split("://", 1)[1].split("/", 1)[0]:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def stream_frames(captures: list[Capture], stop: threading.Event) -> Iterator[dict[str, Any]]:
    """Frames from every camera's buffer until all captures end (or `stop`)."""
    while True:
        batch = [frame for capture in captures for frame in capture.take()]
        yield from batch
        if all(capture.stats.finished for capture in captures) and not any(c.stats.buffer for c in captures):
            return
        if not batch:
            time.sleep(0.01)


def run_video(settings: VideoSettings, source: str | None) -> tuple[int, list[Capture]]:
    """Produce every camera's frames until the sources end or SIGTERM; return frames delivered."""
    from platestream.producers.sink import produce_frames

    cameras = cameras_from(settings, source)
    stop = threading.Event()
    captures = [Capture(camera, settings, stop) for camera in cameras]
    for capture in captures:
        if not capture.live:  # a file or device that cannot be read is an error now, not a silent end
            capture.open().release()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("video_stopping", signal=signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    for capture in captures:
        capture.start()
    try:
        delivery = produce_frames(settings, stream_frames(captures, stop), handle_signals=False)
    finally:
        stop.set()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for capture in captures:
        capture.join(timeout=10)
        log.info("camera_finished", camera_id=capture.camera.camera_id, read=capture.stats.read,
                 sampled=capture.stats.sampled, dropped=capture.stats.dropped,
                 reconnects=capture.stats.reconnects, error=capture.stats.error)  # fmt: skip
    return delivery.delivered, captures
