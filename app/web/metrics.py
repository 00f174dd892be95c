"""HTTP request metrics of the web app: rate, errors and latency per route.

A plain ASGI middleware (it sees streaming responses too).  Requests are labelled with the
route *template* (``/studies/{study_id}``), never the raw path, so label values stay few and
carry no identifiers; requests that match no route share the label ``unmatched``.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI
from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED_ROUTE = "unmatched"
SERVER_ERROR = 500

HTTP_REQUESTS = Counter(
    "radscribe_http_requests_total",
    "HTTP requests answered by the web app, by method, route template and status code.",
    ["method", "route", "status"],
)
HTTP_REQUEST_SECONDS = Histogram(
    "radscribe_http_request_duration_seconds",
    "Time from receiving an HTTP request to the end of its response, by method and route.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


def route_label(scope: Scope) -> str:
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


class HttpMetricsMiddleware:
    """Counts and times every HTTP request; an exception counts as a 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = SERVER_ERROR

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            method, route = scope["method"], route_label(scope)
            HTTP_REQUESTS.labels(method=method, route=route, status=str(status)).inc()
            HTTP_REQUEST_SECONDS.labels(method=method, route=route).observe(
                time.perf_counter() - started
            )


def install_http_metrics(app: FastAPI) -> None:
    app.add_middleware(HttpMetricsMiddleware)
