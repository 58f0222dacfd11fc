"""ASGI middleware: one structured log line and metrics per request, with a request id."""

from __future__ import annotations

import logging
import os
import time
from typing import Any, cast

import msgspec
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import Counter, Histogram

from eventhunting.structured_logging import log_fields

logger = logging.getLogger("eventhunting.api.requests")

REQUESTS = Counter(
    "eventhunting_http_requests_total",
    "HTTP requests by route and status.",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "eventhunting_http_request_seconds",
    "HTTP request duration by route.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)

REQUEST_ID_HEADER = b"x-request-id"
MAX_REQUEST_ID_LENGTH = 64

# Labelled children of the metrics, looked up once per (method, route[, status]): `labels()`
# validates and locks on every call. Routes are templates, so these stay small.
_request_counters: dict[tuple[str, str, int], Any] = {}
_latency_histograms: dict[tuple[str, str], Any] = {}


class RequestLine(msgspec.Struct):
    """The fields of the per-request log line, in the order they are written."""

    request_id: str
    method: str
    path: str
    route: str
    status: int
    duration_ms: float


def route_template(scope: Scope) -> str:
    handler: Any = scope.get("route_handler")
    paths = getattr(handler, "paths", None)
    if paths:
        return str(min(paths))
    return "unmatched"


def incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            return value.decode("latin-1")[:MAX_REQUEST_ID_LENGTH] or None
    return None


def record_metrics(method: str, route: str, status: int, duration: float) -> None:
    counter = _request_counters.get((method, route, status))
    if counter is None:
        counter = _request_counters[method, route, status] = REQUESTS.labels(
            method, route, str(status)
        )
    counter.inc()
    histogram = _latency_histograms.get((method, route))
    if histogram is None:
        histogram = _latency_histograms[method, route] = LATENCY.labels(method, route)
    histogram.observe(duration)


def request_log_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = incoming_request_id(scope) or os.urandom(16).hex()
        request_id_header = (REQUEST_ID_HEADER, request_id.encode("latin-1"))
        status = 500

        async def send_with_request_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message.get("headers")
                if isinstance(headers, list):
                    headers.append(request_id_header)
                else:
                    message = cast(
                        Message, {**message, "headers": [*(headers or ()), request_id_header]}
                    )
            await send(message)

        try:
            await app(scope, receive, send_with_request_id)
        finally:
            duration = time.perf_counter() - started
            method = str(scope.get("method", ""))
            route = route_template(scope)
            record_metrics(method, route, status, duration)
            log_fields(
                logger,
                logging.INFO,
                "request",
                RequestLine(
                    request_id=request_id,
                    method=method,
                    path=scope["path"],
                    route=route,
                    status=status,
                    duration_ms=round(duration * 1000, 3),
                ),
            )

    return middleware
