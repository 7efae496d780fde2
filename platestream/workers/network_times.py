"""Where an engine's time goes: each of the default engine's networks timed per call
(`platestream bench accuracy --profile`).

The engine's ONNX Runtime sessions are wrapped where they are held, so the engine runs as it always
does; the wrappers count each network's calls and the seconds spent inside them. What is left of
an image's time (decoding aside) is the engine's own Python: resizing, cropping, the choice among
candidates.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from platestream.errors import PlatestreamError


class ProfileError(PlatestreamError):
    """The engine has no networks this profile knows how to time."""


@dataclass
class NetworkTime:
    """One network's calls and the seconds spent in them."""

    calls: int = 0
    seconds: float = 0.0


@dataclass
class NetworkTimes:
    """Calls and seconds per network, by name, in the order the networks were wrapped."""

    networks: dict[str, NetworkTime] = field(default_factory=dict)

    def reset(self) -> None:
        for timing in self.networks.values():
            timing.calls, timing.seconds = 0, 0.0

    def as_dict(self) -> dict[str, dict[str, float]]:
        """Per network: its calls and the milliseconds spent in them (`bench accuracy --json`)."""
        return {name: {"calls": t.calls, "ms": round(t.seconds * 1000, 1)} for name, t in self.networks.items()}

    def summary(self, images: int) -> str:
        """Per network that ran: ms per call and calls per image, e.g. `plate detector 13.7 ms x
        1.06`; "none ran" where no network did."""
        parts = [
            f"{name} {timing.seconds * 1000 / timing.calls:.1f} ms x {timing.calls / max(1, images):.2f}"
            for name, timing in self.networks.items()
            if timing.calls
        ]
        return ", ".join(parts) or "none ran"


class TimedSession:
    """An ONNX Runtime session whose `run` calls are counted and timed; everything else is the
    session's own."""

    def __init__(self, session: Any, timing: NetworkTime) -> None:
        self._session = session
        self._timing = timing

    def run(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return self._session.run(*args, **kwargs)
        finally:
            self._timing.calls += 1
            self._timing.seconds += time.perf_counter() - started

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


def time_networks(engine: Any) -> NetworkTimes:
    """Wrap the default engine's networks (`DefaultEngine`) in place and return their timings:
    the plate detector, PP-OCR's text-line detector, each reader (PP-OCR's with the plate head,
    each region's own, the project's whole-plate reader). A network two readers share (the
    text-line detector) is timed once."""
    from platestream.workers.engine.default import DefaultEngine

    if not isinstance(engine, DefaultEngine):
        raise ProfileError(f"--profile times the default engine's networks; the {engine.name!r} engine has none")
    times = NetworkTimes()
    wrapped: dict[int, TimedSession] = {}

    def wrap(holder: Any, attribute: str, name: str) -> None:
        session = getattr(holder, attribute)
        if id(session) not in wrapped:
            times.networks[name] = NetworkTime()
            wrapped[id(session)] = TimedSession(session, times.networks[name])
        setattr(holder, attribute, wrapped[id(session)])

    wrap(engine.detector, "session", "plate detector")
    readers = ([("reader", engine.reader)] if engine.reader is not None else []) + [
        (f"reader {region}", reader) for region, reader in engine.region_readers.items()
    ]
    for name, reader in readers:
        wrap(reader, "detector", "line detector")
        wrap(reader, "reader", name)
    if engine.plate_reader is not None:
        wrap(engine.plate_reader, "session", "plate reader")
    return times
