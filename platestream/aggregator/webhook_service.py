"""`platestream webhooks`: each alpr_group (or, with PLATESTREAM_WEBHOOK_SOURCE=alerts, each alert)
POSTed to the configured URLs, apart from the stores.

Its own consumer group reads alpr_group, so a slow or dead target delays only the deliveries,
never the database or the data lake. A poll's groups are delivered concurrently (at most
`webhook_concurrency` at a time, each with its retries); then the dead letters of the groups that
still failed and the consumed offsets are committed in one Kafka transaction. A crash before that
commit delivers the poll's groups again, with the same `Idempotency-Key` (the group's first uuid),
so a receiver drops the repeats; a group is never skipped.
"""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from platestream.aggregator.stores import WebhookError, Webhooks
from platestream.aggregator.stores.webhooks import describe
from platestream.consume_loop import BatchService
from platestream.deadletter import Origin, dead_letter, service_name
from platestream.errors import SchemaError
from platestream.kafka import Send, codec
from platestream.log import get_logger
from platestream.service import ProgressLog, StallLimits, run_until_signalled
from platestream.settings import WebhookSettings

log = get_logger(__name__)


class WebhookSender(BatchService):
    kind = "webhooks"

    def __init__(self, settings: WebhookSettings) -> None:
        super().__init__(settings.health_port, StallLimits(settings.stall_not_ready_s, settings.stall_not_alive_s))
        self.settings = settings
        self.transactional_id = settings.transactional_id or f"platestream-webhooks-{socket.gethostname()}"
        self._decode = codec(settings, settings.webhook_source).decode
        self._encode_letter = codec(settings, "dead_letter").encode
        self.webhooks = Webhooks(
            settings.urls, attempts=settings.webhook_attempts, timeout_s=settings.webhook_timeout_s,
            backoff_s=settings.webhook_backoff_s, include_crop=settings.webhook_include_crop,
        )  # fmt: skip
        self.service = service_name("webhooks")
        self.totals = {"delivered": 0, "failed": 0}
        self.progress_log = ProgressLog("webhooks_progress", settings.progress_log_s)

    def run(self, *, until_idle_s: float | None = None) -> None:
        """Deliver until stopped (or, with `until_idle_s`, until no group came for that long)."""
        with self.serving_health(), ThreadPoolExecutor(self.settings.webhook_concurrency) as pool:
            self._run(pool, until_idle_s)

    def _run(self, pool: ThreadPoolExecutor, until_idle_s: float | None) -> None:
        settings = self.settings
        try:
            self.serve_batches(
                settings, settings.webhook_source, lambda batch: self._deliver(pool, batch), group_id=settings.group_id,
                batch_size=settings.batch_size, until_idle_s=until_idle_s,
                on_committed=lambda _: self.progress_log.update(self.totals), urls=len(settings.urls),
                source=settings.webhook_source,
            )  # fmt: skip
        finally:
            log.info("webhooks_stopped", **self.totals)

    def _deliver(self, pool: ThreadPoolExecutor, batch: list[Any]) -> list[Send]:
        """Deliver a batch's groups concurrently; return the dead letters."""
        letters: list[Send] = []
        pending = []
        for message in batch:
            origin = Origin(message.topic, message.partition, message.offset, message.key, message.value)
            try:
                record = self._decode(message.value)
            except SchemaError as error:
                letters.append(self._letter(dead_letter(origin, "schema_invalid", error, self.service), message.key))
                continue
            pending.append((origin, record, pool.submit(self.webhooks.post, record)))
        for origin, record, delivery in pending:
            try:
                delivery.result()
                self.totals["delivered"] += 1
            except WebhookError as error:
                self.totals["failed"] += 1
                log.warning("webhook_failed", record=describe(record), error=str(error))
                # the letter keeps the record's bytes: it can be sent again once the target is back
                letter = dead_letter(origin, error.reason, error, self.service, reference=describe(record))
                letters.append(self._letter(letter, origin.key))
        return letters

    def _letter(self, letter: dict[str, Any], key: bytes | None) -> Send:
        return Send(self.settings.topic_name("dead_letter"), self._encode_letter(letter), key)


def run_webhooks(settings: WebhookSettings) -> None:
    run_until_signalled(WebhookSender(settings))


__all__ = ["WebhookSender", "run_webhooks"]
