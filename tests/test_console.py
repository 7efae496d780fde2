"""The web console over HTTP: login, roles, CSRF, paging, search, uploads, cameras (a real server
over a real store; the browser test is test_console_browser.py)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from platestream.aggregator.stores import SqliteStore
from tests.console_tools import EDITOR, PASSWORD, VIEWER, console_settings, csrf_of, serving
from tests.factories import alpr_group

DAY = 1_700_000_000_000


def passing(plate: str, start: int, *, camera: int = 7, candidates: tuple[str, ...] = ()) -> dict[str, Any]:
    record = alpr_group(camera)
    record.update(best_plate_number=plate, epoch_start=start, epoch_end=start + 900,
                  uuids=[f"u-{camera}-{start}", f"u-{camera}-{start + 900}"], plate_indexes=[0, 0],
                  candidates=[{"plate": p, "confidence": 90.0 - i, "matches_template": 1}
                              for i, p in enumerate((plate, *candidates))])  # fmt: skip
    return record


def plates_in(html: str) -> list[str]:
    return re.findall(r'<td class="plate"><a href="/pass\?id=[^"]+">([A-Z0-9]+)</a>', html)


def test_no_plate_data_without_a_login_and_a_wrong_password_is_refused(tmp_path: Path) -> None:
    settings = console_settings(tmp_path)
    SqliteStore(settings.database).write([passing("ABC1234", DAY)])
    with serving(settings) as console:
        for path in ("/", "/search?plate=ABC1234", "/pass?id=u-7-1700000000000/0", "/pass/plate.jpg?id=x",
                     "/cameras", "/alerts", "/audit"):  # fmt: skip
            answer = requests.get(console.url + path, allow_redirects=False)
            assert answer.status_code == 303, path
            assert answer.headers["location"].startswith("/login?next="), path
            assert "ABC1234" not in answer.text
        assert requests.get(console.url + "/api/alerts").status_code == 401
        session = requests.Session()
        form = session.get(console.url + "/login")
        refused = session.post(console.url + "/login", data={"csrf": csrf_of(form.text), "username": EDITOR,
                                                             "password": "wrong password!"})  # fmt: skip
        assert refused.status_code == 401
        assert "Wrong user name or password" in refused.text
        unknown = session.post(console.url + "/login", data={"csrf": csrf_of(form.text), "username": "nobody",
                                                             "password": PASSWORD})  # fmt: skip
        assert unknown.status_code == 401
        assert session.get(console.url + "/", allow_redirects=False).status_code == 303  # still not logged in
        viewer = console.login(VIEWER)  # malformed parameters: a clear refusal, not a server error
        assert viewer.get(console.url + "/rows?after=yesterday").status_code == 400
        assert viewer.get(console.url + "/api/alerts?after=-1").json() == {
            "error": "after must be a whole number of ms"
        }
        assert viewer.get(console.url + "/pass/frame.jpg?id=x").status_code == 404
        assert viewer.get(console.url + "/?before=garbage").status_code == 200  # a cursor it cannot read: page 1
        headers = session.get(console.url + "/login").headers
        assert "frame-ancestors 'none'" in headers["content-security-policy"]  # no framing, no inline script
        assert (headers["x-frame-options"], headers["cache-control"]) == ("DENY", "private, no-store")


def test_a_login_returns_to_the_page_asked_for_and_never_to_another_site(tmp_path: Path) -> None:
    with serving(console_settings(tmp_path)) as console:
        for wanted, landed in (("/search?plate=ABC1234", "/search?plate=ABC1234"), ("//evil.example/x", "/"),
                               ("https://evil.example/", "/")):  # fmt: skip
            session = requests.Session()
            form = session.get(console.url + "/login")
            answer = session.post(console.url + "/login", allow_redirects=False, data={
                "csrf": csrf_of(form.text), "username": VIEWER, "password": PASSWORD, "next": wanted})  # fmt: skip
            assert answer.headers["location"] == landed


def test_forms_without_the_sessions_csrf_token_are_refused(tmp_path: Path) -> None:
    settings = console_settings(tmp_path)
    with serving(settings) as console:
        session = console.login(EDITOR)
        for data in ({"name": "stolen"}, {"name": "stolen", "csrf": "forged"}):
            refused = session.post(console.url + "/alerts/lists", data=data)
            assert refused.status_code == 403
            assert "CSRF token is missing or wrong" in refused.text
        other = console.login(EDITOR)  # another session's token does not do either
        token = csrf_of(other.get(console.url + "/alerts").text)
        assert session.post(console.url + "/alerts/lists", data={"name": "stolen", "csrf": token}).status_code == 403
        login = requests.post(console.url + "/login", data={"username": EDITOR, "password": PASSWORD})
        assert login.status_code == 403  # the login form too
        assert "stolen" not in session.get(console.url + "/alerts").text


def test_a_viewer_sees_the_lists_but_cannot_change_them(tmp_path: Path) -> None:
    with serving(console_settings(tmp_path)) as console:
        editor = console.login(EDITOR)
        created = editor.post(
            console.url + "/alerts/lists",
            data={"name": "stolen", "csrf": csrf_of(editor.get(console.url + "/alerts").text)},
        )
        assert created.status_code == 200
        viewer = console.login(VIEWER)
        page = viewer.get(console.url + "/alerts")
        assert "stolen" in page.text
        assert 'action="/alerts/upload"' not in page.text  # no forms to change anything
        token = csrf_of(page.text)
        for path, data in (("/alerts/lists", {"name": "mine"}), ("/alerts/entries", {"list": "stolen", "plate": "X1"}),
                           ("/alerts/lists/delete", {"name": "stolen"})):  # fmt: skip
            refused = viewer.post(console.url + path, data=data | {"csrf": token})
            assert refused.status_code == 403, path
            assert "Only editors change alert lists" in refused.text
        audit = editor.get(console.url + "/audit").text
        assert audit.count("create_list") == 1  # only the editor's change happened and was audited
        assert "delete_list" not in audit


def test_an_upload_keeps_the_good_lines_and_reports_each_bad_one_by_number(tmp_path: Path) -> None:
    with serving(console_settings(tmp_path)) as console:
        session = console.login(EDITOR)
        token = csrf_of(session.get(console.url + "/alerts").text)
        csv = b"plate,description,list\nABC1234,red Golf\nXYZ-9876,blue van,wanted\n,nothing\nA,B,C,D\nKLM5555\n"
        answer = session.post(console.url + "/alerts/upload", data={"csrf": token, "list": "stolen"},
                              files={"file": ("hotlist.csv", csv, "text/csv")})  # fmt: skip
        assert answer.history[0].status_code == 303  # sent on to the alerts page: a reload uploads nothing
        assert "hotlist.csv: 3 plates added; 2 lines refused" in answer.text
        assert "3 plates added" not in session.get(console.url + "/alerts").text  # the report is shown once
        assert "line 4: no plate" in answer.text
        assert "line 5: 4 fields" in answer.text
        stolen = session.get(console.url + "/alerts/list?name=stolen").text
        assert ("ABC1234" in stolen, "KLM5555" in stolen, "XYZ9876" in stolen) == (True, True, False)
        assert "XYZ9876" in session.get(console.url + "/alerts/list?name=wanted").text
        binary = session.post(console.url + "/alerts/upload", data={"csrf": token, "list": "stolen"},
                              files={"file": ("photo.csv", b"\xff\xd8\xff\xe0 not text", "text/csv")})  # fmt: skip
        assert binary.status_code == 400
        assert "not UTF-8 text" in binary.text
        audit = session.get(console.url + "/audit").text
        assert "2: ABC1234, KLM5555" in audit  # who added what, per list
        many = "\n".join(f"bad,line,{n},x" for n in range(40)).encode() + b"\nGOOD123\n"
        answer = session.post(console.url + "/alerts/upload", data={"csrf": token, "list": "stolen"},
                              files={"file": ("big.csv", many, "text/csv")})  # fmt: skip
        assert "big.csv: 1 plate added; 40 lines refused" in answer.text
        assert "line 15: 4 fields" in answer.text
        assert "... and 25 more lines refused" in answer.text


def test_recent_passes_page_through_every_pass_once_newest_first(tmp_path: Path) -> None:
    settings = console_settings(tmp_path)
    store = SqliteStore(settings.database)
    records = [passing(f"PAS{n:04d}", DAY + n * 1000, camera=1 + n % 3) for n in range(130)]
    records += [passing("TIE0001", DAY + 500_000, camera=9), passing("TIE0002", DAY + 500_000, camera=8)]
    store.write(records)
    with serving(settings) as console:
        session = console.login(VIEWER)
        seen: list[str] = []
        page = session.get(console.url + "/")
        pages = 0
        while True:
            pages += 1
            seen += plates_in(page.text)
            following = re.search(r'href="(/\?before=[^"]+)" id="older"', page.text)
            if not following:
                break
            page = session.get(console.url + following.group(1).replace("&amp;", "&"))
        assert pages == 3
        assert len(seen) == len(set(seen)) == 132  # two passes of one millisecond both shown, once
        assert seen[:2] == ["TIE0001", "TIE0002"] or seen[:2] == ["TIE0002", "TIE0001"]
        assert seen[2:5] == ["PAS0129", "PAS0128", "PAS0127"]
        by_camera = plates_in(session.get(console.url + "/?camera=2").text)
        assert by_camera[:2] == ["PAS0127", "PAS0124"]
        window = plates_in(session.get(console.url + "/?from=2023-11-14T22:13:20&to=2023-11-14T22:13:22").text)
        assert window == ["PAS0002", "PAS0001", "PAS0000"]
        bad = session.get(console.url + "/?from=yesterday")
        assert bad.status_code == 400
        assert "is not a time" in bad.text


def test_search_finds_a_misread_plate_and_a_pass_page_shows_its_reads(tmp_path: Path) -> None:
    settings = console_settings(tmp_path)
    SqliteStore(settings.database).write(
        [passing("AB12CDE", DAY, candidates=("A812CDE",)), passing("ZZZ9999", DAY + 1)]
    )
    with serving(settings) as console:
        session = console.login(VIEWER)
        found = session.get(console.url + "/search", params={"plate": "ab-12-c0e"})  # D read as 0
        assert plates_in(found.text) == ["AB12CDE"]
        assert found.url.endswith("/search?plate=ab-12-c0e")  # a URL to share: the same search for anyone
        exact = session.get(console.url + "/search", params={"plate": "AB12C0E", "fuzzy": "0"})
        assert plates_in(exact.text) == []
        by_candidate = session.get(console.url + "/search", params={"plate": "A812CDE", "fuzzy": "0"})
        assert "read A812CDE" in by_candidate.text
        link = re.search(r'href="(/pass\?id=[^"]+)"', found.text)
        assert link
        page = session.get(console.url + link.group(1))
        assert page.status_code == 200
        assert "<svg" in page.text  # the path drawn in the frame
        assert page.text.count("<polyline") == 1
        assert "A812CDE" in page.text  # the candidates' vote
        assert "u-7-1700000000900" in page.text  # each read's frame
        assert session.get(console.url + "/pass?id=nope").status_code == 404


def test_a_pass_keeps_its_crops_within_the_bound_and_for_the_retention(tmp_path: Path) -> None:
    import base64

    import cv2
    import numpy as np

    from platestream.aggregator.stores.matching import image_row

    def jpeg(height: int, width: int, seed: int) -> str:
        noise = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
        return base64.b64encode(cv2.imencode(".jpg", noise)[1].tobytes()).decode()

    record = passing("ABC1234", DAY)
    record["best_plate"]["plate_crop_jpeg"] = jpeg(40, 160, 1)
    record["vehicle_crop_jpeg"] = jpeg(400, 400, 2)
    plate_bytes = len(base64.b64decode(record["best_plate"]["plate_crop_jpeg"]))
    kept = image_row("g", record, 10 * 1024 * 1024)
    assert kept is not None
    assert (bool(kept[2]), bool(kept[3])) == (True, True)
    over = image_row("g", record, plate_bytes + 10)  # room for the plate only: the vehicle goes
    assert over is not None
    assert (bool(over[2]), over[3]) == (True, None)
    assert image_row("g", record, 10) is None
    settings = console_settings(tmp_path)
    store = SqliteStore(settings.database)
    store.write([record, passing("OLD0001", DAY - 40 * 86_400_000)])
    stored = store._db.execute("SELECT record FROM plate_groups WHERE plate = 'ABC1234'").fetchone()[0]
    assert 'plate_crop_jpeg": null' in stored  # the crops live apart from the record's JSON
    with serving(settings) as console:
        session = console.login(VIEWER)
        listed = session.get(console.url + "/").text
        crop = re.search(r'<img src="(/pass/plate.jpg\?id=[^"]+)"', listed)
        assert crop
        image = session.get(console.url + crop.group(1).replace("&amp;", "&"))
        assert (image.status_code, image.headers["content-type"]) == (200, "image/jpeg")
        decoded = cv2.imdecode(np.frombuffer(image.content, np.uint8), cv2.IMREAD_COLOR)
        assert decoded is not None
        assert decoded.shape[:2] == (40, 160)
        anonymous = requests.get(console.url + crop.group(1).replace("&amp;", "&"), allow_redirects=False)
        assert anonymous.status_code == 303  # no image without a login
    assert store.forget_images_before(DAY - 1) == 0
    assert store.forget_images_before(DAY + 1) == 1  # past the retention: the crops go, the pass stays
    assert [m.plate for m in store.search("ABC1234", fuzzy=False)] == ["ABC1234"]


def test_a_removed_account_is_logged_out_at_its_next_page(tmp_path: Path) -> None:
    from platestream.aggregator.stores.database import Database
    from platestream.console.accounts import Accounts

    settings = console_settings(tmp_path)
    with serving(settings) as console:
        session = console.login(VIEWER)
        assert session.get(console.url + "/", allow_redirects=False).status_code == 200
        assert Accounts(Database(settings)).remove(VIEWER)
        assert session.get(console.url + "/", allow_redirects=False).status_code == 303


def test_passwords_are_stored_hashed_and_weak_ones_refused(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from platestream.aggregator.stores.database import Database
    from platestream.cli import main

    database = tmp_path / "db.sqlite"
    runner = CliRunner()
    made = runner.invoke(main, ["users", "add", "ann", "--role", "editor", "--sqlite-path", str(database)],
                         input="a long enough secret\na long enough secret\n")  # fmt: skip
    assert made.exit_code == 0, made.output
    assert "ann can log in as editor" in made.output
    weak = runner.invoke(main, ["users", "add", "bob", "--sqlite-path", str(database)], input="short\nshort\n")
    assert weak.exit_code == 2
    assert "at least 10 characters" in weak.output
    listed = runner.invoke(main, ["users", "list", "--sqlite-path", str(database)])
    assert listed.output == "ann\teditor\n"
    from platestream.settings import StoreLocation, load

    (stored,) = Database(load(StoreLocation, sqlite_path=database)).rows("SELECT password_hash FROM console_users")
    assert stored[0].startswith("scrypt$")
    assert "a long enough secret" not in stored[0]


@pytest.mark.kafka
def test_the_cameras_page_shows_streams_from_heartbeats_and_the_pipelines_lag(
    kafka_settings: Any, tmp_path: Path
) -> None:
    from platestream.console.cameras import CameraWatch
    from platestream.kafka import codec, make_producer
    from platestream.settings import ConsoleSettings
    from tests.factories import heartbeat

    now = int(time.time() * 1000)
    beat = heartbeat() | {"timestamp": now, "agent_hostname": "cam-host-1", "video_streams": [
        {"camera_id": 11, "camera_name": "Gate north", "url": "rtsp://cam/1", "fps": 9.5, "is_streaming": True,
         "last_update": now},
        {"camera_id": 12, "camera_name": "Gate south", "url": "rtsp://cam/2", "fps": 0.0, "is_streaming": False,
         "last_update": now - 600_000}]}  # fmt: skip
    producer = make_producer(kafka_settings)
    producer.send(kafka_settings.topic_name("heartbeat"), codec(kafka_settings, "heartbeat").encode(beat), key=b"a")
    producer.send(kafka_settings.topic_name("heartbeat"), b"\x00 not a heartbeat", key=b"b")  # skipped, not fatal
    producer.flush()
    producer.close()
    settings = ConsoleSettings(**kafka_settings.model_dump(), sqlite_path=tmp_path / "db.sqlite")
    watch = CameraWatch.start(settings)
    try:
        deadline = time.monotonic() + 30

        def measured() -> bool:
            return bool(watch.lag()) and not any(lag.error for lag in watch.lag())

        while (not watch.snapshot(now_ms=now) or not measured()) and time.monotonic() < deadline:
            time.sleep(0.2)
        with serving(settings, watch) as console:
            page = console.login(VIEWER).get(console.url + "/cameras").text
    finally:
        watch.stop()
    assert "Gate north" in page
    assert re.search(r"<td>11</td><td>Gate north</td><td>cam-host-1</td><td class=\"ok\">yes</td><td>9.5</td>", page)
    assert re.search(r"<td>12</td><td>Gate south</td><td>cam-host-1</td><td class=\"bad\">no</td>", page)
    assert "<td>workers</td><td>frames</td><td>not started</td>" in page  # no worker has committed yet


def test_the_console_and_alert_benchmarks_print_their_figures(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from platestream.cli import main

    runner = CliRunner()
    pages = runner.invoke(main, ["bench", "console", "--passes", "300", "--requests", "10",
                                 "--sqlite-path", str(tmp_path / "bench.db")])  # fmt: skip
    assert pages.exit_code == 0, pages.output
    assert "sqlite: 300 passes loaded" in pages.output
    for page in ("first page", "deep in the history", "one camera", "search, exact", "search, fuzzy"):
        assert re.search(rf"{page}.* p50 +[0-9.]+ ms  p99 +[0-9.]+ ms  \(10 requests\)", pages.output), page
    matching = runner.invoke(main, ["bench", "alerts", "--entries", "2000", "--passes", "2000"])
    assert matching.exit_code == 0, matching.output
    found = re.search(
        r"2,000 passes against 2,000 listed plates: ([0-9,]+) passes/s on one core \(([0-9,]+) alerts", matching.output
    )
    assert found, matching.output
    assert int(found.group(2).replace(",", "")) >= 50  # about one pass in twenty is listed


def test_a_page_deep_in_the_history_seeks_the_index_instead_of_scanning_it(tmp_path: Path) -> None:
    import sqlite3

    from platestream.aggregator.stores.database import Database
    from platestream.console.passes import Cursor, Passes

    settings = console_settings(tmp_path)
    SqliteStore(settings.database).write([passing(f"PAS{n:04d}", DAY + n * 1000) for n in range(20)])
    statements: list[str] = []
    database = Database(settings)
    database._conn.set_trace_callback(statements.append)
    found = Passes(database).recent(before=Cursor(DAY + 10_000, "u-7-1700000010000/0"), limit=3)
    assert [p.plate for p in found] == ["PAS0009", "PAS0008", "PAS0007"]
    query = next(s for s in statements if "ORDER BY g.epoch_start DESC" in s)
    plan = " ".join(row[-1] for row in sqlite3.connect(settings.database).execute("EXPLAIN QUERY PLAN " + query))
    # A seek to the cursor in the (time, pass) index: the millionth page costs what the first does.
    assert re.search(r"SEARCH g USING (COVERING )?INDEX plate_groups_recent \(\(epoch_start,group_id\)<", plan), plan


def test_the_consoles_queries_read_postgresql_as_they_read_sqlite(postgres_dsn: str, tmp_path: Path) -> None:
    import base64
    import uuid

    import psycopg

    from platestream.aggregator.stores import PostgresStore
    from platestream.aggregator.stores.database import Database
    from platestream.console.passes import Cursor, Passes
    from platestream.settings import StoreLocation, load

    schema = f"c{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    dsn = f"{postgres_dsn}?options=-csearch_path%3D{schema}"
    records = [passing(f"PAS{n:04d}", DAY + n * 1000, camera=1 + n % 2) for n in range(30)]
    records.append(passing("AB12CDE", DAY + 40_000, candidates=("A812CDE",)))
    records[-1]["best_plate"]["plate_crop_jpeg"] = base64.b64encode(b"\xff\xd8 a jpeg \xff\xd9").decode()
    PostgresStore(dsn).write(records)
    results: dict[str, Any] = {}
    for kind, location in (("postgres", load(StoreLocation, postgres_dsn=dsn)),
                           ("sqlite", load(StoreLocation, sqlite_path=tmp_path / "db.sqlite"))):  # fmt: skip
        if kind == "sqlite":
            SqliteStore(location.database).write(records)
        passes = Passes(Database(location))
        first = passes.recent(limit=5)
        results[kind] = (
            [p.plate for p in first],
            [p.plate for p in passes.recent(before=Cursor(first[-1].epoch_start, first[-1].group_id), limit=3)],
            [p.plate for p in passes.recent(camera="2", limit=3)],
            [(p.plate, p.distance) for p in passes.search("AB12C0E")],
            passes.image(first[0].group_id, "plate"),
            passes.one(first[0].group_id)["best_plate_number"],  # type: ignore[index]
            passes.cameras(now_ms=DAY + 60_000),
        )
    assert results["postgres"] == results["sqlite"]
    assert results["postgres"][0] == ["AB12CDE", "PAS0029", "PAS0028", "PAS0027", "PAS0026"]
    assert results["postgres"][4] == b"\xff\xd8 a jpeg \xff\xd9"
