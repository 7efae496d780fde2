"""Stores downstream of alpr_group: SQLite and search, JSON-lines files, webhooks."""

from __future__ import annotations

import http.server
import json
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import boto3
import pytest
from click.testing import CliRunner

from platestream.aggregator.stores import JsonLinesStore, SqliteStore, WebhookError, Webhooks, batch_files
from platestream.cli import main
from tests.factories import alpr_group

DAY = 1_700_000_000_000  # 2023-11-14


def group(plate: str, camera: int | str = 7, start: int = DAY, candidates: tuple[str, ...] = ()) -> dict[str, Any]:
    record = alpr_group(camera)
    record.update(best_plate_number=plate, epoch_start=start, epoch_end=start + 900,
                  uuids=[f"u-{camera}-{start}", f"u-{camera}-{start + 900}"],
                  candidates=[{"plate": p, "confidence": 90.0 - i, "matches_template": 1}
                              for i, p in enumerate((plate, *candidates))])  # fmt: skip
    return record


def test_sqlite_search_exact_fuzzy_by_camera_and_time(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db.sqlite")
    store.write([group("ABC1234", 1, DAY), group("AB01234", 2, DAY + 1000), group("XYZ9876", 1, DAY + 2000),
                 group("QRS5555", 3, DAY + 3000, candidates=("ABC1234",))])  # fmt: skip
    store.write([group("ABC1234", 1, DAY)])  # written again after a replay: still one pass
    exact = store.search("abc-1234", fuzzy=False)
    assert [(m.plate, m.camera_id) for m in exact] == [("QRS5555", "3"), ("ABC1234", "1")]
    fuzzy = store.search("ABC1234")
    assert {m.plate for m in fuzzy} == {"ABC1234", "QRS5555", "AB01234"}  # C/0 is no look-alike: one edit
    assert store.search("ABO1234", fuzzy=True)[0].plate == "AB01234"  # O/0 look-alike
    assert [m.plate for m in store.search("ABC1234", camera_id="1")] == ["ABC1234"]
    assert [m.plate for m in store.search("ABC1234", since_ms=DAY + 500)] == ["QRS5555", "AB01234"]
    assert store.search("ZZZ0000") == []
    store.close()


def test_fuzzy_search_finds_every_reading_within_one_edit_through_the_key_index(tmp_path: Path) -> None:
    import sqlite3

    from platestream.aggregator.similarity import within
    from platestream.aggregator.stores.matching import search_query

    store = SqliteStore(tmp_path / "db.sqlite")
    near = ["ABC1234", "A8C1234", "ABC123", "XABC1234", "ABD1234", "ABC1Z34", "ABQ1Z34"]  # the last: two edits
    store.write([group(plate, index, DAY + index) for index, plate in enumerate(near)])
    found = {m.plate for m in store.search("ABC1234")}
    assert found == {plate for plate in near if within("ABC1234", plate, 1.0) is not None}
    assert "ABQ1Z34" not in found
    query, params = search_query("ABC1234", camera_id=None, since_ms=None, fuzzy=True, mark="?")
    plan = " ".join(row[-1] for row in sqlite3.connect(tmp_path / "db.sqlite").execute("EXPLAIN QUERY PLAN " + query,
                                                                                      params))  # fmt: skip
    assert "plate_candidates_key" in plan  # looked up by key, not by scanning every reading
    assert "SCAN c" not in plan
    store.close()


def test_search_command(tmp_path: Path) -> None:
    database = tmp_path / "db.sqlite"
    SqliteStore(database).write([group("ABC1234", "gate", DAY)])
    runner = CliRunner()
    found = runner.invoke(main, ["search", "ABC1234", "--sqlite-path", str(database)])
    assert found.exit_code == 0, found.output
    assert "2023-11-14T22:13:20+00:00" in found.output
    assert "gate" in found.output
    assert "exact" in found.output
    missing = runner.invoke(main, ["search", "NOPE999", "--sqlite-path", str(database)])
    assert missing.exit_code == 1
    bad_since = runner.invoke(main, ["search", "ABC1234", "--sqlite-path", str(database), "--since", "yesterday"])
    assert bad_since.exit_code == 2
    assert "--since 'yesterday'" in bad_since.output


def test_json_lines_are_partitioned_by_date_and_camera_and_rewritten_whole(tmp_path: Path) -> None:
    records = [group("ABC1234", 1, DAY), group("XYZ9876", 2, DAY), group("QRS5555", 1, DAY + 86_400_000)]
    files = batch_files(records, 3, 42)
    assert sorted(files) == [
        "date=2023-11-14/camera=1/part-003-000000000042.jsonl",
        "date=2023-11-14/camera=2/part-003-000000000042.jsonl",
        "date=2023-11-15/camera=1/part-003-000000000042.jsonl",
    ]
    store = JsonLinesStore(str(tmp_path / "lake"))
    store.write_batch(records[:1], 3, 42)
    store.write_batch(records, 3, 42)  # the replayed batch, now longer, replaces the file
    written = (tmp_path / "lake" / "date=2023-11-14/camera=1/part-003-000000000042.jsonl").read_text().splitlines()
    assert [json.loads(line)["best_plate_number"] for line in written] == ["ABC1234"]


@pytest.mark.parametrize("where", ["folder", "s3"])
def test_a_replayed_batch_shorter_than_the_failed_one_leaves_no_group_in_two_files(
    where: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A batch fails after its files were written; read again, the batch holds fewer groups (one
    camera's) and the rest come in the next batch, under the next name: the failed batch's other
    file must not stay beside it."""
    if where == "s3":
        endpoint = request.getfixturevalue("s3_endpoint")
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="lake2")
        store = JsonLinesStore("s3://lake2/alpr", s3_endpoint_url=endpoint)
    else:
        store = JsonLinesStore(str(tmp_path / "lake"))
    records = [group("ABC1234", 1, DAY), group("XYZ9876", 2, DAY + 1000), group("QRS5555", 2, DAY + 2000)]
    store.write_batch(records, 0, 10)  # offsets 10-12; its transaction fails
    store.write_batch(records[:1], 0, 10)  # read again: only offset 10 this time; committed
    store.write_batch(records[1:], 0, 11)  # then 11-12; committed
    store.write_batch([group("LMN4444", 1, DAY + 3000)], 0, 13)  # a later batch keeps the committed ones
    plates = Counter(json.loads(line)["best_plate_number"] for line in _lake_lines(where, tmp_path / "lake", request))
    assert plates == Counter({"ABC1234": 1, "XYZ9876": 1, "QRS5555": 1, "LMN4444": 1})


def _lake_lines(where: str, folder: Path, request: pytest.FixtureRequest) -> list[str]:
    """Every line of the lake's data files."""
    if where == "folder":
        return [line for path in sorted(folder.rglob("*.jsonl")) for line in path.read_text().splitlines()]
    client = boto3.client("s3", endpoint_url=request.getfixturevalue("s3_endpoint"), region_name="us-east-1")
    keys = [item["Key"] for item in client.list_objects_v2(Bucket="lake2", Prefix="alpr/date=")["Contents"]]
    bodies = [client.get_object(Bucket="lake2", Key=key)["Body"].read().decode() for key in keys]
    return [line for body in bodies for line in body.splitlines()]


def test_json_lines_on_s3(s3_endpoint: str) -> None:
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="lake")
    JsonLinesStore("s3://lake/alpr", s3_endpoint_url=s3_endpoint).write_batch([group("ABC1234", 1, DAY)], 0, 5)
    body = client.get_object(Bucket="lake", Key="alpr/date=2023-11-14/camera=1/part-000-000000000005.jsonl")["Body"]
    assert json.loads(body.read())["best_plate_number"] == "ABC1234"


class _Target(http.server.BaseHTTPRequestHandler):
    plan: ClassVar[list[int]] = []
    received: ClassVar[list[dict[str, Any]]] = []
    keys: ClassVar[list[str | None]] = []
    refuse: ClassVar[set[str]] = set()  # plates answered 400
    release: ClassVar[threading.Event | None] = None  # when set: every request waits for it

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.release is not None:
            self.release.wait(60)
        status = self.plan.pop(0) if self.plan else 200
        if body.get("best_plate_number") in self.refuse:
            status = 400
        self.keys.append(self.headers.get("Idempotency-Key"))
        if status == 200:
            self.received.append(body)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def target() -> Iterator[tuple[str, type[_Target]]]:
    handler = type("Handler", (_Target,), {"plan": [], "received": [], "keys": [], "refuse": set(), "release": None})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", handler
    server.shutdown()


def test_webhooks_retry_until_delivered(target: tuple[str, type[_Target]]) -> None:
    url, handler = target
    handler.plan = [503, 500]
    Webhooks([url], attempts=4, backoff_s=0.01).post(group("ABC1234"))
    assert [body["best_plate_number"] for body in handler.received] == ["ABC1234"]
    assert "plate_crop_jpeg" not in handler.received[0]["best_plate"]
    # every attempt, and a replay after a crash, carries the group's key: a receiver can drop repeats
    assert handler.keys == [handler.received[0]["uuids"][0]] * 3


def test_webhooks_give_up_with_the_reason(target: tuple[str, type[_Target]]) -> None:
    url, handler = target
    handler.plan = [400]
    with pytest.raises(WebhookError, match="HTTP 400"):
        Webhooks([url], attempts=4, backoff_s=0.01).post(group("ABC1234"))
    with pytest.raises(WebhookError, match=r"127\.0\.0\.1:9"):
        Webhooks(["http://127.0.0.1:9/none"], attempts=2, backoff_s=0.01).post(group("ABC1234"))


def _send_groups(settings: Any, plates: list[str], *, broken: bool = False) -> None:
    from platestream.kafka import codec, make_producer

    producer = make_producer(settings)
    encode = codec(settings, "alpr_group").encode
    for index, plate in enumerate(plates):
        record = group(plate, index + 1, DAY + 5000 * index)
        producer.send(settings.topic_name("alpr_group"), encode(record), key=str(record["camera_id"]).encode())
    if broken:
        producer.send(settings.topic_name("alpr_group"), b"\x01 broken", key=b"1")
    producer.flush()
    producer.close()


def _store_settings(kafka_settings: Any, tmp_path: Path) -> Any:
    from platestream.settings import StoreSettings

    return StoreSettings(**kafka_settings.model_dump(), sqlite_path=tmp_path / "db.sqlite", health_port=0,
                         group_id=kafka_settings.topic_prefix + "store",
                         transactional_id=kafka_settings.topic_prefix + "store-0",
                         jsonl_target=str(tmp_path / "lake"))  # fmt: skip


def _webhook_settings(kafka_settings: Any, url: str, **overrides: Any) -> Any:
    from platestream.settings import WebhookSettings

    values = {"health_port": 0, "group_id": kafka_settings.topic_prefix + "webhooks",
              "transactional_id": kafka_settings.topic_prefix + "webhooks-0", "webhook_urls": url,
              "webhook_backoff_s": 0.01} | overrides  # fmt: skip
    return WebhookSettings(**kafka_settings.model_dump(), **values)


@pytest.mark.kafka
def test_store_writer_fills_the_stores_from_the_topic(kafka_settings: Any, tmp_path: Path) -> None:
    from platestream.aggregator.store_service import StoreWriter
    from platestream.kafka import read_topic

    _send_groups(kafka_settings, ["ABC1234", "XYZ9876"], broken=True)
    writer = StoreWriter(_store_settings(kafka_settings, tmp_path))
    writer.run(until_idle_s=3)
    assert writer.written == 2
    assert [m.plate for m in SqliteStore(tmp_path / "db.sqlite").search("ABC1234", fuzzy=False)] == ["ABC1234"]
    assert len(list((tmp_path / "lake").rglob("*.jsonl"))) == 2
    letters = read_topic(kafka_settings, "dead_letter", "dead_letter", count=1, timeout_s=10)
    assert letters[0][1]["reason"] == "schema_invalid"


@pytest.mark.kafka
def test_webhooks_deliver_each_group_once_and_dead_letter_what_a_target_refuses(
    kafka_settings: Any, target: tuple[str, type[_Target]]
) -> None:
    from platestream.aggregator.webhook_service import WebhookSender
    from platestream.kafka import read_topic

    url, handler = target
    handler.refuse = {"BAD0000"}
    _send_groups(kafka_settings, ["ABC1234", "BAD0000", "XYZ9876"], broken=True)
    sender = WebhookSender(_webhook_settings(kafka_settings, url))
    sender.run(until_idle_s=3)
    assert sorted(body["best_plate_number"] for body in handler.received) == ["ABC1234", "XYZ9876"]
    assert all(key for key in handler.keys)  # every delivery carries its Idempotency-Key
    letters = [letter for _, letter in read_topic(kafka_settings, "dead_letter", "dead_letter", count=2, timeout_s=10)]
    assert sorted(letter["reason"] for letter in letters) == ["schema_invalid", "webhook_failed"]
    refused = next(letter for letter in letters if letter["reason"] == "webhook_failed")
    assert "HTTP 400" in refused["error_message"]
    assert refused["original_value"]  # the group's own bytes: it can be sent again
    assert sender.totals == {"delivered": 2, "failed": 1}


@pytest.mark.kafka
def test_a_webhook_target_that_hangs_does_not_hold_up_the_store(
    kafka_settings: Any, tmp_path: Path, target: tuple[str, type[_Target]]
) -> None:
    from platestream.aggregator.store_service import StoreWriter
    from platestream.aggregator.webhook_service import WebhookSender

    url, handler = target
    handler.release = threading.Event()
    plates = [f"HNG{n:04d}" for n in range(20)]
    _send_groups(kafka_settings, plates)
    sender = WebhookSender(_webhook_settings(kafka_settings, url, webhook_timeout_s=60.0))
    delivering = threading.Thread(target=sender.run, kwargs={"until_idle_s": 3}, daemon=True)
    delivering.start()
    writer = StoreWriter(_store_settings(kafka_settings, tmp_path))
    writer.run(until_idle_s=3)
    assert writer.written == 20  # every group stored ...
    assert handler.received == []  # ... while the webhook target has answered nothing yet
    handler.release.set()
    delivering.join(60)
    assert sorted(body["best_plate_number"] for body in handler.received) == plates


def test_postgres_store_upserts_and_searches_like_sqlite(postgres_dsn: str, tmp_path: Path) -> None:
    import uuid

    import psycopg

    from platestream.aggregator.stores import PostgresStore

    schema = f"s{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    dsn = f"{postgres_dsn}?options=-csearch_path%3D{schema}"
    records = [group("ABC1234", 1, DAY), group("AB01234", 2, DAY + 1000), group("QRS5555", 3, DAY + 3000,
               candidates=("ABC1234",))]  # fmt: skip
    postgres = PostgresStore(dsn)
    postgres.write(records)
    postgres.write(records[:1])
    sqlite = SqliteStore(tmp_path / "db.sqlite")
    sqlite.write(records)
    for query in ("ABC1234", "ABO1234", "abc-1234"):
        assert postgres.search(query) == sqlite.search(query)
    assert [m.plate for m in postgres.search("ABC1234", camera_id="1", fuzzy=False)] == ["ABC1234"]
    with psycopg.connect(dsn) as check:
        assert check.execute("SELECT count(*) FROM plate_groups").fetchone() == (3,)
    postgres.close()


def test_the_webhook_sender_needs_http_urls_and_says_so() -> None:
    from platestream.errors import ConfigError
    from platestream.settings import WebhookSettings, load

    with pytest.raises(ConfigError, match="PLATESTREAM_WEBHOOK_URLS: is required"):
        load(WebhookSettings)
    with pytest.raises(ConfigError, match="webhook URL 'ftp://x' is not http"):
        load(WebhookSettings, webhook_urls="https://a.example/hook, ftp://x")
    assert load(WebhookSettings, webhook_urls="https://a.example/hook, http://b:8080/h").urls == [
        "https://a.example/hook",
        "http://b:8080/h",
    ]


def test_the_search_benchmark_finds_each_misread_plate_in_a_filled_store(tmp_path: Path) -> None:
    from platestream.aggregator.bench_search import bench_search

    store = SqliteStore(tmp_path / "bench.sqlite")
    result = bench_search(store, 500, queries=20)
    store.close()
    assert result.passes == 500
    assert result.fuzzy_hits >= 1.0  # a look-alike or one character off still finds its pass
    assert result.exact_p50_ms <= result.exact_p99_ms
