"""Door staff check tickets in on /checkin, in a real Chromium whose camera plays a ticket's QR."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from playwright.async_api import Browser, Page, async_playwright
from ulid import ULID

from eventhunting.tickets.qr_codes import TicketCode, sign_ticket_code
from eventhunting.tickets.qr_keys import QrKeyRing
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, PageProblems
from tests.e2e.fake_camera import write_y4m
from tests.e2e.staff_system import StaffSystem
from tests.support.accounts import SignedIn, grant_staff, sign_up
from tests.support.catalog import published_event, ticket_type

Body = dict[str, Any]

pytestmark = [pytest.mark.e2e, pytest.mark.system, pytest.mark.timeout(180)]

# How long the page may take to answer a scan on a busy machine (jsQR on every frame).
ANSWER_TIMEOUT_MS = 20_000
# How long the mailer may take to issue a paid order's tickets on a busy machine.
ISSUE_TIMEOUT_SECONDS = 30.0


@pytest.fixture(scope="module")
def camera_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The file the fake camera plays; each test writes the code it shows before starting it."""
    return write_y4m(tmp_path_factory.mktemp("camera") / "camera.y4m", None)


@pytest.fixture(scope="module")
async def camera_browser(camera_video: Path) -> AsyncIterator[Browser]:
    """Chromium with a fake camera playing `camera_video`, camera access granted."""
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[
                *CHROMIUM_ARGS,
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-video-capture={camera_video}",
            ],
        )
        try:
            yield launched
        finally:
            await launched.close()


async def door_in(browser: Browser, locale: str) -> AsyncIterator[tuple[Page, PageProblems]]:
    """A fresh page in its own context, and what goes wrong in it (asserted empty by tests)."""
    context = await browser.new_context(locale=locale)
    page = await context.new_page()
    problems = PageProblems.watch(page)
    try:
        yield page, problems
    finally:
        await context.close()


@pytest.fixture
async def door(camera_browser: Browser) -> AsyncIterator[tuple[Page, PageProblems]]:
    """A door whose browser asks for English (`Accept-Language: en-US`)."""
    async for opened in door_in(camera_browser, "en-US"):
        yield opened


@pytest.fixture
async def door_in_vietnamese(camera_browser: Browser) -> AsyncIterator[tuple[Page, PageProblems]]:
    """A door whose browser asks for Vietnamese (`Accept-Language: vi-VN`)."""
    async for opened in door_in(camera_browser, "vi-VN"):
        yield opened


@dataclass(frozen=True)
class Door:
    """An event on sale, its organizer, and an account made staff of it."""

    event: dict[str, object]
    organizer: SignedIn
    staff: SignedIn

    @property
    def event_id(self) -> str:
        return str(self.event["id"])

    @property
    def ticket_type_id(self) -> str:
        ticket_types = self.event["ticket_types"]
        assert isinstance(ticket_types, list)
        return str(ticket_types[0]["id"])


async def event_with_staff(http: httpx.AsyncClient, staff_system: StaffSystem) -> Door:
    organizer = await sign_up(http, staff_system.api, roles=["organizer"])
    staff = await sign_up(http, staff_system.api, full_name="Door Staff")
    event = await published_event(
        http, organizer, ticket_types=[ticket_type(name="Free entry", price=0, quantity=50)]
    )
    await grant_staff(http, organizer, event["id"], staff.account_id)
    return Door(event=event, organizer=organizer, staff=staff)


async def issued_ticket(http: httpx.AsyncClient, staff_system: StaffSystem, door: Door) -> Body:
    """A ticket of the door's event, as its buyer sees it once the mailer issued it: a free
    order is paid at once, and the mailer issues its tickets on OrderPaid."""
    buyer = await sign_up(http, staff_system.api, full_name="Nguyen Van A")
    placed = await http.post(
        "/api/v1/orders",
        json={
            "event_id": door.event_id,
            "items": [{"ticket_type_id": door.ticket_type_id, "quantity": 1}],
        },
        headers=buyer.headers,
    )
    assert placed.status_code == 201, placed.text
    order = placed.json()
    assert order["status"] == "paid"
    deadline = time.monotonic() + ISSUE_TIMEOUT_SECONDS
    while True:
        listed = await http.get(f"/api/v1/orders/{order['id']}/tickets", headers=buyer.headers)
        if listed.status_code == 200 and listed.json()["items"]:
            ticket: Body = listed.json()["items"][0]
            return ticket
        assert time.monotonic() < deadline, f"no tickets issued: {listed.status_code} {listed.text}"
        await asyncio.sleep(0.25)


def signed_code(ring: QrKeyRing, *, event_id: str, ticket_type_id: str) -> str:
    """A code signed with `ring`'s key for a ticket that was never issued."""
    ticket = TicketCode(ticket_id=str(ULID()), event_id=event_id, ticket_type_id=ticket_type_id)
    return sign_ticket_code(ticket, ring)


def with_altered_signature(code: str) -> str:
    prefix, encoded = code[:4], code[4:]
    payload = bytearray(base64.b32decode(encoded + "=" * (-len(encoded) % 8)))
    payload[-1] ^= 0x01
    return prefix + base64.b32encode(bytes(payload)).decode("ascii").rstrip("=")


async def sign_in_at_the_door(page: Page, base_url: str, account: SignedIn) -> None:
    await page.goto(f"{base_url}/checkin")
    await page.fill("#email", account.email)
    await page.fill("#password", account.password)
    await page.click("#sign-in-button")


async def answer_shown(page: Page, outcome: str, reason: str) -> str:
    """Wait for the big answer to be `outcome` for `reason`; returns the reason as shown."""
    await page.wait_for_selector(
        f'#result[data-outcome="{outcome}"][data-reason="{reason}"]', timeout=ANSWER_TIMEOUT_MS
    )
    return await page.inner_text("#result-reason")


async def count_shown(page: Page, checked_in: int, tickets: int) -> str:
    """Wait for the event's count on the page to be `checked_in` of `tickets`; its label."""
    await page.wait_for_selector(
        f'#checkin-count[data-count="{checked_in}"][data-tickets="{tickets}"]',
        timeout=ANSWER_TIMEOUT_MS,
    )
    return await page.inner_text("#count-label")


async def type_code(page: Page, code: str) -> None:
    await page.fill("#code", code)
    await page.click("#code-check")


async def test_a_wrong_password_is_refused_on_the_page(
    staff_http: httpx.AsyncClient,
    staff_system: StaffSystem,
    door: tuple[Page, PageProblems],
) -> None:
    page, problems = door
    staff = await sign_up(staff_http, staff_system.api)
    await page.goto(f"{staff_system.api.base_url}/checkin")
    await page.fill("#email", staff.email)
    await page.fill("#password", "not the password")
    await page.click("#sign-in-button")

    await page.wait_for_selector("#sign-in-error:has-text('Wrong email or password.')")
    assert await page.is_hidden("#door")
    assert problems.messages == []


async def test_staff_sign_in_and_get_their_event_and_codes_that_are_not_its_tickets_show_red(
    staff_http: httpx.AsyncClient,
    staff_system: StaffSystem,
    door: tuple[Page, PageProblems],
) -> None:
    page, problems = door
    door_event = await event_with_staff(staff_http, staff_system)
    ours = staff_system.qr_keys
    theirs = QrKeyRing(signing_key=Ed25519PrivateKey.generate())
    for_this_event = {"event_id": door_event.event_id, "ticket_type_id": door_event.ticket_type_id}

    await sign_in_at_the_door(page, staff_system.api.base_url, door_event.staff)

    # The staff's one event is chosen for them.
    await page.wait_for_selector("#scanning:not([hidden])")
    assert await page.get_attribute("#event-title", "data-event-id") == door_event.event_id
    assert await page.inner_text("#event-title") == door_event.event["title"]
    assert await page.inner_text("#account-email") == door_event.staff.email

    await type_code(page, "EH1:THIS IS NOT BASE32!")
    assert "damaged" in await answer_shown(page, "rejected", "malformed")

    await type_code(page, signed_code(theirs, **for_this_event))
    assert "key" in await answer_shown(page, "rejected", "unknown_key")

    await type_code(page, with_altered_signature(signed_code(ours, **for_this_event)))
    assert "signature" in await answer_shown(page, "rejected", "bad_signature")

    other_event = str(ULID())
    await type_code(
        page, signed_code(ours, event_id=other_event, ticket_type_id=door_event.ticket_type_id)
    )
    assert other_event in await answer_shown(page, "rejected", "other_event")

    assert "of 0 tickets" in await count_shown(page, 0, 0)
    assert problems.messages == []


async def test_the_camera_reads_a_code_held_in_front_of_it(
    staff_http: httpx.AsyncClient,
    staff_system: StaffSystem,
    door: tuple[Page, PageProblems],
    camera_video: Path,
) -> None:
    page, problems = door
    door_event = await event_with_staff(staff_http, staff_system)
    other_event = str(ULID())
    code = signed_code(
        staff_system.qr_keys, event_id=other_event, ticket_type_id=door_event.ticket_type_id
    )
    write_y4m(camera_video, code)

    await sign_in_at_the_door(page, staff_system.api.base_url, door_event.staff)
    await page.wait_for_selector("#scanning:not([hidden])")
    await page.click("#camera-start")

    reason = await answer_shown(page, "rejected", "other_event")
    assert other_event in reason
    # Debian's Chromium has no BarcodeDetector: the vendored jsQR read the frames.
    assert await page.get_attribute("#camera-status", "data-decoder") in ("jsQR", "BarcodeDetector")
    assert problems.messages == []


async def test_scanning_a_ticket_lets_it_in_then_shows_it_already_checked_in(
    staff_http: httpx.AsyncClient,
    staff_system: StaffSystem,
    door: tuple[Page, PageProblems],
    camera_video: Path,
) -> None:
    page, problems = door
    door_event = await event_with_staff(staff_http, staff_system)
    ticket = await issued_ticket(staff_http, staff_system, door_event)
    write_y4m(camera_video, ticket["qr"])

    await sign_in_at_the_door(page, staff_system.api.base_url, door_event.staff)
    await page.wait_for_selector("#scanning:not([hidden])")
    await page.click("#event-picker summary")
    await page.fill("#gate", "Gate A")
    await page.dispatch_event("#gate", "change")
    await page.click("#camera-start")

    assert "Checked in at" in await answer_shown(page, "accepted", "checked_in")
    assert "of 1 tickets checked in" in await count_shown(page, 1, 1)

    # The ticket stays in front of the camera: nothing more happens until the next ticket.
    await page.click("#next-ticket")
    shown = await answer_shown(page, "rejected", "already_checked_in")
    assert "Already checked in at" in shown
    assert "Gate A" in shown
    await count_shown(page, 1, 1)

    # The API agrees: the first scan was recorded once.
    again = await staff_http.post(
        "/api/v1/checkins", json={"qr": ticket["qr"]}, headers=door_event.staff.headers
    )
    assert again.status_code == 409, again.text
    assert again.json()["code"] == "already_checked_in"

    # The count is the event's, not this tab's: another door's check-in shows up here by
    # itself (the page asks again every few seconds), as does a ticket sold meanwhile.
    other_ticket = await issued_ticket(staff_http, staff_system, door_event)
    elsewhere = await staff_http.post(
        "/api/v1/checkins",
        json={"qr": other_ticket["qr"], "gate": "Gate B"},
        headers=door_event.organizer.headers,
    )
    assert elsewhere.status_code == 200, elsewhere.text
    assert "of 2 tickets" in await count_shown(page, 2, 2)
    summary = await staff_http.get(
        f"/api/v1/events/{door_event.event_id}/checkins/summary",
        headers=door_event.staff.headers,
    )
    assert (summary.json()["checked_in"], summary.json()["tickets"]) == (2, 2)
    assert problems.messages == []


async def test_a_typed_door_code_lets_its_ticket_in_once(
    staff_http: httpx.AsyncClient,
    staff_system: StaffSystem,
    door: tuple[Page, PageProblems],
) -> None:
    page, problems = door
    door_event = await event_with_staff(staff_http, staff_system)
    ticket = await issued_ticket(staff_http, staff_system, door_event)

    await sign_in_at_the_door(page, staff_system.api.base_url, door_event.staff)
    await page.wait_for_selector("#scanning:not([hidden])")
    await type_code(page, ticket["code"].lower())
    await answer_shown(page, "accepted", "checked_in")

    await type_code(page, ticket["code"])
    assert "Already checked in at" in await answer_shown(page, "rejected", "already_checked_in")
    await count_shown(page, 1, 1)
    assert problems.messages == []


async def test_a_browser_asking_for_vietnamese_gets_the_door_in_vietnamese(
    staff_http: httpx.AsyncClient,
    staff_system: StaffSystem,
    door_in_vietnamese: tuple[Page, PageProblems],
) -> None:
    page, problems = door_in_vietnamese
    door_event = await event_with_staff(staff_http, staff_system)
    ticket = await issued_ticket(staff_http, staff_system, door_event)

    await page.goto(f"{staff_system.api.base_url}/checkin")
    assert await page.get_attribute("html", "lang") == "vi"
    assert await page.inner_text("#sign-in-button") == "Đăng nhập"
    await page.fill("#email", door_event.staff.email)
    await page.fill("#password", "not the password")
    await page.click("#sign-in-button")
    await page.wait_for_selector("#sign-in-error:has-text('Sai email hoặc mật khẩu.')")

    await sign_in_at_the_door(page, staff_system.api.base_url, door_event.staff)
    await page.wait_for_selector("#scanning:not([hidden])")
    assert await page.inner_text("#result-title") == "Sẵn sàng"
    assert "trên 1 vé" in await count_shown(page, 0, 1)

    await type_code(page, ticket["code"])
    assert "Đã soát vé lúc" in await answer_shown(page, "accepted", "checked_in")
    assert await page.inner_text("#result-title") == "Mời vào"
    await count_shown(page, 1, 1)
    await type_code(page, ticket["code"])
    assert "Vé đã được soát lúc" in await answer_shown(page, "rejected", "already_checked_in")
    await type_code(page, "EH1:THIS IS NOT BASE32!")
    assert "Mã đã bị hỏng" in await answer_shown(page, "rejected", "malformed")
    assert problems.messages == []
