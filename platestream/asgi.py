"""Serving an ASGI app (the HTTP APIs, the console) with uvicorn until SIGTERM / SIGINT."""

from __future__ import annotations

import signal
import threading
from typing import Any

from platestream.log import get_logger

log = get_logger(__name__)


def serve_until_signalled(app: Any, host: str, port: int, *, name: str) -> None:
    """Run `app` until SIGTERM / SIGINT: requests in flight finish, then the process exits 0, like
    the other services (uvicorn in the main thread would re-raise the signal and die by it)."""
    import uvicorn

    # uvicorn's own access log would print query strings, where secrets and plates travel.
    config = uvicorn.Config(app, host=host, port=port, access_log=False, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)

    def stop(signum: int, _frame: object) -> None:
        log.info("service_stopping", service=name, signal=signum)
        server.should_exit = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    thread = threading.Thread(target=server.run, name=name, daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(timeout=0.5)
    if not server.started:
        raise SystemExit(f"platestream: error: the {name} did not start on {host}:{port}")
