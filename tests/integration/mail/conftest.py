"""A running SMTP sink per module, emptied (messages, faults, counters) before each test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.support.servers import SmtpSink, running_smtp_sink


@pytest.fixture(scope="module")
def sink() -> Iterator[SmtpSink]:
    with running_smtp_sink() as running:
        yield running


@pytest.fixture
async def sink_api(sink: SmtpSink) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sink.http_url, timeout=10) as client:
        for path in ("/api/messages", "/api/faults", "/api/counters"):
            (await client.delete(path)).raise_for_status()
        yield client
