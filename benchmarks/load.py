"""A closed-loop HTTP/1.1 load generator on asyncio streams: keep-alive, one request in flight."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency of uvicorn[standard]
    uvloop = None  # type: ignore[assignment]

RequestFactory = Callable[[int], bytes]
"""Builds the raw bytes of request number n (headers and body)."""


@dataclass
class LoadResult:
    requests: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    bodies: dict[int, bytes] = field(default_factory=dict)
    """One sample body per status, to tell expected errors from unexpected ones."""
    codes: Counter[str] = field(default_factory=Counter)
    """Problem `code` of each non-2xx response."""

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, fraction: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
        return ordered[index]


def build_request(
    method: str,
    url: str,
    *,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> bytes:
    parts = urlsplit(url)
    lines = [
        f"{method} {parts.path or '/'}{'?' + parts.query if parts.query else ''} HTTP/1.1",
        f"Host: {parts.netloc}",
        "Connection: keep-alive",
    ]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        lowered = name.strip().lower()
        if lowered == b"content-length":
            length = int(value.strip())
        elif lowered == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
        return status, body
    return status, await reader.readexactly(length) if length else b""


def problem_code(body: bytes) -> str:
    marker = b'"code":"'
    start = body.find(marker)
    if start < 0:
        return "?"
    start += len(marker)
    return body[start : body.find(b'"', start)].decode("latin-1")


async def run_load(
    url: str,
    make_request: RequestFactory,
    *,
    connections: int,
    duration: float | None = None,
    total: int | None = None,
    warmup: float = 0.0,
) -> LoadResult:
    """Keep `connections` connections busy until `duration` passes or `total` requests are sent.

    Request numbers are handed out in order, so with `total` every number is sent exactly once.
    """
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    result = LoadResult()
    counter = 0
    measuring_from = time.perf_counter() + warmup
    stop_at = None if duration is None else measuring_from + duration

    def next_number() -> int | None:
        nonlocal counter
        if total is not None and counter >= total:
            return None
        if stop_at is not None and time.perf_counter() >= stop_at:
            return None
        counter += 1
        return counter - 1

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while (number := next_number()) is not None:
                payload = make_request(number)
                sent = time.perf_counter()
                writer.write(payload)
                status, body = await read_response(reader)
                done = time.perf_counter()
                if sent < measuring_from:
                    continue
                result.requests += 1
                result.latencies.append(done - sent)
                result.statuses[status] += 1
                if status >= 300:
                    result.codes[problem_code(body)] += 1
                result.bodies.setdefault(status, body[:300])
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    finished = time.perf_counter()
    result.seconds = finished - max(started, measuring_from)
    return result


def new_event_loop() -> asyncio.AbstractEventLoop:
    return uvloop.new_event_loop() if uvloop is not None else asyncio.new_event_loop()
