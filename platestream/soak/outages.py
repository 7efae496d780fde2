"""What the soak makes slow or unavailable for a while: a TCP proxy in front of the S3 server, and
the webhook target (an HTTP server that notes each delivery's Idempotency-Key)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from platestream.broker import free_port

UP, SLOW, DOWN = "up", "slow", "down"


class FlakyProxy:
    """Forwards TCP connections on a loopback port to `target_port`. Slow: each chunk a client
    sends waits `delay_s` first. Down: open connections are cut and new ones closed at once."""

    def __init__(self, target_port: int, *, delay_s: float = 2.0) -> None:
        self.target_port = target_port
        self.delay_s = delay_s
        self.mode = UP
        self.port = free_port()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, name="flaky-proxy", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set(self, mode: str) -> None:
        self.mode = mode
        if mode == DOWN:
            with self._lock:
                for sock in self._open:
                    _shut(sock)

    def close(self) -> None:
        self._closed = True
        self.set(DOWN)
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.mode == DOWN:
                _shut(client)
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open.update((client, upstream))
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        try:
            while chunk := source.recv(65536):
                if from_client and self.mode == SLOW:
                    time.sleep(self.delay_s)
                if self.mode == DOWN:
                    break
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                _shut(sock)
            with self._lock:
                self._open.difference_update((source, sink))


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class WebhookTarget:
    """Answers POSTs with 200 and notes their Idempotency-Key; slow: answers after `delay_s`;
    down: answers 503 and notes nothing."""

    def __init__(self, *, delay_s: float = 3.0) -> None:
        self.delay_s = delay_s
        self.mode = UP
        self.delivered: Counter[str] = Counter()
        self.refused = 0
        lock = threading.Lock()
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if target.mode == SLOW:
                    time.sleep(target.delay_s)
                if target.mode == DOWN:
                    with lock:
                        target.refused += 1
                    self.send_response(503)
                else:
                    with lock:
                        target.delivered[self.headers.get("Idempotency-Key") or ""] += 1
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="webhook-target", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/groups"

    def set(self, mode: str) -> None:
        self.mode = mode

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
