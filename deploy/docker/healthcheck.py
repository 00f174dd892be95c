"""Container health check for every Radscribe process (standard library only).

With no arguments it asks the web app's ``/healthz`` (``RADSCRIBE_HTTP_PORT``) and, when no
web server listens there, the ``/metrics`` endpoint that processes without a web server serve
on ``RADSCRIBE_METRICS_PORT``; the process is healthy when one answers 200.  ``--url`` checks
a URL and ``--tcp PORT`` that a listener (the DICOM node, the HL7 listener) accepts
connections; each may repeat, and all that are given must pass.  Exit status 0 is healthy,
1 unhealthy, as Docker's HEALTHCHECK expects.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

HTTP_OK = 200
TIMEOUT_SECONDS = 4.0
LOCALHOST = "127.0.0.1"
DEFAULT_HTTP_PORT = "8000"
DEFAULT_METRICS_PORT = "9108"


def url_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
            return bool(response.status == HTTP_OK)
    except (urllib.error.URLError, OSError):
        return False


def tcp_ok(port: int) -> bool:
    try:
        with socket.create_connection((LOCALHOST, port), timeout=TIMEOUT_SECONDS):
            return True
    except OSError:
        return False


def default_urls() -> list[str]:
    http_port = os.environ.get("RADSCRIBE_HTTP_PORT", DEFAULT_HTTP_PORT)
    metrics_port = os.environ.get("RADSCRIBE_METRICS_PORT", DEFAULT_METRICS_PORT)
    return [
        f"http://{LOCALHOST}:{http_port}/healthz",
        f"http://{LOCALHOST}:{metrics_port}/metrics",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", action="append", help="a URL that must answer 200")
    parser.add_argument("--tcp", type=int, action="append", help="a local port that must accept")
    args = parser.parse_args(argv)
    if args.tcp or args.url:
        healthy = all(tcp_ok(port) for port in args.tcp or ()) and all(
            url_ok(url) for url in args.url or ()
        )
    else:
        healthy = any(url_ok(url) for url in default_urls())
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
