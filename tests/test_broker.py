"""The local broker: a start that fails says why, with the broker's own log."""

from __future__ import annotations

from pathlib import Path

import pytest

from platestream.broker import LocalBroker
from platestream.errors import BrokerError


def test_a_broker_that_cannot_start_fails_with_its_log(tmp_path: Path) -> None:
    broker = LocalBroker(tmp_path / "broken", heap_mb=1)  # the JVM refuses so small a heap
    with pytest.raises(BrokerError, match=r"exited with code \d+ while starting(.|\n)*heap"):
        broker.start(timeout_s=60)
    assert broker.state() is None


def test_status_and_stop_without_a_broker(tmp_path: Path) -> None:
    broker = LocalBroker(tmp_path)
    assert broker.state() is None
    assert broker.stop() is False
