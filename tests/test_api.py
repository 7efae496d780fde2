"""`platestream serve` over real HTTP: each dialect with the request forms its documentation shows,
the documented fields and types, the plate of a rendered image, and every error status from the
input that should produce it."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from platestream.api.app import running_server as running_api
from platestream.api.dialects import RequestError
from platestream.api.guard import MonthlyUsage, RateLimiter, check_image_url
from platestream.broker import free_port
from platestream.settings import ApiSettings, Settings
from platestream.workers.engine import Engine
from tests.worker_tools import SharedEngine, plate_jpeg

TOKEN = "API_TOKEN"  # what seed 003's examples send
SECRET = "cloud-secret-1"


def api_settings(**overrides: Any) -> ApiSettings:
    values: dict[str, Any] = {"api_tokens": f"{TOKEN},{SECRET}", "country": "eu", "api_rate_limit_per_minute": 1000}
    return ApiSettings.model_validate(values | overrides)


@pytest.fixture(scope="module")
def api(engine: Engine) -> Iterator[str]:
    with running_api(api_settings(), lambda: SharedEngine(engine)) as url:
        yield url


@pytest.fixture(scope="module")
def car(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("api") / "car.jpg"
    path.write_bytes(plate_jpeg("AB12CDE", seed=2))
    return path


# OpenALPR web service (seed 000) ------------------------------------------------------------------


def test_openalpr_web_service_answers_one_alpr_results(api: str, car: Path) -> None:
    for path in ("/alpr", "/"):
        with car.open("rb") as image:
            answer = requests.post(api + path, files={"image": image}, headers={"Authorization": f"Token {TOKEN}"})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["version"], body["data_type"]) == (2, "alpr_results")
        assert isinstance(body["epoch_time"], int)
        assert abs(body["epoch_time"] - time.time() * 1000) < 60_000, "epoch_time: when it was processed"
        assert (body["img_width"], body["img_height"]) == (1280, 720)
        assert body["regions_of_interest"] == [{"x": 0, "y": 0, "width": 1280, "height": 720}]
        (plate,) = body["results"]
        assert plate["plate"] == "AB12CDE"
        assert plate["matches_template"] in (0, 1)
        assert plate["plate_index"] == 0
        assert len(plate["coordinates"]) == 4
        assert {"plate", "confidence", "matches_template"} == set(plate["candidates"][0])
        assert "uuid" not in body, "the web service's form has no agent fields"


# OpenALPR Cloud API (seed 002) --------------------------------------------------------------------


def test_openalpr_cloud_api_with_a_file_and_with_base64(api: str, car: Path) -> None:
    query = {"secret_key": SECRET, "tasks": "plate", "country": "eu", "topn": "5", "return_image": "0"}
    with car.open("rb") as image:
        by_file = requests.post(api + "/v1/recognize", params=query, files={"image": image})
    by_base64 = requests.post(api + "/v1/recognize", params=query,
                              data={"image_bytes": base64.b64encode(car.read_bytes()).decode()})  # fmt: skip
    for answer in (by_file, by_base64):
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert isinstance(body["total_processing_time"], float)
        assert (body["img_width"], body["img_height"]) == (1280, 720)
        assert body["credit_cost"] == 1
        assert isinstance(body["credits_monthly_used"], int)
        assert isinstance(body["credits_monthly_total"], int)
        assert body["color"] == body["make"] == body["makemodel"] == []
        plate = body["plate"]
        assert (plate["version"], plate["data_type"]) == (2, "alpr_results")
        assert plate["results"][0]["plate"] == "AB12CDE"
        assert len(plate["results"][0]["candidates"]) <= 5
        for header in ("X-RateLimit-Limit", "X-Ratelimit-Remaining", "X-Ratelimit-Reset"):
            assert answer.headers[header].isdigit()
    assert by_base64.json()["credits_monthly_used"] == by_file.json()["credits_monthly_used"] + 1


def test_openalpr_cloud_api_returns_the_image_and_reads_comma_countries(api: str, car: Path) -> None:
    query = {"secret_key": SECRET, "tasks": "plate", "country": "eu,us", "return_image": "1"}
    with car.open("rb") as image:
        answer = requests.post(api + "/v1/recognize", params=query, files={"image": image})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert base64.b64decode(body["image_bytes"]) == car.read_bytes()
    assert body["plate"]["results"][0]["plate"] == "AB12CDE"


@pytest.mark.parametrize(("query", "status", "says"), [
    ({"tasks": "plate", "country": "eu"}, 401, "token"),
    ({"secret_key": "wrong", "tasks": "plate", "country": "eu"}, 401, "invalid"),
    ({"secret_key": SECRET, "country": "eu"}, 400, "tasks is required"),
    ({"secret_key": SECRET, "tasks": "plate,color", "country": "eu"}, 400, "'color'"),
    ({"secret_key": SECRET, "tasks": "plate", "country": "eu", "topn": "0"}, 400, "topn"),
    ({"secret_key": SECRET, "tasks": "plate", "country": "xx"}, 400, "'xx'"),
    ({"secret_key": SECRET, "tasks": "plate"}, 400, "country is required"),
])  # fmt: skip
def test_openalpr_cloud_api_errors(api: str, car: Path, query: dict[str, str], status: int, says: str) -> None:
    with car.open("rb") as image:
        answer = requests.post(api + "/v1/recognize", params=query, files={"image": image})
    assert answer.status_code == status
    assert says in answer.json()["error"]


def test_openalpr_cloud_api_needs_an_image_and_a_readable_one(api: str) -> None:
    query = {"secret_key": SECRET, "tasks": "plate", "country": "eu"}
    none = requests.post(api + "/v1/recognize", params=query)
    assert none.status_code == 400
    assert "image_bytes" in none.json()["error"]
    broken = requests.post(api + "/v1/recognize", params=query, files={"image": ("x.jpg", b"not an image")})
    assert broken.status_code == 400
    assert "image" in broken.json()["error"]
    bad_base64 = requests.post(api + "/v1/recognize", params=query, data={"image_bytes": "%%%"})
    assert bad_base64.status_code == 400


def test_image_url_is_refused_without_a_connection(engine: Engine) -> None:
    """Off by default; allow-listed but private: refused before anything connects to it."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    try:
        for hosts, says in (("", "disabled"), ("localhost", "private address")):
            settings = api_settings(api_image_url_hosts=hosts)
            with running_api(settings, lambda: SharedEngine(engine)) as url:
                answer = requests.post(url + "/v1/recognize", params={
                    "secret_key": SECRET, "tasks": "plate", "country": "eu",
                    "image_url": f"http://localhost:{port}/car.jpg"})  # fmt: skip
            assert answer.status_code == 400
            assert says in answer.json()["error"]
        with pytest.raises(TimeoutError):
            listener.accept()  # nobody connected
    finally:
        listener.close()


def test_image_url_fetches_from_an_allowed_host_and_follows_only_its_own_redirects(engine: Engine, car: Path) -> None:
    import http.server

    class Images(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/moved":
                self.send_response(302)
                self.send_header("Location", "/car.jpg")
            elif self.path == "/away":
                self.send_response(302)
                self.send_header("Location", "http://elsewhere.example/car.jpg")
            else:
                body = car.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    images = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Images)
    threading.Thread(target=images.serve_forever, daemon=True).start()
    port = images.server_address[1]
    settings = api_settings(api_image_url_hosts="localhost", api_image_url_private=True)
    query = {"secret_key": SECRET, "tasks": "plate", "country": "eu"}
    try:
        with running_api(settings, lambda: SharedEngine(engine)) as url:
            moved = requests.post(url + "/v1/recognize", params=query | {"image_url": f"http://localhost:{port}/moved"})
            away = requests.post(url + "/v1/recognize", params=query | {"image_url": f"http://localhost:{port}/away"})
    finally:
        images.shutdown()
    assert moved.status_code == 200, moved.text
    assert moved.json()["plate"]["results"][0]["plate"] == "AB12CDE"
    assert away.status_code == 400
    assert "another host" in away.json()["error"]


def test_image_url_rules() -> None:
    public = lambda host: ["93.184.215.14"]  # noqa: E731
    assert check_image_url("https://cams.example/a.jpg", frozenset({"cams.example"}), False, public) == (
        "cams.example", "93.184.215.14")  # fmt: skip
    for url, says in (("ftp://cams.example/a.jpg", "http"), ("https://other.example/a.jpg", "not allowed")):
        with pytest.raises(RequestError, match=says):
            check_image_url(url, frozenset({"cams.example"}), False, public)
    for address in ("10.0.0.5", "169.254.169.254", "::1", "192.168.1.2"):
        with pytest.raises(RequestError, match="private"):
            check_image_url("http://cams.example/a.jpg", frozenset({"cams.example"}), False, lambda h: [address])  # noqa: B023
    assert check_image_url("http://cams.example/", frozenset({"cams.example"}), True, lambda h: ["10.0.0.5"])


# Plate Recognizer Snapshot API and SDK (seed 003) ---------------------------------------------------


# Seed 003's Python example, as its users have it: only the URL and the image's path are ours.
SEED_EXAMPLE = """
# pip install requests
import requests
from pprint import pprint
regions = ['gb', 'it'] # Change to your country
with open('/path/to/car.jpg', 'rb') as fp:
    response = requests.post(
        'https://api.platerecognizer.com/v1/plate-reader/',
        data=dict(regions=regions),  # Optional
        files=dict(upload=fp),
        headers={'Authorization': 'Token API_TOKEN'})
pprint(response.json())
"""


def test_plate_recognizer_python_example_unchanged_but_for_the_url(api: str, car: Path) -> None:
    code = SEED_EXAMPLE.replace("https://api.platerecognizer.com", api).replace("/path/to/car.jpg", str(car))
    scope: dict[str, Any] = {}
    exec(compile(code, "seed-003-example", "exec"), scope)
    response = scope["response"]
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body["processing_time"], float)
    assert (body["filename"], body["version"], body["camera_id"]) == ("car.jpg", 1, None)
    assert body["timestamp"].endswith("Z")
    assert set(body["usage"]) == {"max_calls", "calls"}
    (plate,) = body["results"]
    assert plate["plate"] == "ab12cde"
    assert plate["region"]["code"] == "gb"
    assert 0 <= plate["region"]["score"] <= 1
    assert 0 < plate["score"] <= 1
    assert 0 < plate["dscore"] <= 1
    assert set(plate["box"]) == {"xmin", "ymin", "xmax", "ymax"}
    assert plate["box"]["xmin"] < plate["box"]["xmax"]
    assert plate["candidates"][0] == {"score": plate["score"], "plate": "ab12cde"}
    assert set(plate["vehicle"]["box"]) == {"xmin", "ymin", "xmax", "ymax"}


def test_plate_recognizer_base64_upload_strict_config_camera_and_timestamp(api: str, car: Path) -> None:
    form = {"upload": base64.b64encode(car.read_bytes()).decode(), "regions": "fr", "camera_id": "gate-3",
            "timestamp": "2019-08-19T13:11:25", "config": json.dumps({"region": "strict"}), "mmc": "true"}  # fmt: skip
    answer = requests.post(api + "/v1/plate-reader/", data=form, headers={"Authorization": f"Token {TOKEN}"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["camera_id"], body["timestamp"]) == ("gate-3", "2019-08-19T13:11:25")
    # AB12CDE is the form of a French plate (AB-123-CD is not, but @@##@@@ fits no French pattern either):
    # strict mode keeps only readings that fit the region's patterns.
    for plate in body["results"]:
        assert plate["region"]["code"] == "fr"


@pytest.mark.parametrize(("headers", "form", "status", "says"), [
    ({}, {}, 401, "token"),
    ({"Authorization": "Token nope"}, {}, 401, "invalid"),
    ({"Authorization": f"Token {TOKEN}"}, {"config": "{not json"}, 400, "config is not JSON"),
    ({"Authorization": f"Token {TOKEN}"}, {"config": '{"mode": "slow"}'}, 400, "mode"),
    ({"Authorization": f"Token {TOKEN}"}, {"timestamp": "yesterday"}, 400, "ISO 8601"),
])  # fmt: skip
def test_plate_recognizer_errors(api: str, car: Path, headers: dict[str, str], form: dict[str, str], status: int,
                                 says: str) -> None:  # fmt: skip
    with car.open("rb") as image:
        answer = requests.post(api + "/v1/plate-reader/", data=form, files={"upload": image}, headers=headers)
    assert answer.status_code == status
    assert says in answer.json()["detail"]


def test_plate_recognizer_info_and_statistics(api: str) -> None:
    info = requests.get(api + "/info/").json()
    assert set(info) == {"version", "license_key", "webhooks"}
    stats = requests.get(api + "/v1/statistics/", headers={"Authorization": f"Token {TOKEN}"})
    assert stats.status_code == 200
    usage = stats.json()["usage"]
    assert set(usage) == {"month", "year", "calls", "resets_on"}
    assert isinstance(stats.json()["total_calls"], int)


# Limits: size, pixels, queue, time, rate, month ----------------------------------------------------


def test_oversized_bodies_and_images_answer_413(engine: Engine, car: Path) -> None:
    settings = api_settings(max_image_bytes=60_000, max_image_pixels=1_000_000)
    with running_api(settings, lambda: SharedEngine(engine)) as url:
        huge = requests.post(url + "/alpr", files={"image": ("big.jpg", b"\xff" * 200_000)},
                             headers={"Authorization": f"Token {TOKEN}"})  # fmt: skip
        assert huge.status_code == 413
        assert "limit" in huge.json()["error"]
        import cv2
        import numpy as np

        _, png = cv2.imencode(".png", np.zeros((1100, 1100, 3), np.uint8))
        wide = requests.post(url + "/v1/plate-reader/", files={"upload": ("wide.png", png.tobytes())},
                             headers={"Authorization": f"Token {TOKEN}"})  # fmt: skip
        assert wide.status_code == 413
        assert "pixels" in wide.json()["detail"]


def test_a_full_queue_answers_429_and_a_slow_engine_504(engine: Engine, car: Path) -> None:
    busy = api_settings(api_queue_size=1, api_engines=1, api_max_batch=1)
    with running_api(busy, lambda: SharedEngine(engine, delay_s=1.5)) as url:

        def call(_: int) -> requests.Response:
            with car.open("rb") as image:
                return requests.post(url + "/alpr", files={"image": image}, headers={"Authorization": f"Token {TOKEN}"})

        with ThreadPoolExecutor(5) as pool:
            answers = list(pool.map(call, range(5)))
        statuses = sorted(a.status_code for a in answers)
        assert 200 in statuses
        assert 429 in statuses
        refused = next(a for a in answers if a.status_code == 429)
        assert refused.headers["Retry-After"] == "1"
    slow = api_settings(api_timeout_s=0.5)
    with running_api(slow, lambda: SharedEngine(engine, delay_s=2.0)) as url, car.open("rb") as image:
        late = requests.post(url + "/alpr", files={"image": image}, headers={"Authorization": f"Token {TOKEN}"})
        assert late.status_code == 504


def test_rate_and_monthly_limits_answer_403_and_402(engine: Engine, car: Path) -> None:
    query = {"secret_key": SECRET, "tasks": "plate", "country": "eu"}
    with running_api(api_settings(api_rate_limit_per_minute=1), lambda: SharedEngine(engine)) as url:
        statuses = []
        for _ in range(2):
            with car.open("rb") as image:
                statuses.append(requests.post(url + "/v1/recognize", params=query, files={"image": image}))
        assert [a.status_code for a in statuses] == [200, 403]
        assert statuses[1].json() == {"error": "Temporary rate-limit exceeded"}
        assert statuses[1].headers["X-Ratelimit-Remaining"] == "0"
    with running_api(api_settings(api_monthly_calls=1), lambda: SharedEngine(engine)) as url:
        codes = []
        for _ in range(2):
            with car.open("rb") as image:
                codes.append(requests.post(url + "/v1/recognize", params=query, files={"image": image}).status_code)
        assert codes == [200, 402]


def test_limits_are_per_token_and_reset() -> None:
    clock = [120.0]
    rate = RateLimiter(2, clock=lambda: clock[0])
    assert [rate.take("a")[0] for _ in range(3)] == [True, True, False]
    assert rate.take("b")[0]
    clock[0] += 60
    assert rate.take("a")[0]
    usage = MonthlyUsage(3, clock=lambda: 1_700_000_000.0)  # 2023-11-14
    assert usage.charge("a", 2)
    assert not usage.charge("a", 2)
    assert usage.used("a") == 2
    assert usage.resets_on() == "2023-12-01T00:00:00Z"


def test_serving_without_tokens_needs_an_explicit_opt_out() -> None:
    from platestream.api.guard import load_tokens
    from platestream.errors import ConfigError

    with pytest.raises(ConfigError, match="PLATESTREAM_API_TOKENS"):
        load_tokens(ApiSettings.model_validate({}))
    assert load_tokens(ApiSettings.model_validate({"api_no_auth": True})) is None


def test_no_token_or_key_reaches_the_logs(car: Path, tmp_path: Path) -> None:
    """`platestream serve` as an operator runs it: its whole output has an access line per request and
    neither the token nor the secret key that came in the header and the query string."""
    import os
    import signal
    import subprocess
    import sys

    port = free_port()
    env = os.environ | {"PLATESTREAM_API_TOKENS": f"{TOKEN},{SECRET}", "PLATESTREAM_API_PORT": str(port),
                        "PLATESTREAM_API_HOST": "127.0.0.1", "PLATESTREAM_COUNTRY": "eu",
                        "PLATESTREAM_LOG_FORMAT": "json"}  # fmt: skip
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen([sys.executable, "-m", "platestream", "serve"], env=env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the server did not become ready"
            try:
                if requests.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.3)
        with car.open("rb") as image:
            query = {"secret_key": SECRET, "tasks": "plate", "country": "eu"}
            cloud = requests.post(url + "/v1/recognize", params=query, files={"image": image})
        with car.open("rb") as image:
            web = requests.post(url + "/alpr", files={"image": image}, headers={"Authorization": f"Token {TOKEN}"})
        assert (cloud.status_code, web.status_code) == (200, 200)
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0, log.read_text()
    output = log.read_text()
    assert output.count('"api_request"') == 2, output
    assert SECRET not in output
    assert TOKEN not in output


# Through the pipeline -------------------------------------------------------------------------------


@pytest.mark.kafka
def test_pipeline_mode_answers_from_the_workers_and_times_out_once(
    kafka_settings: Settings, engine: Engine, car: Path
) -> None:
    """Requests become frames; a running worker's replies answer them; with no worker, 504, and the
    frame was sent once (a worker that comes later recognises it once, into alpr_results)."""
    from platestream.kafka import read_topic
    from tests.worker_tools import running_worker, worker_settings

    settings = api_settings(api_mode="pipeline", api_timeout_s=3.0, **kafka_settings.model_dump())
    headers = {"Authorization": f"Token {TOKEN}"}
    with running_api(settings, lambda: SharedEngine(engine)) as url:
        with car.open("rb") as image:
            late = requests.post(url + "/alpr", files={"image": image}, headers=headers)
        assert late.status_code == 504
        with running_worker(worker_settings(kafka_settings), engine):
            with car.open("rb") as image:
                answer = requests.post(url + "/alpr", files={"image": image}, headers=headers)
            assert answer.status_code == 200, answer.text
            assert answer.json()["results"][0]["plate"] == "AB12CDE"
            with car.open("rb") as image:
                snapshot = requests.post(url + "/v1/plate-reader/", files={"upload": image},
                                         data={"camera_id": "gate-7", "regions": "gb"}, headers=headers)  # fmt: skip
            assert snapshot.status_code == 200, snapshot.text
            assert snapshot.json()["results"][0]["plate"] == "ab12cde"
            results = read_topic(kafka_settings, "alpr_results", "alpr_results", count=3, timeout_s=60)
    frames = read_topic(kafka_settings, "frames", "frame", timeout_s=10)
    assert len(frames) == 3, "each request went to the workers once, the one that timed out too"
    assert sorted(str(r["camera_id"]) for _, r in results) == ["api", "api", "gate-7"]


@pytest.mark.kafka
def test_local_mode_keeps_a_named_camera_s_requests_as_results_for_the_aggregator(
    kafka_settings: Settings, engine: Engine, car: Path
) -> None:
    from platestream.kafka import read_topic

    settings = api_settings(api_camera_results=True, **kafka_settings.model_dump())
    headers = {"Authorization": f"Token {TOKEN}"}
    with running_api(settings, lambda: SharedEngine(engine)) as url:
        for n in range(2):
            with car.open("rb") as image:
                form = {"camera_id": "gate-9", "timestamp": f"2026-01-01T00:00:0{n}Z"}
                answer = requests.post(url + "/v1/plate-reader/", files={"upload": image}, headers=headers, data=form)
            assert answer.status_code == 200, answer.text
        with car.open("rb") as image:  # no camera: nothing kept
            requests.post(url + "/v1/plate-reader/", files={"upload": image}, headers=headers)
    results = read_topic(kafka_settings, "alpr_results", "alpr_results", timeout_s=20)
    assert [(key, r["camera_id"], r["frame_number"], r["epoch_time"]) for key, r in results] == [
        (b"gate-9", "gate-9", 0, 1_767_225_600_000),
        (b"gate-9", "gate-9", 1, 1_767_225_601_000),
    ]
    assert results[0][1]["results"][0]["plate"] == "AB12CDE"
    assert results[0][1]["agent_type"] == "platestream-api"
