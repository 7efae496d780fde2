"""The operations endpoint every service serves: /healthz, /readyz and Prometheus /metrics."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from platestream.log import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class Probe:
    """A probe's answer: whether it passes, and what the JSON body tells (status, reason)."""

    ok: bool
    details: dict[str, object] = field(default_factory=dict)


class HealthServer:
    """Answers 200 while `alive()` / `ready()` pass, 503 otherwise, with the probe's details as a JSON
    body; serves metrics when the prometheus-client extra is installed."""

    def __init__(
        self, port: int, alive: Callable[[], Probe], ready: Callable[[], Probe], host: str = "0.0.0.0"
    ) -> None:
        probes = {"/healthz": alive, "/livez": alive, "/readyz": ready}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path in probes:
                    probe = probes[path]()
                    body = json.dumps({"ok": probe.ok, **probe.details}).encode() + b"\n"
                    self._send(200 if probe.ok else 503, body, "application/json")
                elif path == "/metrics":
                    try:
                        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
                    except ImportError:
                        self._send(404, b"install platestream[metrics]\n", "text/plain")
                        return
                    self._send(200, generate_latest(), CONTENT_TYPE_LATEST)
                else:
                    self._send(404, b"not found\n", "text/plain")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="health", daemon=True)

    def start(self) -> HealthServer:
        self._thread.start()
        log.info("health_endpoint_started", port=self.port)
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
