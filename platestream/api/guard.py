"""What keeps the API safe to expose: tokens, per-token rate and monthly limits, and `image_url`
fetching that cannot be turned against the server's own network."""

from __future__ import annotations

import http.client
import ipaddress
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from platestream.api.dialects import RequestError
from platestream.errors import ConfigError
from platestream.settings import ApiSettings


def load_tokens(settings: ApiSettings) -> frozenset[str] | None:
    """The accepted tokens; None when authentication is explicitly off."""
    tokens: set[str] = set()
    if settings.api_tokens is not None:
        tokens |= {t.strip() for t in settings.api_tokens.get_secret_value().split(",") if t.strip()}
    if settings.api_tokens_file is not None:
        try:
            text = settings.api_tokens_file.read_text()
        except OSError as error:
            raise ConfigError(f"PLATESTREAM_API_TOKENS_FILE: cannot read {settings.api_tokens_file}: {error}") from None
        tokens |= {line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")}
    if settings.api_no_auth:
        return None
    if not tokens:
        raise ConfigError(
            "the API needs tokens: set PLATESTREAM_API_TOKENS or PLATESTREAM_API_TOKENS_FILE"
            " (or PLATESTREAM_API_NO_AUTH=true on a lab machine)"
        )
    return frozenset(tokens)


@dataclass(frozen=True)
class Window:
    limit: int
    remaining: int
    reset_epoch_s: int


class RateLimiter:
    """A fixed one-minute window of requests per token."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.time) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._counts: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()

    def take(self, token: str) -> tuple[bool, Window]:
        now = self._clock()
        minute = int(now // 60)
        with self._lock:
            self._counts = {key: n for key, n in self._counts.items() if key[1] == minute}
            used = self._counts.get((token, minute), 0)
            allowed = self.per_minute == 0 or used < self.per_minute
            if allowed:
                used += 1
                self._counts[(token, minute)] = used
        remaining = max(0, self.per_minute - used) if self.per_minute else 0
        return allowed, Window(self.per_minute, remaining, (minute + 1) * 60)


class MonthlyUsage:
    """Calls (credits) per token in the current calendar month (UTC), kept in memory."""

    def __init__(self, limit: int, clock: Callable[[], float] = time.time) -> None:
        self.limit = limit
        self._clock = clock
        self._used: dict[tuple[str, int, int], int] = {}
        self._lock = threading.Lock()

    def _month(self) -> tuple[int, int]:
        moment = datetime.fromtimestamp(self._clock(), tz=UTC)
        return moment.year, moment.month

    def used(self, token: str) -> int:
        return self._used.get((token, *self._month()), 0)

    def charge(self, token: str, cost: int) -> bool:
        """Count `cost` calls; False (nothing counted) when that would pass the monthly limit."""
        key = (token, *self._month())
        with self._lock:
            used = self._used.get(key, 0)
            if self.limit and used + cost > self.limit:
                return False
            self._used[key] = used + cost
            return True

    def resets_on(self) -> str:
        year, month = self._month()
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        return f"{year:04d}-{month:02d}-01T00:00:00Z"

    def period(self) -> dict[str, Any]:
        year, month = self._month()
        return {"year": year, "month": month}


def check_image_url(url: str, hosts: frozenset[str], allow_private: bool,
                    resolve: Callable[[str], list[str]] | None = None) -> tuple[str, str]:  # fmt: skip
    """The host and the address to connect to, or a RequestError: the scheme is http(s), the host
    allow-listed, and the address, unless allowed, neither loopback, private, link-local nor reserved.
    Nothing connects before this passes."""
    if not hosts:
        raise RequestError(400, "image_url is disabled on this server: upload the image, or send image_bytes")
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise RequestError(400, "image_url must be an http or https URL")
    host = parsed.hostname.lower()
    if host not in hosts:
        raise RequestError(400, f"image_url host {host!r} is not allowed on this server")
    addresses = (resolve or _resolve)(host)
    if not addresses:
        raise RequestError(400, f"image_url host {host!r} does not resolve")
    for address in addresses:
        ip = ipaddress.ip_address(address)
        private = ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_multicast
        if private and not allow_private:
            raise RequestError(400, f"image_url host {host!r} resolves to a private address: refused")
    return host, addresses[0]


def _resolve(host: str) -> list[str]:
    try:
        return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)})
    except socket.gaierror:
        return []


def fetch_image_url(url: str, settings: ApiSettings, *, max_redirects: int = 3) -> bytes:
    """The image at an allowed URL, connecting only to the address that was checked (a name that
    resolves elsewhere on a second look cannot redirect the request) and following redirects only
    within the same host, each checked again."""
    hosts = frozenset(h.strip().lower() for h in settings.api_image_url_hosts.split(",") if h.strip())
    for _ in range(max_redirects + 1):
        host, address = check_image_url(url, hosts, settings.api_image_url_private)
        status, location, data = _get(url, address, settings)
        if status in (301, 302, 303, 307, 308) and location:
            target = urllib.parse.urljoin(url, location)
            if (urllib.parse.urlsplit(target).hostname or "").lower() != host:
                raise RequestError(400, "image_url redirects to another host: refused")
            url = target
            continue
        if status != 200:
            raise RequestError(400, f"image_url answered HTTP {status}")
        return data
    raise RequestError(400, f"image_url redirected more than {max_redirects} times")


def _get(url: str, address: str, settings: ApiSettings) -> tuple[int, str | None, bytes]:
    import ssl

    parts = urllib.parse.urlsplit(url)
    timeout = settings.api_image_url_timeout_s
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = _PinnedHTTPS(
            parts.hostname or "", address, parts.port or 443, timeout, ssl.create_default_context()
        )
    else:
        connection = _PinnedHTTP(parts.hostname or "", address, parts.port or 80, timeout)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    try:
        connection.request("GET", path, headers={"Host": parts.netloc, "User-Agent": "platestream"})
        answer = connection.getresponse()
        data = answer.read(settings.max_image_bytes + 1)
    except (OSError, http.client.HTTPException) as error:
        raise RequestError(400, f"image_url could not be fetched: {error}") from None
    finally:
        connection.close()
    if len(data) > settings.max_image_bytes:
        raise RequestError(413, f"image_url is over the limit of {settings.max_image_bytes} bytes")
    return answer.status, answer.getheader("Location"), data


class _PinnedHTTP(http.client.HTTPConnection):
    """Connects to the checked address, whatever the name resolves to now."""

    def __init__(self, host: str, address: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """TLS to the checked address, the certificate verified for the host name."""

    def __init__(self, host: str, address: str, port: int, timeout: float, context: Any) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address
        self._tls = context

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(raw, server_hostname=self.host)
