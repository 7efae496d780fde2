"""Writer schemas by id from a Confluent-compatible Schema Registry (`GET /schemas/ids/{id}`),
so a consumer reads records written with another version of a contract by Avro's resolution."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from functools import cache
from typing import Any

import fastavro
from fastavro.types import Schema

from platestream.errors import SchemaError


class SchemaRegistry:
    def __init__(self, url: str, *, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._schemas: dict[int, Schema] = {}

    def schema(self, schema_id: int) -> Schema:
        """The schema registered under `schema_id`, fetched once and kept."""
        if schema_id not in self._schemas:
            self._schemas[schema_id] = fastavro.parse_schema(json.loads(self._fetch(schema_id)["schema"]))
        return self._schemas[schema_id]

    def _fetch(self, schema_id: int) -> Any:
        address = f"{self.url}/schemas/ids/{schema_id}"
        request = urllib.request.Request(address, headers={"Accept": "application/vnd.schemaregistry.v1+json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            raise SchemaError(f"the schema registry has no schema {schema_id} ({address}: HTTP {error.code})") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, ValueError) as error:
            reason = getattr(error, "reason", error)
            raise SchemaError(f"the schema registry at {self.url} did not give schema {schema_id}: {reason}") from None


@cache
def registry(url: str) -> SchemaRegistry:
    """One client (and cache) per registry URL in a process."""
    return SchemaRegistry(url)
