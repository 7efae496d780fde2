"""POSTing each group to configured URLs, with retries and backoff, as Plate Recognizer's webhooks."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from platestream.errors import PlatestreamError


class WebhookError(PlatestreamError):
    reason = "webhook_failed"


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
        """Deliver to every URL; raise WebhookError naming those that still failed after retries."""
        payload = dict(record)
        if not self.include_crop and isinstance(payload.get("best_plate"), Mapping):
            payload["best_plate"] = {k: v for k, v in payload["best_plate"].items() if k != "plate_crop_jpeg"}
        body = json.dumps(payload, default=str).encode()
        # A replayed batch (a crash before its offsets were committed) posts a group again with the
        # same key: a receiver drops the repeat.
        uuids = record.get("uuids") or []
        key = str(uuids[0]) if uuids else ""
        failures = [f"{url}: {error}" for url in self.urls if (error := self._deliver(url, body, key)) is not None]
        if failures:
            raise WebhookError("; ".join(failures))

    def _deliver(self, url: str, body: bytes, key: str) -> str | None:
        last = ""
        headers = {"Content-Type": "application/json"} | ({"Idempotency-Key": key} if key else {})
        for attempt in range(self.attempts):
            request = urllib.request.Request(url, data=body, method="POST", headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    if 200 <= response.status < 300:
                        return None
                    last = f"HTTP {response.status}"
            except urllib.error.HTTPError as error:
                last = f"HTTP {error.code}"
                if 400 <= error.code < 500 and error.code not in (408, 429):
                    return last  # the target refuses this payload: retrying will not help
            except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
                last = str(getattr(error, "reason", error))
            if attempt + 1 < self.attempts:
                time.sleep(self.backoff_s * 2**attempt)
        return last
