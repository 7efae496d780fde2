"""What every long-running service shares: stopping on a signal, knowing whether it moves, and its
health endpoint."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Protocol

from platestream.health import HealthServer, Probe
from platestream.log import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class StallLimits:
    not_ready_s: float = 60.0
    not_alive_s: float = 300.0


class ProgressLog:
    """A line in the log every `interval_s` while a service works: its totals and how fast they
    grew since the last line, so a running service is never silent. Idle stretches log nothing."""

    def __init__(self, event: str, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.event = event
        self.interval_s = interval_s
        self._clock = clock
        self._since = clock()
        self._last: dict[str, float] = {}

    def update(self, totals: Mapping[str, float], **context: object) -> dict[str, object] | None:
        """Log a line if the interval has passed and something moved; the line's fields, or None."""
        now = self._clock()
        elapsed = now - self._since
        if self.interval_s <= 0 or elapsed < self.interval_s:
            return None
        rates = {f"{key}_per_s": round((value - self._last.get(key, 0.0)) / elapsed, 2)
                 for key, value in totals.items()}  # fmt: skip
        self._since, self._last = now, dict(totals)
        if not any(rates.values()):
            return None
        line: dict[str, object] = {key: round(value, 3) for key, value in totals.items()} | rates | context
        log.info(self.event, **line)
        return line


class Progress:
    """When a service last moved: it committed output, or it looked and had nothing to do. A service
    that has neither for a while has input it cannot get through: it is stalled, and says why."""

    def __init__(self, limits: StallLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._last = clock()
        self._reason = ""
        self._reported: set[float] = set()  # the limits whose crossing was logged, this stall

    def advanced(self) -> None:
        if self._reported:
            log.info("service_progressing", stalled_s=round(self.stalled_s(), 1), reason=self._reason)
            self._reported.clear()
        self._last = self._clock()
        self._reason = ""

    def blocked(self, reason: str) -> None:
        """Why the service is not moving (kept until it moves again)."""
        self._reason = reason

    def stalled_s(self) -> float:
        return self._clock() - self._last

    def probe(self, limit_s: float) -> Probe:
        stalled = self.stalled_s()
        if stalled < limit_s:
            return Probe(True, {"status": "ok", "stalled_s": round(stalled, 1)})
        reason = f"no progress for {stalled:.0f} s with input waiting" + (f": {self._reason}" if self._reason else "")
        if limit_s not in self._reported:
            log.error("service_stalled", stalled_s=round(stalled, 1), reason=self._reason, limit_s=limit_s)
            self._reported.add(limit_s)
        return Probe(False, {"status": "stalled", "stalled_s": round(stalled, 1), "reason": reason})


class Service:
    """A loop that runs until `stop()`. Alive until asked to stop or stalled past `not_alive_s`;
    ready while `_ready` is set and not stalled past `not_ready_s`."""

    kind = "service"

    def __init__(self, health_port: int, limits: StallLimits | None = None) -> None:
        self.health_port = health_port
        self.progress = Progress(limits or StallLimits())
        self._stopping = False
        self._ready = False

    def stop(self, signum: int | None = None, _frame: FrameType | None = None) -> None:
        log.info("service_stopping", service=self.kind, signal=signum)
        self._stopping = True

    def alive(self) -> Probe:
        if self._stopping:
            return Probe(False, {"status": "stopping"})
        return self.progress.probe(self.progress.limits.not_alive_s)

    def ready(self) -> Probe:
        if not self._ready or self._stopping:
            return Probe(False, {"status": "stopping" if self._stopping else "starting"})
        return self.progress.probe(self.progress.limits.not_ready_s)

    @contextmanager
    def serving_health(self) -> Iterator[None]:
        """The /healthz, /readyz and /metrics endpoint for the duration of the block (port 0: none)."""
        if not self.health_port:
            yield
            return
        server = HealthServer(self.health_port, alive=self.alive, ready=self.ready)
        server.start()
        try:
            yield
        finally:
            self._ready = False
            server.stop()


class Runnable(Protocol):
    def run(self) -> None: ...

    def stop(self, signum: int | None = None, _frame: FrameType | None = None) -> None: ...


@contextmanager
def in_thread(service: Runnable, *, name: str = "service", join_s: float = 60.0) -> Iterator[threading.Thread]:
    """`service.run` in a thread for the duration of the block, stopped and joined after it (the
    demo, the benchmarks and the tests run services beside each other this way)."""
    thread = threading.Thread(target=service.run, name=name, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        service.stop()
        thread.join(timeout=join_s)


def run_until_signalled(service: Runnable) -> None:
    """Run `service` in the foreground; SIGTERM and SIGINT stop it cleanly."""
    signal.signal(signal.SIGTERM, service.stop)
    signal.signal(signal.SIGINT, service.stop)
    service.run()
