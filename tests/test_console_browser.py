"""The console in a real headless browser (Debian's Chromium driven by Playwright) over the whole
pipeline on the real broker: frames -> worker -> aggregator -> store writer and alert matcher ->
console, with alert webhooks. Screenshots of the main pages go to $PLATESTREAM_SCREENSHOTS (or the
test's folder): `make screenshots` writes them to docs/screenshots/."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from platestream.console.cameras import CameraWatch
from platestream.service import Runnable, in_thread
from platestream.workers.engine import Engine
from platestream.workers.engine.images import encode_jpeg
from platestream.workers.synthetic import street_scene
from tests.console_tools import EDITOR, PASSWORD, VIEWER, serving
from tests.worker_tools import SharedEngine, send_frames

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.kafka,
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium: apt-get install chromium (scripts/ensure-system.sh)"),
]


def vehicle_frames(camera: str, plate: str, first_number: int, seed: int) -> list[dict[str, Any]]:
    """Three frames of one vehicle crossing the camera's view now, 200 ms apart."""
    now = int(time.time() * 1000)
    return [{
        "camera_id": camera, "frame_number": first_number + step, "capture_time_ms": now + 200 * step,
        "source_kind": "camera",
        "image": encode_jpeg(street_scene(plate, seed=seed, plate_width=280, center_x=500 + 40 * step), quality=88),
        "image_ref": None, "content_type": "image/jpeg", "source_uri": f"rtsp://{camera}/stream", "options": None,
    } for step in range(3)]  # fmt: skip


def send_heartbeat(settings: Any) -> None:
    """A camera agent's heartbeat, as `platestream produce video` sends one a minute."""
    from platestream.kafka import codec, make_producer
    from tests.factories import heartbeat

    now = int(time.time() * 1000)
    streams = [{"camera_id": name, "camera_name": title, "url": f"rtsp://{name}/stream", "fps": 10.0,
                "is_streaming": True, "last_update": now}
               for name, title in (("gate-north", "Gate north"), ("gate-south", "Gate south"))]  # fmt: skip
    beat = heartbeat() | {"timestamp": now, "agent_hostname": "edge-1", "video_streams": streams}
    producer = make_producer(settings)
    producer.send(settings.topic_name("heartbeat"), codec(settings, "heartbeat").encode(beat), key=b"edge-1")
    producer.flush()
    producer.close()


class Hook(http.server.BaseHTTPRequestHandler):
    received: list[dict[str, Any]]

    def do_POST(self) -> None:
        self.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def pipeline(kafka_settings: Any, tmp_path: Path, engine: Engine) -> Iterator[tuple[Any, list[dict[str, Any]]]]:
    """Worker, aggregator, store writer, alert matcher and alert webhooks running on the broker."""
    from platestream.aggregator.service import Aggregator
    from platestream.aggregator.store_service import StoreWriter
    from platestream.aggregator.webhook_service import WebhookSender
    from platestream.alerts.service import AlertMatcher
    from platestream.settings import (
        AggregatorSettings,
        AlertSettings,
        ConsoleSettings,
        StoreSettings,
        WebhookSettings,
        WorkerSettings,
    )
    from platestream.workers.service import Worker

    received: list[dict[str, Any]] = []
    hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), type("H", (Hook,), {"received": received}))
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    base: dict[str, Any] = kafka_settings.model_dump() | {"health_port": 0}
    prefix, database = kafka_settings.topic_prefix, tmp_path / "db.sqlite"
    services: list[Runnable] = [
        Worker(WorkerSettings(**base, country="eu", group_id=prefix + "workers",
                              transactional_id=prefix + "w0", plate_crop_jpeg=True, vehicle_crop_jpeg=True,
                              batch_wait_ms=50), engine=SharedEngine(engine)),
        Aggregator(AggregatorSettings(**base, country="eu", group_id=prefix + "aggregator",
                                      transactional_id=prefix + "a0", idle_flush_ms=1500)),
        StoreWriter(StoreSettings(**base, sqlite_path=database, group_id=prefix + "store",
                                  transactional_id=prefix + "s0")),
        AlertMatcher(AlertSettings(**base, sqlite_path=database, group_id=prefix + "alerts",
                                   transactional_id=prefix + "al0")),
        WebhookSender(WebhookSettings(**base, webhook_source="alerts", group_id=prefix + "hooks",
                                      transactional_id=prefix + "h0",
                                      webhook_urls=f"http://127.0.0.1:{hook.server_address[1]}/alerts")),
    ]  # fmt: skip
    with ExitStack() as running:
        for service in services:
            running.enter_context(in_thread(service, name=type(service).__name__))
        lag = ",".join(f"{stage}={prefix}{stage}" for stage in ("workers", "aggregator", "store", "alerts"))
        yield ConsoleSettings(**kafka_settings.model_dump(), sqlite_path=database, console_lag_groups=lag), received
    hook.shutdown()


def log_in(page: Page, url: str, user: str) -> None:
    page.goto(url + "/alerts")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")


def watch_a_pass_arrive(page: Page, kafka_settings: Any, shots: Path) -> None:
    """A vehicle passes a camera: its pass appears on the open page, with its plate crop."""
    send_frames(kafka_settings, vehicle_frames("gate-north", "AB12CDE", 0, seed=1))
    row = page.locator("#passes tbody tr", has_text="AB12CDE")
    expect(row).to_have_count(1)
    crop = row.locator("td.crop img")
    expect(crop).to_be_visible()
    assert crop.evaluate("image => image.complete && image.naturalWidth > 0")
    page.screenshot(path=str(shots / "passes.png"), full_page=True)


def search_a_misread_plate(page: Page, url: str, shots: Path) -> None:
    """A misread plate (D read as 0) finds the pass; the pass page draws its path."""
    page.click("nav >> text=Search")
    page.fill("input[name=plate]", "AB12C0E")
    page.click("form.filters button[type=submit]")
    expect(page).to_have_url(url + "/search?plate=AB12C0E&fuzzy=1&camera=&from=&to=")
    expect(page.locator("#results tbody tr")).to_have_count(1)
    page.screenshot(path=str(shots / "search.png"), full_page=True)
    page.click("#results >> text=AB12CDE")
    expect(page.locator("h1")).to_contain_text("AB12CDE")
    expect(page.locator("svg#path polyline")).to_have_count(1)
    expect(page.locator("svg#path image")).to_have_count(1)  # over the best read's vehicle crop
    expect(page.locator("#reads tbody tr")).to_have_count(3)
    page.screenshot(path=str(shots / "pass.png"), full_page=True)


def upload_a_list(page: Page, folder: Path) -> None:
    """An alert list from a CSV with a malformed line: the good line is kept, the bad one named."""
    page.click("nav >> text=Alerts")
    csv = folder / "hotlist.csv"
    csv.write_text("plate,description,list\nKL35PQR,stolen van\nthis,line,has,too many fields\n")
    page.fill("#upload input[name=list]", "stolen")
    page.set_input_files("#upload input[name=file]", str(csv))
    page.click("#upload button[type=submit]")
    expect(page.locator("#upload-report")).to_contain_text("hotlist.csv: 1 plate added; 1 line refused")
    expect(page.locator("#upload-report li")).to_have_text(
        "line 3: 4 fields: expected plate,description,list this,line,has,too many fields"
    )
    expect(page.locator("#lists tbody tr", has_text="stolen")).to_contain_text("1")


def see_the_alert(page: Page, kafka_settings: Any, shots: Path) -> None:
    """The listed plate passes: the banner shows the alert on the open page."""
    send_frames(kafka_settings, vehicle_frames("gate-south", "KL35PQR", 10, seed=2))
    banner = page.locator("#alert-banner")
    expect(banner).to_contain_text("Alert · stolen: KL35PQR (stolen van) seen on camera gate-south")
    page.reload()
    expect(page.locator("#alerts tbody tr", has_text="KL35PQR")).to_have_count(1)
    expect(page.locator("#upload-report")).to_have_count(0)  # the upload's report was shown once
    page.screenshot(path=str(shots / "alerts.png"), full_page=True)
    page.click("nav >> text=Cameras")
    expect(page.locator("#stored tbody tr")).to_have_count(2)
    expect(page.locator("#streams tbody tr", has_text="Gate north")).to_contain_text("yes")
    workers = page.locator("#lag tbody tr", has_text="workers")
    deadline = time.monotonic() + 60  # the lag is measured every 15 s: reload until it has been since the frames
    while "not started" in workers.inner_text() and time.monotonic() < deadline:
        time.sleep(2)
        page.reload()
    expect(workers).to_have_text("workersframes0")  # every frame consumed and committed
    page.screenshot(path=str(shots / "cameras.png"), full_page=True)


def test_an_operator_logs_in_sees_passes_arrive_searches_lists_a_plate_and_is_alerted(
    kafka_settings: Any, pipeline: tuple[Any, list[dict[str, Any]]], tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    from platestream.kafka import read_topic

    settings, webhook_calls = pipeline
    shots = Path(os.environ.get("PLATESTREAM_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    expect.set_options(timeout=90_000)  # a pass needs the worker, the aggregator's idle flush and the store
    send_heartbeat(kafka_settings)
    cameras = CameraWatch.start(settings)
    with serving(settings, cameras) as console, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.goto(console.url + "/")  # no plate data without a login; a wrong password is refused
        expect(page).to_have_url(console.url + "/login?next=%2F")
        page.fill("input[name=username]", EDITOR)
        page.fill("input[name=password]", "not the password")
        page.click("button[type=submit]")
        expect(page.locator(".problem")).to_have_text("Wrong user name or password.")
        page.fill("input[name=username]", EDITOR)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        expect(page.locator("h1")).to_contain_text("Vehicle passes")
        watch_a_pass_arrive(page, kafka_settings, shots)
        search_a_misread_plate(page, console.url, shots)
        upload_a_list(page, tmp_path)
        see_the_alert(page, kafka_settings, shots)
        viewer = browser.new_page()  # a viewer sees the lists but is given nothing to change them with
        log_in(viewer, console.url, VIEWER)
        expect(viewer.locator("#lists")).to_contain_text("stolen")
        expect(viewer.locator("#upload")).to_have_count(0)
        browser.close()
    cameras.stop()

    # The alert is on the topic once and reached the webhook once.
    alerts = [record for _, record in read_topic(kafka_settings, "alerts", "alerts", count=1, timeout_s=30)]
    assert [(a["list_name"], a["entry"]["plate"], a["match"]["how"]) for a in alerts] == [
        ("stolen", "KL35PQR", "exact")
    ]
    deadline = time.monotonic() + 30
    while not webhook_calls and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [call["alert_id"] for call in webhook_calls] == [alerts[0]["alert_id"]]
