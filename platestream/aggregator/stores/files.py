"""JSON-lines files for data lakes, partitioned by date and camera, in a folder or on S3.

A batch of groups from one alpr_group partition becomes one file per (date, camera) named by the
partition and the batch's first offset. Re-reading after a crash starts at that same offset and
rewrites those same files whole, so a file never holds a group twice and no two files share one.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from platestream.errors import ConfigError


def partition_path(record: Mapping[str, Any], source_partition: int, first_offset: int) -> str:
    day = datetime.fromtimestamp(record["epoch_start"] / 1000, tz=UTC).strftime("%Y-%m-%d")
    camera = str(record["camera_id"]).replace("/", "_")
    return f"date={day}/camera={camera}/part-{source_partition:03d}-{first_offset:012d}.jsonl"


def batch_files(records: Sequence[Mapping[str, Any]], source_partition: int, first_offset: int) -> dict[str, bytes]:
    """File path -> content for one batch (pure)."""
    files: dict[str, list[str]] = defaultdict(list)
    for record in records:
        files[partition_path(record, source_partition, first_offset)].append(json.dumps(record, default=str))
    return {path: ("\n".join(lines) + "\n").encode() for path, lines in files.items()}


class JsonLinesStore:
    name = "jsonl"

    def __init__(self, target: str, *, s3_endpoint_url: str | None = None) -> None:
        self.target = target
        if target.startswith("s3://"):
            try:
                import boto3
            except ImportError:
                from platestream.errors import MissingExtraError

                raise MissingExtraError("boto3", "s3") from None
            bucket, _, prefix = target.removeprefix("s3://").partition("/")
            if not bucket:
                raise ConfigError(f"no bucket in {target!r}")
            self._s3 = boto3.client("s3", endpoint_url=s3_endpoint_url)
            self._bucket, self._prefix = bucket, prefix.strip("/")
        else:
            self._folder = Path(target)

    def write_batch(self, records: Sequence[Mapping[str, Any]], source_partition: int, first_offset: int) -> None:
        for path, content in batch_files(records, source_partition, first_offset).items():
            if self.target.startswith("s3://"):
                key = f"{self._prefix}/{path}" if self._prefix else path
                self._s3.put_object(Bucket=self._bucket, Key=key, Body=content, ContentType="application/x-ndjson")
            else:
                destination = self._folder / path
                destination.parent.mkdir(parents=True, exist_ok=True)
                partial = destination.with_suffix(".partial")
                partial.write_bytes(content)
                partial.replace(destination)
