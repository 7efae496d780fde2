"""`python -m platestream.healthcheck`: the images' HEALTHCHECK, exit 0 when the service's /healthz on
PLATESTREAM_HEALTH_PORT answers 200. A service with the endpoint off (port 0) has nothing to check.

Standard library only: it runs every 30 s and must start fast."""

from __future__ import annotations

import os
import sys
import urllib.request


def check(port: str) -> int:
    if port == "0":
        return 0
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=4) as answer:
            return 0 if answer.status == 200 else 1
    except OSError as error:  # refused, timed out, or a 503 (HTTPError): unhealthy
        print(f"unhealthy: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(check(os.environ.get("PLATESTREAM_HEALTH_PORT", "8080")))
