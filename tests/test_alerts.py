"""Alert lists: matching passes against them, keeping them in the store, the matcher on the broker."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from platestream.aggregator.stores.database import Database
from platestream.alerts.lists import AlertListError, AlertStore
from platestream.alerts.matching import AlertList, Entry, Matcher, alert_record, parse_entries_csv
from platestream.schemas import Codec
from platestream.settings import StoreLocation, load
from tests.factories import alpr_group

DAY = 1_700_000_000_000


def passing(plate: str, *candidates: str, camera: int = 7, start: int = DAY) -> dict[str, Any]:
    record = alpr_group(camera)
    record.update(best_plate_number=plate, best_confidence=91.0, epoch_start=start, epoch_end=start + 900,
                  uuids=[f"u-{camera}-{start}", f"u-{camera}-{start + 900}"], plate_indexes=[0, 0],
                  candidates=[{"plate": p, "confidence": 91.0 - 5 * i, "matches_template": 1}
                              for i, p in enumerate((plate, *candidates))])  # fmt: skip
    return record


def test_a_pass_matches_exactly_by_a_candidate_or_by_a_lookalike_where_the_list_allows() -> None:
    matcher = Matcher([
        AlertList("stolen", False, (Entry("stolen", "ABC1234", "red Golf"), Entry("stolen", "XYZ9876"))),
        AlertList("wanted", True, (Entry("wanted", "8RT4400", "fraud"),)),
    ])  # fmt: skip
    (exact,) = matcher.match(passing("ABC1234"))
    assert (exact.entry.description, exact.how, exact.distance) == ("red Golf", "exact", 0.0)
    (second,) = matcher.match(passing("XYZ9B76", "XYZ9876"))  # misread; the truth was the runner-up
    assert (second.how, second.reading) == ("candidate", "XYZ9876")
    (lookalike,) = matcher.match(passing("BRT4400"))  # 8 read as B: one look-alike swap
    assert (lookalike.entry.plate, lookalike.how, lookalike.distance) == ("8RT4400", "lookalike", 0.3)
    assert matcher.match(passing("A8C1234")) == []  # the same swap on an exact-only list: no alert
    assert matcher.match(passing("BRT44OO")) == []  # two swaps are not "one look-alike edit"
    assert matcher.match(passing("8RT440")) == []  # a character lost is no look-alike
    assert matcher.match(passing("QQQ1111")) == []


def test_one_alert_per_entry_by_its_closest_match_and_one_per_list() -> None:
    matcher = Matcher([AlertList("a", True, (Entry("a", "ABC1234"),)), AlertList("b", False, (Entry("b", "ABC1234"),))])
    hits = matcher.match(passing("ABC1234", "A8C1234", "ABC1Z34"))
    assert [(hit.entry.list_name, hit.how) for hit in hits] == [("a", "exact"), ("b", "exact")]


def test_an_alert_record_fits_its_contract_and_names_the_pass() -> None:
    matcher = Matcher([AlertList("stolen", False, (Entry("stolen", "ABC1234", "red Golf"),))])
    group = passing("ABC1234")
    record = alert_record(group, matcher.match(group)[0])
    assert record["alert_id"] == f"{group['uuids'][0]}/0|stolen|ABC1234"
    assert record["pass"]["pass_id"] == f"{group['uuids'][0]}/0"
    assert Codec("alerts").decode(Codec("alerts").encode(record)) == record


def test_csv_upload_keeps_good_lines_and_reports_bad_ones_by_number() -> None:
    text = ("plate,description,list\n"
            "abc-1234,red Golf\n"
            "\n"
            ",no plate here\n"
            "XYZ9876,\"stolen, then seen\",wanted\n"
            "TOOLONGPLATE123,x\n"
            "ABC1234,again\n"
            "A,B,C,D\n"
            "ÄÖÜ123,umlauts\n"
            "KLM5\n")  # fmt: skip
    entries, problems = parse_entries_csv(text, "stolen")
    assert [(e.list_name, e.plate, e.description) for e in entries] == [
        ("stolen", "ABC1234", "red Golf"),
        ("wanted", "XYZ9876", "stolen, then seen"),
        ("stolen", "KLM5", ""),
    ]
    assert [(p.line, p.reason) for p in problems] == [
        (4, "no plate: the first field must hold letters or digits"),
        (6, "plate 'TOOLONGPLATE123' is longer than 12 characters"),
        (7, "ABC1234 is already listed above in 'stolen'"),
        (8, "4 fields: expected plate,description,list"),
        (9, "plate 'ÄÖÜ123' holds characters other than A-Z and 0-9"),
    ]
    assert problems[3].text == "A,B,C,D"  # the line itself, to find it in the file


def _location(tmp_path: Path) -> StoreLocation:
    return load(StoreLocation, sqlite_path=tmp_path / "db.sqlite")


def _exercise_the_store(lists: AlertStore) -> None:
    start = lists.revision()
    lists.create_list("stolen", lookalike=True, user="ed")
    with pytest.raises(AlertListError, match="already a list named 'stolen'"):
        lists.create_list("stolen", lookalike=False, user="ed")
    lists.add_entries([Entry("stolen", "ABC1234", "red Golf"), Entry("stolen", "XYZ9876")], user="ed")
    lists.add_entries([Entry("stolen", "ABC1234", "red Golf, dented")], user="ann")  # re-listed: new description
    with pytest.raises(AlertListError, match="no alert list named 'nope'"):
        lists.add_entries([Entry("nope", "ABC1234")], user="ed")
    lists.remove_entry("stolen", "xyz-9876", user="ann")
    with pytest.raises(AlertListError, match="XYZ9876 is not on 'stolen'"):
        lists.remove_entry("stolen", "XYZ9876", user="ann")
    assert lists.revision() != start
    (only,) = lists.lists()
    assert (only.name, only.lookalike, only.entries) == (
        "stolen",
        True,
        (Entry("stolen", "ABC1234", "red Golf, dented"),),
    )
    audit = [(line.username, line.action, line.detail) for line in reversed(lists.audit())]
    assert audit == [("ed", "create_list", "look-alikes match"), ("ed", "add_entries", "2: ABC1234, XYZ9876"),
                     ("ann", "add_entries", "1: ABC1234"), ("ann", "remove_entry", "XYZ9876")]  # fmt: skip
    group = passing("ABC1234")
    record = alert_record(group, Matcher(lists.lists()).match(group)[0])
    lists.write_alerts([record])
    lists.write_alerts([record])  # a replayed batch: still one alert
    ((raised, stored),) = lists.recent_alerts()
    assert stored == record
    assert lists.recent_alerts(raised_after_ms=raised) == []
    lists.delete_list("stolen", user="ed")
    assert lists.lists() == []
    assert lists.audit()[0].action == "delete_list"


def test_lists_entries_audit_and_alerts_in_sqlite(tmp_path: Path) -> None:
    _exercise_the_store(AlertStore(Database(_location(tmp_path))))


def test_lists_entries_audit_and_alerts_in_postgres(postgres_dsn: str) -> None:
    import uuid

    import psycopg

    schema = f"s{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    location = load(StoreLocation, postgres_dsn=f"{postgres_dsn}?options=-csearch_path%3D{schema}")
    _exercise_the_store(AlertStore(Database(location)))


def _send_groups(settings: Any, groups: list[dict[str, Any]], *, broken: bool = False) -> None:
    from platestream.kafka import codec, make_producer

    producer = make_producer(settings)
    encode = codec(settings, "alpr_group").encode
    for record in groups:
        producer.send(settings.topic_name("alpr_group"), encode(record), key=str(record["camera_id"]).encode())
    if broken:
        producer.send(settings.topic_name("alpr_group"), b"\x01 broken", key=b"1")
    producer.flush()
    producer.close()


def alert_settings(kafka_settings: Any, tmp_path: Path, **overrides: Any) -> Any:
    from platestream.settings import AlertSettings

    prefix = kafka_settings.topic_prefix
    values = {"health_port": 0, "sqlite_path": tmp_path / "db.sqlite", "group_id": prefix + "alerts",
              "transactional_id": prefix + "alerts-0"} | overrides  # fmt: skip
    return AlertSettings(**kafka_settings.model_dump(), **values)


@pytest.mark.kafka
def test_the_matcher_raises_each_alert_once_on_the_topic_and_in_the_store(kafka_settings: Any, tmp_path: Path) -> None:
    from platestream.alerts.service import AlertMatcher
    from platestream.kafka import read_topic

    settings = alert_settings(kafka_settings, tmp_path)
    lists = AlertStore(Database(settings))
    lists.create_list("stolen", lookalike=True, user="ed")
    lists.add_entries([Entry("stolen", "ABC1234", "red Golf"), Entry("stolen", "8RT4400")], user="ed")
    _send_groups(kafka_settings, [passing("ABC1234", start=DAY), passing("QQQ1111", start=DAY + 10_000),
                                  passing("BRT4400", camera=8, start=DAY + 20_000)], broken=True)  # fmt: skip
    AlertMatcher(settings).run(until_idle_s=3)
    alerts = [record for _, record in read_topic(kafka_settings, "alerts", "alerts", count=2, timeout_s=20)]
    assert sorted((a["entry"]["plate"], a["match"]["how"], a["pass"]["best_plate_number"]) for a in alerts) == [
        ("8RT4400", "lookalike", "BRT4400"), ("ABC1234", "exact", "ABC1234")]  # fmt: skip
    assert {a["alert_id"] for _, a in lists.recent_alerts()} == {a["alert_id"] for a in alerts}
    letters = read_topic(kafka_settings, "dead_letter", "dead_letter", count=1, timeout_s=10)
    assert letters[0][1]["reason"] == "schema_invalid"

    # A list changed while the matcher runs applies to the passes after the change, without a restart.
    matcher = AlertMatcher(settings)
    running = threading.Thread(target=matcher.run, kwargs={"until_idle_s": 6}, daemon=True)
    running.start()
    lists.add_entries([Entry("stolen", "NEW0001", "added later")], user="ann")
    _send_groups(kafka_settings, [passing("NEW0001", start=DAY + 30_000), passing("ABC1234", start=DAY + 40_000)])
    running.join(60)
    alerts = [record for _, record in read_topic(kafka_settings, "alerts", "alerts", count=4, timeout_s=20)]
    assert sorted(a["pass"]["best_plate_number"] for a in alerts) == ["ABC1234", "ABC1234", "BRT4400", "NEW0001"]
    assert len({a["alert_id"] for a in alerts}) == 4  # the first run's alerts were not raised again
    assert len(lists.recent_alerts()) == 4


@pytest.mark.kafka
def test_alerts_go_to_webhooks_with_their_id_as_idempotency_key(kafka_settings: Any, tmp_path: Path) -> None:
    import http.server
    import json

    from platestream.aggregator.webhook_service import WebhookSender
    from platestream.alerts.service import AlertMatcher
    from platestream.settings import WebhookSettings

    received: list[tuple[str | None, dict[str, Any]]] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append((self.headers.get("Idempotency-Key"), body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings = alert_settings(kafka_settings, tmp_path)
    lists = AlertStore(Database(settings))
    lists.create_list("stolen", lookalike=False, user="ed")
    lists.add_entries([Entry("stolen", "ABC1234", "red Golf")], user="ed")
    _send_groups(kafka_settings, [passing("ABC1234"), passing("QQQ1111", start=DAY + 10_000)])
    AlertMatcher(settings).run(until_idle_s=3)
    hooks = WebhookSettings(**kafka_settings.model_dump(), health_port=0, webhook_source="alerts",
                            webhook_urls=f"http://127.0.0.1:{server.server_address[1]}/alert",
                            group_id=kafka_settings.topic_prefix + "alert-hooks",
                            transactional_id=kafka_settings.topic_prefix + "alert-hooks-0")  # fmt: skip
    WebhookSender(hooks).run(until_idle_s=3)
    server.shutdown()
    ((key, body),) = received
    assert key == body["alert_id"]
    assert (body["entry"]["description"], body["pass"]["best_plate_number"]) == ("red Golf", "ABC1234")


@pytest.mark.kafka
@pytest.mark.slow
def test_a_matcher_killed_mid_stream_raises_every_alert_once(kafka_settings: Any, tmp_path: Path) -> None:
    """SIGKILL between batches' database writes and commits: after a restart every alert is on the
    topic once (read_committed) and in the table once."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from collections import Counter

    from platestream.kafka import read_topic

    settings = alert_settings(kafka_settings, tmp_path)
    lists = AlertStore(Database(settings))
    listed = [f"LST{n:04d}" for n in range(200)]
    lists.add_entries([Entry("stolen", plate) for plate in listed], user="ed", create_missing=True)
    groups = [passing(listed[n // 5] if n % 5 == 0 else f"OTH{n:04d}", camera=n % 4, start=DAY + n * 1000)
              for n in range(1000)]  # fmt: skip
    _send_groups(kafka_settings, groups)
    env = os.environ | {
        "PLATESTREAM_KAFKA_BOOTSTRAP": kafka_settings.kafka_bootstrap,
        "PLATESTREAM_TOPIC_PREFIX": settings.topic_prefix,
        "PLATESTREAM_GROUP_ID": settings.group_id, "PLATESTREAM_TRANSACTIONAL_ID": settings.transactional_id,
        "PLATESTREAM_SQLITE_PATH": str(settings.database), "PLATESTREAM_BATCH_SIZE": "10",
        "PLATESTREAM_HEALTH_PORT": "0", "PLATESTREAM_TRANSACTION_TIMEOUT_MS": "10000",
    }  # fmt: skip

    def start(name: str) -> subprocess.Popen[bytes]:
        log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        return subprocess.Popen([sys.executable, "-m", "platestream", "alerts"], env=env, stdout=log, stderr=log)

    first = start("first")
    deadline = time.monotonic() + 120
    while len(lists.recent_alerts(limit=1000)) < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    raised_before = len(lists.recent_alerts(limit=1000))
    assert 0 < raised_before < 200, "the matcher finished before the crash: nothing was tested"
    second = start("second")
    try:
        alerts = read_topic(kafka_settings, "alerts", "alerts", count=200, timeout_s=180)
    finally:
        second.terminate()
        second.wait(30)
    counted = Counter(record["alert_id"] for _, record in alerts)
    assert len(counted) == 200, (tmp_path / "second.log").read_text()[-2000:]
    assert max(counted.values()) == 1  # none twice on the topic
    assert sorted(record["entry"]["plate"] for _, record in alerts) == listed
    assert len(lists.recent_alerts(limit=1000)) == 200  # and once each in the table
