"""The OpenALPR agent heartbeat record, from this process and machine, and the agent's uid."""

from __future__ import annotations

import hashlib
import os
import socket
import time
from typing import Any

import psutil

_STARTED = time.time()
_PROCESS = psutil.Process()
psutil.cpu_percent(interval=None)  # the first reading starts the measurement: later ones cover the time since


def install_id(hostname: str | None = None) -> str:
    """A stable 40-hex agent uid, the form of Rekor's /etc/openalpr/install_id: the SHA-1 of the
    host's name, so a StatefulSet pod keeps its uid across restarts while the hostname itself stays
    in the heartbeat's `agent_hostname`."""
    name = hostname if hostname is not None else socket.gethostname()
    return hashlib.sha1(f"platestream-agent:{name}".encode(), usedforsecurity=False).hexdigest()


def heartbeat(
    agent_uid: str,
    agent_version: str,
    agent_type: str,
    *,
    threads_active: int,
    threads_configured: int,
    video_streams: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Machine figures as OpenALPR's agents send them: the CPU's use since the last heartbeat
    (all cores, percent), this process's resident memory, the machine's memory and uptime."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return {
        "data_type": "heartbeat",
        "agent_uid": agent_uid,
        "agent_version": agent_version,
        "agent_type": agent_type,
        "agent_hostname": socket.gethostname(),
        "timestamp": int(time.time() * 1000),
        "cpu_cores": cores,
        "cpu_usage_percent": round(psutil.cpu_percent(interval=None), 1),
        "memory_total_bytes": int(psutil.virtual_memory().total),
        "memory_consumed_bytes": int(_PROCESS.memory_info().rss),
        "processing_threads_active": threads_active,
        "processing_threads_configured": threads_configured,
        "system_uptime_seconds": int(time.time() - psutil.boot_time()),
        "daemon_uptime_seconds": int(time.time() - _STARTED),
        "video_streams": video_streams or [],
    }
