"""A console served on a free port over a store of its own, for the console's tests."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from platestream.aggregator.stores.database import Database
from platestream.broker import free_port
from platestream.console.accounts import Accounts
from platestream.settings import ConsoleSettings

EDITOR, VIEWER, PASSWORD = "ed", "vic", "correct horse battery"


@dataclass
class Served:
    url: str
    settings: ConsoleSettings

    def login(self, user: str = EDITOR, password: str = PASSWORD) -> requests.Session:
        session = requests.Session()
        form = session.get(f"{self.url}/login")
        answer = session.post(f"{self.url}/login", data={"csrf": csrf_of(form.text), "username": user,
                                                         "password": password, "next": "/"})  # fmt: skip
        assert answer.status_code == 200, answer.text
        return session


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


@contextmanager
def serving(settings: ConsoleSettings, cameras: Any = None) -> Iterator[Served]:
    import uvicorn

    from platestream.console.app import console_app

    accounts = Accounts(Database(settings))
    accounts.add(EDITOR, PASSWORD, "editor")
    accounts.add(VIEWER, PASSWORD, "viewer")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(console_app(settings, cameras), host="127.0.0.1", port=port,
                                           log_level="warning"))  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield Served(f"http://127.0.0.1:{port}", settings)
    finally:
        server.should_exit = True
        thread.join(10)


def console_settings(tmp_path: Path, **overrides: Any) -> ConsoleSettings:
    from platestream.settings import load

    return load(ConsoleSettings, sqlite_path=tmp_path / "db.sqlite", console_session_secret="s" * 40, **overrides)
