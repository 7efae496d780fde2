"""`platestream store`: alpr_group records into SQLite or PostgreSQL and JSON-lines files.

Each batch is written to every store first; then its dead letters and consumed offsets are committed
in one Kafka transaction. A crash or a broker outage in between replays the batch: the database
upserts by group id and files are rewritten whole, so both hold each group once, and the dead
letters of an uncommitted batch are never seen (read_committed). Webhooks are delivered by their
own service (`webhook_service.py`), so that a slow target never holds the stores up.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from platestream.aggregator.stores import JsonLinesStore, open_store
from platestream.consume_loop import BatchService, by_partition
from platestream.deadletter import Origin, dead_letter, service_name
from platestream.errors import SchemaError
from platestream.kafka import Send, codec
from platestream.log import get_logger
from platestream.service import ProgressLog, StallLimits, run_until_signalled
from platestream.settings import StoreSettings

log = get_logger(__name__)

IMAGE_PURGE_INTERVAL_S = 600.0


class StoreWriter(BatchService):
    kind = "store"

    def __init__(self, settings: StoreSettings) -> None:
        super().__init__(settings.health_port, StallLimits(settings.stall_not_ready_s, settings.stall_not_alive_s))
        self.transactional_id = settings.transactional_id or f"platestream-store-{socket.gethostname()}"
        self._decode = codec(settings, "alpr_group").decode
        self._encode_letter = codec(settings, "dead_letter").encode
        self.settings = settings
        self.store = open_store(settings, image_max_bytes=settings.image_max_bytes)
        self._images_purged_at = 0.0
        self.files = (
            JsonLinesStore(settings.jsonl_target, s3_endpoint_url=settings.s3_endpoint_url)
            if settings.jsonl_target
            else None
        )
        if os.environ.get("PLATESTREAM_WEBHOOK_URLS"):
            log.warning("webhooks_not_sent_here", hint="the store writer no longer sends webhooks: run "
                        "`platestream webhooks` with PLATESTREAM_WEBHOOK_URLS")  # fmt: skip
        self.service = service_name("store")
        self.written = 0
        self.progress_log = ProgressLog("store_progress", settings.progress_log_s)

    def run(self, *, until_idle_s: float | None = None) -> None:
        """Write until stopped (or, with `until_idle_s`, until no group came for that long)."""
        with self.serving_health():
            self._run(until_idle_s)

    def _run(self, until_idle_s: float | None) -> None:
        try:
            self.serve_batches(self.settings, "alpr_group", self._write_batch, group_id=self.settings.group_id,
                               batch_size=self.settings.batch_size, until_idle_s=until_idle_s)  # fmt: skip
        finally:
            self.store.close()
            log.info("store_stopped", written=self.written)

    def _write_batch(self, batch: list[Any]) -> list[Send]:
        """Write a batch's groups to every store; return its dead letters."""
        letters: list[Send] = []
        for tp, messages in by_partition(batch).items():
            records = []
            for message in messages:
                try:
                    records.append(self._decode(message.value))
                except SchemaError as error:
                    origin = Origin(message.topic, message.partition, message.offset, message.key, message.value)
                    letters.append(
                        self._letter(dead_letter(origin, "schema_invalid", error, self.service), message.key)
                    )
            self._write(records, tp.partition, messages[0].offset)
        return letters

    def _write(self, records: list[dict[str, Any]], partition: int, first_offset: int) -> None:
        self.store.write(records)
        self._forget_old_images()
        if self.files is not None:
            self.files.write_batch(records, partition, first_offset)
        self.written += len(records)
        self.progress_log.update({"groups_written": self.written})

    def _forget_old_images(self) -> None:
        """Crops older than the retention go, checked every 10 minutes (the passes stay)."""
        days = self.settings.image_retention_days
        if days <= 0 or time.monotonic() - self._images_purged_at < IMAGE_PURGE_INTERVAL_S:
            return
        self._images_purged_at = time.monotonic()
        forgotten = self.store.forget_images_before(int((time.time() - days * 86400) * 1000))
        if forgotten:
            log.info("store_images_forgotten", passes=forgotten, older_than_days=days)

    def _letter(self, letter: dict[str, Any], key: bytes | None) -> Send:
        return Send(self.settings.topic_name("dead_letter"), self._encode_letter(letter), key)


def run_store(settings: StoreSettings) -> None:
    run_until_signalled(StoreWriter(settings))


__all__ = ["StoreWriter", "run_store"]
