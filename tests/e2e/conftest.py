"""Browser fixtures: Debian's Chromium under Playwright, and the systems the pages talk to."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright

from tests.e2e.payment_system import PaymentSystem, running_payment_system
from tests.e2e.staff_system import StaffSystem, running_staff_system
from tests.support.servers import running_redis

# Debian's package; Playwright never downloads a browser here (no host to fetch one from).
CHROMIUM = Path("/usr/bin/chromium")
# Headless as root in CI: no sandbox (it needs an unprivileged user), no GPU, and nothing
# that reaches out to the network behind the test's back.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Chromium logs every 4xx answer of fetch() as an error; pages expect some (a wrong password,
# a ticket already checked in) and show them. Refused loads (CSP) and script errors count.
ANSWERED_WITH_AN_ERROR = "Failed to load resource: the server responded with a status of"


@dataclass
class PageProblems:
    """What went wrong inside a page: script errors, and loads the browser refused (CSP)."""

    messages: list[str] = field(default_factory=list)

    @classmethod
    def watch(cls, page: Page) -> PageProblems:
        problems = cls()
        page.on("pageerror", lambda error: problems.messages.append(f"page error: {error}"))
        page.on("console", problems.note)
        return problems

    def note(self, message: ConsoleMessage) -> None:
        if message.type == "error" and not message.text.startswith(ANSWERED_WITH_AN_ERROR):
            self.messages.append(f"console: {message.text}")


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    """One headless Chromium for the session (each test opens its own context)."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's chromium"
            " (scripts/test installs it; or apt-get install chromium)"
        )
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A fresh page in a context of its own (no cookies shared between tests), in English."""
    context = await browser.new_context(locale="en-US")
    try:
        yield await context.new_page()
    finally:
        await context.close()


@pytest.fixture(scope="module")
def payment_system(
    tmp_path_factory: pytest.TempPathFactory, mongodb_url: str
) -> Iterator[PaymentSystem]:
    """The API and the payment workers on a Redis of their own, wired to the VNPAY stand-in;
    per module, so its processes do not idle through the rest of the suite."""
    with (
        running_redis(tmp_path_factory.mktemp("e2e-redis")) as redis_url,
        running_payment_system(redis_url, mongodb_url) as system,
    ):
        yield system


@pytest.fixture
async def http(payment_system: PaymentSystem) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the API of `payment_system` (the browser tests' own system)."""
    async with httpx.AsyncClient(base_url=payment_system.api.base_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def staff_system(
    tmp_path_factory: pytest.TempPathFactory, mongodb_url: str
) -> Iterator[StaffSystem]:
    """The API and workers the staff pages (check-in, dashboard) talk to, on a Redis of their
    own, per module."""
    with (
        running_redis(tmp_path_factory.mktemp("e2e-staff-redis")) as redis_url,
        running_staff_system(redis_url, mongodb_url) as system,
    ):
        yield system


@pytest.fixture
async def staff_http(staff_system: StaffSystem) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the API of `staff_system`."""
    async with httpx.AsyncClient(base_url=staff_system.api.base_url, timeout=30) as client:
        yield client
