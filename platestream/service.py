"""What every long-running service shares: stopping on a signal, and its health endpoint."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Protocol

from platestream.health import HealthServer
from platestream.log import get_logger

log = get_logger(__name__)


class Service:
    """A loop that runs until `stop()`; alive until asked to stop, ready while `ready` is set."""

    kind = "service"

    def __init__(self, health_port: int) -> None:
        self.health_port = health_port
        self._stopping = False
        self._ready = False

    def stop(self, signum: int | None = None, _frame: FrameType | None = None) -> None:
        log.info("service_stopping", service=self.kind, signal=signum)
        self._stopping = True

    @contextmanager
    def serving_health(self) -> Iterator[None]:
        """The /healthz, /readyz and /metrics endpoint for the duration of the block (port 0: none)."""
        if not self.health_port:
            yield
            return
        server = HealthServer(self.health_port, alive=lambda: not self._stopping, ready=lambda: self._ready)
        server.start()
        try:
            yield
        finally:
            self._ready = False
            server.stop()


class Runnable(Protocol):
    def run(self) -> None: ...

    def stop(self, signum: int | None = None, _frame: FrameType | None = None) -> None: ...


def run_until_signalled(service: Runnable) -> None:
    """Run `service` in the foreground; SIGTERM and SIGINT stop it cleanly."""
    signal.signal(signal.SIGTERM, service.stop)
    signal.signal(signal.SIGINT, service.stop)
    service.run()
