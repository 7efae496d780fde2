"""`platestream alerts`: every vehicle pass matched against the alert lists, exactly once.

A consumer-producer in the aggregator's family: it reads alpr_group in its own consumer group,
matches each pass against the lists kept in the store's database (reloaded when an audited change
moves their revision), writes the alerts to the database (an upsert by alert id) and then commits
the `alerts` records, the dead letters and the consumed offsets in one Kafka transaction. A crash
in between replays the batch: the database keeps each alert once, and read_committed consumers of
`alerts` see each once.
"""

from __future__ import annotations

import socket
from typing import Any

from platestream.aggregator.stores import open_store
from platestream.aggregator.stores.database import Database
from platestream.alerts.lists import AlertStore
from platestream.alerts.matching import Matcher, alert_record
from platestream.consume_loop import BatchService
from platestream.deadletter import Origin, dead_letter, service_name
from platestream.errors import SchemaError
from platestream.kafka import Send, codec
from platestream.log import get_logger
from platestream.service import ProgressLog, StallLimits, run_until_signalled
from platestream.settings import AlertSettings

log = get_logger(__name__)


class AlertMatcher(BatchService):
    kind = "alerts"

    def __init__(self, settings: AlertSettings) -> None:
        super().__init__(settings.health_port, StallLimits(settings.stall_not_ready_s, settings.stall_not_alive_s))
        self.settings = settings
        self.transactional_id = settings.transactional_id or f"platestream-alerts-{socket.gethostname()}"
        self._decode = codec(settings, "alpr_group").decode
        self._encode_alert = codec(settings, "alerts").encode
        self._encode_letter = codec(settings, "dead_letter").encode
        open_store(settings).close()  # the passes' tables exist before the console reads them
        self.db = Database(settings)
        self.lists = AlertStore(self.db)
        self._revision: tuple[int, int] | None = None
        self.matcher = Matcher(())
        self.service = service_name("alerts")
        self.totals = {"passes": 0, "alerts": 0}
        self.progress_log = ProgressLog("alerts_progress", settings.progress_log_s)

    def run(self, *, until_idle_s: float | None = None) -> None:
        """Match until stopped (or, with `until_idle_s`, until no pass came for that long)."""
        with self.serving_health():
            self._run(until_idle_s)

    def _run(self, until_idle_s: float | None) -> None:
        try:
            self.serve_batches(
                self.settings, "alpr_group", self._match_batch, group_id=self.settings.group_id,
                batch_size=self.settings.batch_size, until_idle_s=until_idle_s,
                on_committed=lambda _: self.progress_log.update(self.totals),
            )  # fmt: skip
        finally:
            self.db.close()
            log.info("alerts_stopped", **self.totals)

    def _refresh(self) -> None:
        revision = self.lists.revision()
        if revision != self._revision:
            self.matcher = Matcher(self.lists.lists())
            self._revision = revision
            log.info("alert_lists_loaded", entries=self.matcher.entries)

    def _match_batch(self, batch: list[Any]) -> list[Send]:
        """The batch's alerts (written to the database first) and dead letters, to commit."""
        self._refresh()
        sends: list[Send] = []
        alerts: list[dict[str, Any]] = []
        for message in batch:
            try:
                group = self._decode(message.value)
            except SchemaError as error:
                origin = Origin(message.topic, message.partition, message.offset, message.key, message.value)
                letter = dead_letter(origin, "schema_invalid", error, self.service)
                sends.append(Send(self.settings.topic_name("dead_letter"), self._encode_letter(letter), message.key))
                continue
            self.totals["passes"] += 1
            for hit in self.matcher.match(group):
                alert = alert_record(group, hit)
                alerts.append(alert)
                sends.append(Send(self.settings.topic_name("alerts"), self._encode_alert(alert), message.key))
                log.info("alert", list=hit.entry.list_name, plate=hit.entry.plate, how=hit.how,
                         reading=hit.reading, camera_id=group["camera_id"])  # fmt: skip
        if alerts:
            self.lists.write_alerts(alerts)
        self.totals["alerts"] += len(alerts)
        return sends


def run_alerts(settings: AlertSettings) -> None:
    run_until_signalled(AlertMatcher(settings))


__all__ = ["AlertMatcher", "run_alerts"]
