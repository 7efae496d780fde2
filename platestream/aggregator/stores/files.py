"""JSON-lines files for data lakes, partitioned by date and camera, in a folder or on S3.

A batch of groups from one alpr_group partition becomes one file per (date, camera) named by the
partition and the batch's first offset. Re-reading after a crash starts at that same offset and
rewrites those files whole. The replayed batch may be shorter than the one that failed, and so
leave out a file the failed one wrote (its groups now come in a later batch, under a later name):
each partition's last batch lists its files in `_attempts/`, and a batch that starts at the same
offset again first deletes those it does not write. So no two files hold one group. (A batch that
starts later means the one listed was committed: its files stay.)
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
        files = batch_files(records, source_partition, first_offset)
        attempt = f"_attempts/part-{source_partition:03d}.json"
        previous = self._read(attempt)
        if previous is not None:
            last = json.loads(previous)
            if last.get("first_offset") == first_offset:  # this batch again: what it no longer holds goes
                for stale in sorted(set(last.get("files", [])) - set(files)):
                    self._delete(stale)
        self._write(attempt, json.dumps({"first_offset": first_offset, "files": sorted(files)}).encode())
        for path, content in files.items():
            self._write(path, content)

    def _key(self, path: str) -> str:
        return f"{self._prefix}/{path}" if self._prefix else path

    def _write(self, path: str, content: bytes) -> None:
        if self.target.startswith("s3://"):
            self._s3.put_object(Bucket=self._bucket, Key=self._key(path), Body=content,
                                ContentType="application/x-ndjson")  # fmt: skip
            return
        destination = self._folder / path
        destination.parent.mkdir(parents=True, exist_ok=True)
        partial = destination.with_suffix(".partial")
        partial.write_bytes(content)
        partial.replace(destination)

    def _read(self, path: str) -> bytes | None:
        if self.target.startswith("s3://"):
            try:
                body: bytes = self._s3.get_object(Bucket=self._bucket, Key=self._key(path))["Body"].read()
            except self._s3.exceptions.NoSuchKey:
                return None
            return body
        try:
            return (self._folder / path).read_bytes()
        except FileNotFoundError:
            return None

    def _delete(self, path: str) -> None:
        if self.target.startswith("s3://"):
            self._s3.delete_object(Bucket=self._bucket, Key=self._key(path))
        else:
            (self._folder / path).unlink(missing_ok=True)
