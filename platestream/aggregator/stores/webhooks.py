"""POSTing each group to configured URLs, with retries and backoff, as Plate Recognizer's webhooks."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from platestream.errors import PlatestreamError


class WebhookError(PlatestreamError):
    reason = "webhook_failed"


class _TransientError(Exception):
    """A failure worth another attempt: no answer, a timeout, 408, 429 or a 5xx."""


class Webhooks:
    name = "webhooks"

    def __init__(
        self, urls: Sequence[str], *, attempts: int = 4, backoff_s: float = 0.5, timeout_s: float = 10.0,
        include_crop: bool = False,
    ) -> None:  # fmt: skip
        self.urls = list(urls)
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.include_crop = include_crop

    def post(self, record: Mapping[str, Any]) -> None:
        """Deliver to every URL; raise WebhookError naming those that still failed after retries.
        Every attempt, and a delivery repeated after a crash, carries the group's first uuid (an
        alert's id) as its `Idempotency-Key` header, so that a receiver can drop a repeat."""
        payload = dict(record)
        if not self.include_crop:
            if "vehicle_crop_jpeg" in payload:
                payload["vehicle_crop_jpeg"] = None
            if isinstance(payload.get("best_plate"), Mapping):
                payload["best_plate"] = {k: v for k, v in payload["best_plate"].items() if k != "plate_crop_jpeg"}
        body = json.dumps(payload, default=str).encode()
        key = idempotency_key(record)
        failures = [f"{url}: {error}" for url in self.urls if (error := self._deliver(url, body, key)) is not None]
        if failures:
            raise WebhookError("; ".join(failures))

    def _deliver(self, url: str, body: bytes, key: str) -> str | None:
        """None when delivered, else why not (after the retries a transient failure deserves)."""
        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=self.backoff_s, max=30 * self.backoff_s),
            retry=retry_if_exception_type(_TransientError),
            reraise=True,
        )
        try:
            return retrying(self._attempt, url, body, key)
        except _TransientError as error:
            return str(error)

    def _attempt(self, url: str, body: bytes, key: str) -> str | None:
        headers = {"Content-Type": "application/json"} | ({"Idempotency-Key": key} if key else {})
        request = urllib.request.Request(url, data=body, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                if 200 <= response.status < 300:
                    return None
                raise _TransientError(f"HTTP {response.status}")
        except urllib.error.HTTPError as error:
            if 400 <= error.code < 500 and error.code not in (408, 429):
                return f"HTTP {error.code}"  # the target refuses this payload: retrying will not help
            raise _TransientError(f"HTTP {error.code}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            raise _TransientError(str(getattr(error, "reason", error))) from None


def idempotency_key(record: Mapping[str, Any]) -> str:
    """An alert's id, or a group's first uuid: the same for every delivery of one record."""
    if record.get("alert_id"):
        return str(record["alert_id"])
    uuids = record.get("uuids") or []
    return str(uuids[0]) if uuids else ""


def describe(record: Mapping[str, Any]) -> str:
    """A record's name in logs and dead letters."""
    if record.get("alert_id"):
        return f"alert {record['alert_id']}"
    return f"group {idempotency_key(record)}"
