"""Stores downstream of the alpr_group topic: SQLite (default), JSON-lines files, webhooks."""

from aggregator.stores.files import JsonLinesStore, batch_files
from aggregator.stores.sqlite import Match, SqliteStore, group_id
from aggregator.stores.webhooks import WebhookError, Webhooks

__all__ = ["JsonLinesStore", "Match", "SqliteStore", "WebhookError", "Webhooks", "batch_files", "group_id"]
