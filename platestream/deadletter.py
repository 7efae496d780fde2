"""Dead-letter records: a rejected input, why, and where it came from. A bad record is a value."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Origin:
    """Where a consumed record came from."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def dead_letter(
    origin: Origin,
    reason: str,
    error: BaseException,
    service: str,
    *,
    reference: str | None = None,
    keep_value: bool = True,
) -> dict[str, Any]:
    return {
        "reason": reason,
        "error_class": type(error).__name__,
        "error_message": str(error)[:4000],
        "original_key": origin.key,
        "original_value": origin.value if keep_value else None,
        "original_reference": reference,
        "source_topic": origin.topic,
        "source_partition": origin.partition,
        "source_offset": origin.offset,
        "time_ms": int(time.time() * 1000),
        "service": service,
    }


def service_name(kind: str) -> str:
    return f"{kind}/{socket.gethostname()}"
