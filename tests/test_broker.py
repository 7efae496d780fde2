"""The local broker: a start that fails says why, with the broker's own log."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from platestream.broker import LocalBroker, new_cluster_id
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


def test_cluster_ids_never_start_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    # One random UUID in 64 encodes to an id starting with "-", which the storage tool's
    # command line reads as an option; such a draw is replaced, as Kafka's own tool does.
    draws = iter([uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=b"\x10" * 16)])
    monkeypatch.setattr(uuid, "uuid4", lambda: next(draws))
    cluster_id = new_cluster_id()
    assert cluster_id == "EBAQEBAQEBAQEBAQEBAQEA"
    assert len(cluster_id) == 22
