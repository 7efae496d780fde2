"""The images' HEALTHCHECK: the service's /healthz on PLATESTREAM_HEALTH_PORT answers 200.

A service run with the health endpoint off (port 0) or a one-off command has nothing to check."""

import os
import sys
import urllib.request

port = os.environ.get("PLATESTREAM_HEALTH_PORT", "8080")
if port == "0":
    sys.exit(0)
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=4) as answer:
        sys.exit(0 if answer.status == 200 else 1)
except OSError as error:
    print(f"unhealthy: {error}", file=sys.stderr)
    sys.exit(1)
