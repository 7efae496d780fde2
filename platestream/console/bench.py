"""`platestream bench console` and `bench alerts`: the console's page times over a store of N passes
(served over HTTP, one request at a time), and the alert matcher's passes/s against a large list."""

from __future__ import annotations

import secrets
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import SecretStr

from platestream.aggregator.bench_search import plates, rows
from platestream.aggregator.simulate import LOOKALIKE
from platestream.aggregator.stores import open_store
from platestream.alerts.matching import AlertList, Entry, Matcher
from platestream.settings import ConsoleSettings


@dataclass(frozen=True)
class PageTimes:
    page: str
    p50_ms: float
    p99_ms: float
    requests: int


def bench_console(settings: ConsoleSettings, passes: int, *, requests_per_page: int = 200,
                  seed: int = 0) -> tuple[float, list[PageTimes]]:  # fmt: skip
    """Load `passes` into an empty store, serve the console, time its pages; (load s, times)."""
    import requests
    import uvicorn

    from platestream.aggregator.stores.database import Database
    from platestream.broker import free_port
    from platestream.console.accounts import Accounts
    from platestream.console.app import console_app

    if settings.console_session_secret is None:  # a secret of its own: no warning about logins ending
        settings = settings.model_copy(update={"console_session_secret": SecretStr(secrets.token_urlsafe(32))})
    texts = plates(passes, seed)
    store = open_store(settings)
    started = time.perf_counter()
    try:
        store.load_rows(*rows(texts, seed))
    finally:
        store.close()
    load_s = time.perf_counter() - started
    Accounts(Database(settings)).add("bench", "bench password", "viewer")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(console_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    url, session = f"http://127.0.0.1:{port}", requests.Session()
    try:
        form = session.get(url + "/login").text
        token = form.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        session.post(url + "/login", data={"csrf": token, "username": "bench", "password": "bench password"})
        rng = np.random.default_rng(seed + 3)
        deep = [f"/?before={1_700_000_000_000 + int(i) * 1000}:g{int(i)}" for i in rng.integers(0, passes, 500)]
        wanted = [texts[int(i)] for i in rng.integers(0, passes, 500)]
        misread = []
        for plate in wanted:
            position = int(rng.integers(len(plate)))
            misread.append(plate[:position] + LOOKALIKE.get(plate[position], "X") + plate[position + 1 :])
        pages = {
            "recent passes, first page": ["/"] * requests_per_page,
            "recent passes, a page deep in the history (keyset)": deep[:requests_per_page],
            "recent passes of one camera": [f"/?camera={int(i)}" for i in rng.integers(0, 50, requests_per_page)],
            "search, exact": [f"/search?plate={p}&fuzzy=0" for p in wanted[:requests_per_page]],
            "search, fuzzy (a look-alike typed)": [f"/search?plate={p}" for p in misread[:requests_per_page]],
        }
        return load_s, [_time_page(session, url, name, paths) for name, paths in pages.items()]
    finally:
        server.should_exit = True
        thread.join(10)


def _time_page(session: Any, url: str, name: str, paths: list[str]) -> PageTimes:
    for path in paths[:5]:
        session.get(url + path).raise_for_status()
    times = []
    for path in paths:
        started = time.perf_counter()
        answer = session.get(url + path)
        answer.raise_for_status()
        times.append((time.perf_counter() - started) * 1000)
    return PageTimes(name, round(statistics.median(times), 1), round(float(np.percentile(times, 99)), 1), len(times))


@dataclass(frozen=True)
class MatchRate:
    entries: int
    passes: int
    alerts: int
    build_s: float
    passes_per_s: float


def bench_alert_matching(entries: int, passes: int, *, seed: int = 0) -> MatchRate:
    """Passes with ten candidates each matched against `entries` listed plates (half on look-alike
    lists), one core; about one pass in twenty is listed or a look-alike of a listed plate."""
    listed = plates(entries, seed)
    started = time.perf_counter()
    half = entries // 2
    matcher = Matcher([AlertList("exact", False, tuple(Entry("exact", p) for p in listed[:half])),
                       AlertList("lookalike", True, tuple(Entry("lookalike", p) for p in listed[half:]))])  # fmt: skip
    build_s = time.perf_counter() - started
    rng = np.random.default_rng(seed + 1)
    others = plates(passes, seed + 7)
    groups = []
    for index in range(passes):
        plate = listed[int(rng.integers(entries))] if rng.random() < 0.05 else others[index]
        if rng.random() < 0.3:  # a look-alike read
            position = int(rng.integers(len(plate)))
            plate = plate[:position] + LOOKALIKE.get(plate[position], plate[position]) + plate[position + 1 :]
        dropped = [plate[:k] + plate[k + 1 :] for k in range(min(9, len(plate)))]  # readings a character short
        candidates = [{"plate": plate, "confidence": 90.0}] + [{"plate": d, "confidence": 50.0} for d in dropped]
        groups.append({"best_plate_number": plate, "best_confidence": 90.0, "candidates": candidates})
    started = time.perf_counter()
    alerts = sum(len(matcher.match(group)) for group in groups)
    elapsed = time.perf_counter() - started
    return MatchRate(entries, passes, alerts, round(build_s, 2), round(passes / elapsed))
