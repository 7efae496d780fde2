"""`platestream store`: alpr_group records into SQLite or PostgreSQL, JSON-lines files and webhooks.

Offsets are committed only after every store has the batch. A crash in between replays the batch:
The database upserts by group id and files are rewritten whole, so both hold each group once; a webhook
target may receive a group twice and can deduplicate on `uuids[0]`.
"""

from __future__ import annotations

import time
from typing import Any

from kafka import TopicPartition
from kafka.structs import OffsetAndMetadata

from platestream.aggregator.stores import JsonLinesStore, WebhookError, Webhooks, open_store
from platestream.deadletter import Origin, dead_letter, service_name
from platestream.errors import SchemaError
from platestream.kafka import codec, make_consumer, make_producer
from platestream.log import get_logger
from platestream.service import Service, run_until_signalled
from platestream.settings import StoreSettings

log = get_logger(__name__)


class StoreWriter(Service):
    kind = "store"

    def __init__(self, settings: StoreSettings) -> None:
        super().__init__(health_port=0)
        self.settings = settings
        self.store = open_store(settings)
        self.files = (
            JsonLinesStore(settings.jsonl_target, s3_endpoint_url=settings.s3_endpoint_url)
            if settings.jsonl_target
            else None
        )
        urls = [url.strip() for url in settings.webhook_urls.split(",") if url.strip()]
        self.webhooks = (
            Webhooks(urls, attempts=settings.webhook_attempts, include_crop=settings.webhook_include_crop)
            if urls
            else None
        )
        self.service = service_name("store")
        self.written = 0

    def run(self, *, until_idle_s: float | None = None) -> None:
        """Write until stopped (or, with `until_idle_s`, until no group came for that long)."""
        consumer = make_consumer(self.settings, "alpr_group", group_id=self.settings.group_id,
                                 max_poll_records=self.settings.batch_size)  # fmt: skip
        letters = make_producer(self.settings)
        decode = codec(self.settings, "alpr_group").decode
        encode_letter = codec(self.settings, "dead_letter").encode
        idle_since = time.monotonic()
        try:
            while not self._stopping:
                polled = consumer.poll(timeout_ms=500, max_records=self.settings.batch_size)
                if not polled:
                    if until_idle_s is not None and time.monotonic() - idle_since > until_idle_s:
                        break
                    continue
                idle_since = time.monotonic()
                offsets = {}
                for tp, messages in polled.items():
                    records = []
                    for message in messages:
                        try:
                            records.append(decode(message.value))
                        except SchemaError as error:
                            origin = Origin(
                                message.topic, message.partition, message.offset, message.key, message.value
                            )
                            letter = dead_letter(origin, "schema_invalid", error, self.service)
                            letters.send(
                                self.settings.topic_name("dead_letter"), encode_letter(letter), key=message.key
                            )
                    self._write(records, tp.partition, messages[0].offset, letters, encode_letter)
                    offsets[TopicPartition(tp.topic, tp.partition)] = OffsetAndMetadata(messages[-1].offset + 1, "", -1)
                letters.flush()
                consumer.commit(offsets)
        finally:
            consumer.close()
            letters.close(timeout=10)
            self.store.close()
            log.info("store_stopped", written=self.written)

    def _write(self, records: list[dict[str, Any]], partition: int, first_offset: int, letters: Any,
               encode_letter: Any) -> None:  # fmt: skip
        self.store.write(records)
        if self.files is not None:
            self.files.write_batch(records, partition, first_offset)
        if self.webhooks is not None:
            for record in records:
                try:
                    self.webhooks.post(record)
                except WebhookError as error:
                    origin = Origin(self.settings.topic_name("alpr_group"), partition, first_offset, None, None)
                    letter = dead_letter(origin, error.reason, error, self.service,
                                         reference=f"group {record['uuids'][0]}")  # fmt: skip
                    letters.send(self.settings.topic_name("dead_letter"), encode_letter(letter))
        self.written += len(records)


def run_store(settings: StoreSettings) -> None:
    run_until_signalled(StoreWriter(settings))


__all__ = ["StoreWriter", "run_store"]
