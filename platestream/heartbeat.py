"""The OpenALPR agent heartbeat record, from this process and machine."""

from __future__ import annotations

import os
import resource
import socket
import time
from typing import Any

_STARTED = time.time()


def _memory_total() -> int:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _system_uptime() -> int:
    try:
        with open("/proc/uptime") as uptime:
            return int(float(uptime.read().split()[0]))
    except OSError:
        return 0


def heartbeat(
    agent_uid: str,
    agent_version: str,
    agent_type: str,
    *,
    threads_active: int,
    threads_configured: int,
    video_streams: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return {
        "data_type": "heartbeat",
        "agent_uid": agent_uid,
        "agent_version": agent_version,
        "agent_type": agent_type,
        "agent_hostname": socket.gethostname(),
        "timestamp": int(time.time() * 1000),
        "cpu_cores": cores,
        "cpu_usage_percent": round(min(100.0, 100.0 * load / cores), 1),
        "memory_total_bytes": _memory_total(),
        "memory_consumed_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "processing_threads_active": threads_active,
        "processing_threads_configured": threads_configured,
        "system_uptime_seconds": _system_uptime(),
        "daemon_uptime_seconds": int(time.time() - _STARTED),
        "video_streams": video_streams or [],
    }
