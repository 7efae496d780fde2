"""Stores downstream of the alpr_group topic: SQLite (default) or PostgreSQL, JSON-lines files,
webhooks."""

from __future__ import annotations

from platestream.aggregator.stores.files import JsonLinesStore, batch_files
from platestream.aggregator.stores.matching import IMAGE_MAX_BYTES, Match
from platestream.aggregator.stores.postgres import PostgresStore
from platestream.aggregator.stores.sqlite import SqliteStore, group_id
from platestream.aggregator.stores.webhooks import WebhookError, Webhooks
from platestream.settings import StoreLocation

SearchableStore = SqliteStore | PostgresStore


def open_store(settings: StoreLocation, *, image_max_bytes: int = IMAGE_MAX_BYTES) -> SearchableStore:
    """PostgreSQL when a DSN is configured, else the SQLite file."""
    if settings.postgres_dsn is not None:
        return PostgresStore(settings.postgres_dsn.get_secret_value(), image_max_bytes=image_max_bytes)
    return SqliteStore(settings.database, image_max_bytes=image_max_bytes)


__all__ = [
    "JsonLinesStore",
    "Match",
    "PostgresStore",
    "SearchableStore",
    "SqliteStore",
    "WebhookError",
    "Webhooks",
    "batch_files",
    "group_id",
    "open_store",
]
