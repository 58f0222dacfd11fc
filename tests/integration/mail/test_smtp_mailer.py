"""SmtpMailer against the SMTP sink: retries inside one delivery, typed failures, TLS and AUTH."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.message import EmailMessage

import httpx
import pytest
import zxingcpp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from PIL import Image
from ulid import ULID

from eventhunting.mail.messages import (
    EventDetails,
    MailedTicket,
    OrderLineSummary,
    OrderSummary,
    Recipient,
    TicketsMail,
    Venue,
)
from eventhunting.mail.rendering import MailRenderer
from eventhunting.mail.smtp_mailer import (
    MailServerUnavailable,
    PermanentMailError,
    SmtpMailer,
    TransientMailError,
)
from eventhunting.mail.smtp_url import parse_smtp_url
from eventhunting.store.consumer_groups import is_outage
from eventhunting.tickets.qr_codes import TicketCode, sign_ticket_code
from eventhunting.tickets.qr_keys import QrKeyRing
from tests.support.servers import SmtpSink, running_smtp_sink

SENDER = "EventHunting <tickets@eventhunting.test>"
BUYER = "buyer@example.test"


def plain_message(subject: str = "Your tickets") -> EmailMessage:
    message = EmailMessage()
    message["From"] = SENDER
    message["To"] = BUYER
    message["Subject"] = subject
    message.set_content("Show this code at the door.\n")
    return message


def mailer(
    url: str, attempts: int = 4, connections: int = 1, clock: Callable[[], float] = time.monotonic
) -> SmtpMailer:
    return SmtpMailer(
        parse_smtp_url(url),
        attempts=attempts,
        retry_initial_seconds=0.05,
        retry_max_seconds=0.2,
        timeout_seconds=5.0,
        connections=connections,
        clock=clock,
    )


async def inject(api: httpx.AsyncClient, fault: dict[str, object]) -> None:
    (await api.post("/api/faults", json=fault)).raise_for_status()


async def counters(api: httpx.AsyncClient) -> dict[str, int]:
    result: dict[str, int] = (await api.get("/api/counters")).json()
    return result


async def subjects(api: httpx.AsyncClient) -> list[str]:
    return [message["subject"] for message in (await api.get("/api/messages")).json()]


async def test_a_message_is_delivered_once_with_its_message_id(
    sink: SmtpSink, sink_api: httpx.AsyncClient
) -> None:
    sent = await mailer(sink.smtp_url).send(plain_message("hello"))
    assert sent.attempts == 1
    assert sent.refused_recipients == {}
    [listed] = (await sink_api.get("/api/messages")).json()
    detail = (await sink_api.get(f"/api/messages/{listed['id']}")).json()
    assert {h["name"]: h["value"] for h in detail["headers"]}["Message-ID"] == sent.message_id
    assert listed["to"] == [BUYER]


async def test_messages_in_sequence_share_one_connection(
    sink: SmtpSink, sink_api: httpx.AsyncClient
) -> None:
    smtp = mailer(sink.smtp_url)
    for number in range(10):
        sent = await smtp.send(plain_message(f"message {number}"))
        assert sent.attempts == 1
    assert smtp.connections_opened == 1
    assert sorted(await subjects(sink_api)) == sorted(f"message {n}" for n in range(10))
    await smtp.aclose()


async def test_concurrent_messages_use_at_most_the_configured_connections(
    sink: SmtpSink, sink_api: httpx.AsyncClient
) -> None:
    smtp = mailer(sink.smtp_url, connections=3)
    await asyncio.gather(*(smtp.send(plain_message(f"message {n}")) for n in range(24)))
    assert 1 <= smtp.connections_opened <= 3
    assert sorted(await subjects(sink_api)) == sorted(f"message {n}" for n in range(24))
    assert (await counters(sink_api))["accepted"] == 24
    await smtp.aclose()


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "drop", "count": 1, "at": "rcpt"},
        {"kind": "drop", "count": 1, "at": "data"},
        {"kind": "refuse", "count": 1, "code": 421, "at": "rcpt"},
    ],
    ids=["dropped at RCPT", "dropped at DATA", "421 closing"],
)
async def test_a_kept_connection_the_server_let_go_is_replaced_within_the_same_attempt(
    sink: SmtpSink, sink_api: httpx.AsyncClient, fault: dict[str, object]
) -> None:
    smtp = mailer(sink.smtp_url)
    await smtp.send(plain_message("first"))
    await inject(sink_api, fault)
    sent = await smtp.send(plain_message("second"))
    assert sent.attempts == 1  # no backoff wait: a new connection took over at once
    assert smtp.connections_opened == 2
    assert sorted(await subjects(sink_api)) == ["first", "second"]
    assert (await counters(sink_api))["accepted"] == 2
    await smtp.aclose()


async def test_the_servers_restart_between_messages_costs_a_new_connection_only(
    sink: SmtpSink, sink_api: httpx.AsyncClient
) -> None:
    smtp = mailer(sink.smtp_url)
    await smtp.send(plain_message("before"))
    await inject(sink_api, {"kind": "down", "seconds": 0.2})
    await asyncio.sleep(0.5)
    sent = await smtp.send(plain_message("after"))
    assert sent.attempts == 1
    assert smtp.connections_opened == 2
    assert sorted(await subjects(sink_api)) == ["after", "before"]
    await smtp.aclose()


async def test_a_connection_the_server_closed_for_idleness_is_replaced_within_the_attempt() -> None:
    with running_smtp_sink(None, "--idle-timeout", "0.5") as impatient:
        smtp = mailer(impatient.smtp_url)
        await smtp.send(plain_message("first"))
        await asyncio.sleep(1.5)  # the server says 421 and hangs up meanwhile
        sent = await smtp.send(plain_message("after the server's idle timeout"))
        assert sent.attempts == 1
        assert smtp.connections_opened == 2
        async with httpx.AsyncClient(base_url=impatient.http_url) as api:
            assert sorted(await subjects(api)) == ["after the server's idle timeout", "first"]
        await smtp.aclose()


async def test_a_connection_idle_past_the_limit_is_not_reused(
    sink: SmtpSink, sink_api: httpx.AsyncClient
) -> None:
    now = [1_000.0]
    smtp = mailer(sink.smtp_url, clock=lambda: now[0])
    await smtp.send(plain_message("first"))
    now[0] += smtp.idle_seconds - 1
    await smtp.send(plain_message("soon after"))
    assert smtp.connections_opened == 1
    now[0] += smtp.idle_seconds
    await smtp.send(plain_message("much later"))
    assert smtp.connections_opened == 2
    assert sorted(await subjects(sink_api)) == ["first", "much later", "soon after"]
    await smtp.aclose()


async def test_a_failed_connection_is_never_reused(
    sink: SmtpSink, sink_api: httpx.AsyncClient
) -> None:
    smtp = mailer(sink.smtp_url)
    await inject(sink_api, {"kind": "refuse", "count": 1, "code": 451})
    sent = await smtp.send(plain_message("after a refusal"))
    assert sent.attempts == 2
    assert smtp.connections_opened == 2
    await smtp.send(plain_message("next"))
    assert smtp.connections_opened == 2
    assert sorted(await subjects(sink_api)) == ["after a refusal", "next"]
    await smtp.aclose()


async def test_two_4xx_refusals_then_acceptance_deliver_exactly_one_message(
    sink: SmtpSink, sink_api: httpx.AsyncClient
) -> None:
    await inject(sink_api, {"kind": "refuse", "count": 2, "code": 451})
    sent = await mailer(sink.smtp_url).send(plain_message("after two refusals"))
    assert sent.attempts == 3
    assert await counters(sink_api) == {"accepted": 1, "refused": 2, "dropped": 0}
    assert await subjects(sink_api) == ["after two refusals"]


async def test_a_dropped_connection_then_acceptance_delivers_exactly_one_message(
    sink: SmtpSink, sink_api: httpx.AsyncClient
) -> None:
    await inject(sink_api, {"kind": "drop", "count": 1})
    sent = await mailer(sink.smtp_url).send(plain_message("after a drop"))
    assert sent.attempts == 2
    assert await counters(sink_api) == {"accepted": 1, "refused": 0, "dropped": 1}
    assert await subjects(sink_api) == ["after a drop"]


async def test_a_short_outage_is_ridden_out_within_one_delivery(
    sink: SmtpSink, sink_api: httpx.AsyncClient
) -> None:
    await inject(sink_api, {"kind": "down", "seconds": 1})
    slow = SmtpMailer(
        parse_smtp_url(sink.smtp_url),
        attempts=6,
        retry_initial_seconds=0.2,
        retry_max_seconds=0.6,
        timeout_seconds=5.0,
    )
    started = time.monotonic()
    sent = await slow.send(plain_message("after an outage"))
    assert sent.attempts > 1
    assert time.monotonic() - started >= 0.9
    assert await subjects(sink_api) == ["after an outage"]


async def test_an_outage_longer_than_the_retries_ends_in_a_typed_outage_error(
    sink: SmtpSink, sink_api: httpx.AsyncClient
) -> None:
    await inject(sink_api, {"kind": "down", "seconds": 30})
    started = time.monotonic()
    with pytest.raises(MailServerUnavailable) as raised:
        await mailer(sink.smtp_url, attempts=3).send(plain_message("never"))
    assert raised.value.attempts == 3
    assert "after 3 attempts" in str(raised.value)
    assert time.monotonic() - started < 5  # bounded: three attempts and two short waits
    # The consumer-group runtime waits this out and never dead-letters the entry for it.
    assert is_outage(raised.value)
    (await sink_api.delete("/api/faults")).raise_for_status()
    assert await subjects(sink_api) == []


async def test_4xx_replies_past_the_attempts_end_in_a_transient_error_that_counts(
    sink: SmtpSink, sink_api: httpx.AsyncClient
) -> None:
    await inject(sink_api, {"kind": "refuse", "count": 5, "code": 452})
    with pytest.raises(TransientMailError) as raised:
        await mailer(sink.smtp_url, attempts=3).send(plain_message("never"))
    assert raised.value.smtp_code == 452
    assert raised.value.attempts == 3
    assert not isinstance(raised.value, MailServerUnavailable)
    assert not is_outage(raised.value)  # a message refused again and again may be the cause
    assert await counters(sink_api) == {"accepted": 0, "refused": 3, "dropped": 0}


@pytest.mark.parametrize("stage", ["data", "rcpt"])
async def test_a_5xx_reply_is_a_permanent_error_at_once(
    sink: SmtpSink, sink_api: httpx.AsyncClient, stage: str
) -> None:
    await inject(sink_api, {"kind": "refuse", "count": 1, "code": 550, "at": stage})
    with pytest.raises(PermanentMailError) as raised:
        await mailer(sink.smtp_url).send(plain_message("rejected"))
    assert raised.value.smtp_code == 550
    assert raised.value.attempts == 1
    assert await counters(sink_api) == {"accepted": 0, "refused": 1, "dropped": 0}
    assert await subjects(sink_api) == []


async def test_the_tickets_mail_arrives_with_qr_images_that_scan(
    sink: SmtpSink, sink_api: httpx.AsyncClient
) -> None:
    ring = QrKeyRing(signing_key=Ed25519PrivateKey.generate())
    event_id, ticket_type_id = str(ULID()), str(ULID())
    tickets = []
    for _ in range(2):
        ticket_id = str(ULID())
        code = TicketCode(ticket_id=ticket_id, event_id=event_id, ticket_type_id=ticket_type_id)
        tickets.append(
            MailedTicket(
                ticket_id=ticket_id, ticket_type_name="VIP", qr_payload=sign_ticket_code(code, ring)
            )
        )
    mail = TicketsMail(
        buyer=Recipient(name="Trần Thị Bình", email=BUYER, locale="vi"),
        event=EventDetails(
            event_id=event_id,
            title="Lễ hội Áo dài",
            starts_at=datetime(2026, 5, 1, 11, 0, tzinfo=UTC),
            venue=Venue(name="Công viên Lê Văn Tám", address="Quận 1"),
            province="Thành phố Hồ Chí Minh",
        ),
        tickets=tuple(tickets),
        order=OrderSummary(
            order_id=str(ULID()),
            lines=(
                OrderLineSummary(
                    description="VIP", quantity=2, unit_price=500_000, amount=1_000_000
                ),
            ),
            total_amount=1_000_000,
        ),
    )
    message = MailRenderer(sender=SENDER).tickets_message(mail)
    await mailer(sink.smtp_url).send(message)

    [listed] = (await sink_api.get("/api/messages")).json()
    assert listed["subject"] == "Vé của bạn: Lễ hội Áo dài"
    detail = (await sink_api.get(f"/api/messages/{listed['id']}")).json()
    assert "1.000.000 ₫" in detail["text"]
    images = [part for part in detail["parts"] if part["content_type"] == "image/png"]
    decoded = set()
    for image in images:
        assert f"cid:{image['content_id']}" in detail["html"]
        png = (await sink_api.get(f"/api/messages/{listed['id']}/parts/{image['id']}")).content
        decoded.update(r.text for r in zxingcpp.read_barcodes(Image.open(io.BytesIO(png))))
    assert decoded == {ticket.qr_payload for ticket in tickets}


@pytest.fixture(scope="module")
def guarded_sink() -> Iterator[SmtpSink]:
    """A sink that takes mail only after AUTH as mailer:s3cret (STARTTLS offered)."""
    with running_smtp_sink(None, "--user", "mailer:s3cret", "--require-auth") as running:
        yield running


def guarded_url(sink: SmtpSink, options: str, password: str = "s3cret") -> str:
    return f"smtp://mailer:{password}@127.0.0.1:{sink.smtp_port}?{options}"


@pytest.mark.parametrize("options", ["starttls=required&tls_verify=false", "starttls=auto"])
async def test_starttls_and_auth_deliver_to_a_server_that_requires_them(
    guarded_sink: SmtpSink, options: str
) -> None:
    subject = f"over TLS with {options}"
    await mailer(guarded_url(guarded_sink, options)).send(plain_message(subject))
    async with httpx.AsyncClient(base_url=guarded_sink.http_url) as api:
        listed = [m for m in (await api.get("/api/messages")).json() if m["subject"] == subject]
        assert len(listed) == 1
        detail = (await api.get(f"/api/messages/{listed[0]['id']}")).json()
        assert detail["auth_user"] == "mailer"


async def test_a_wrong_password_is_a_permanent_error(guarded_sink: SmtpSink) -> None:
    with pytest.raises(PermanentMailError) as raised:
        await mailer(guarded_url(guarded_sink, "starttls=auto", password="wrong")).send(
            plain_message()
        )
    assert raised.value.smtp_code == 535
    assert raised.value.attempts == 1


async def test_required_starttls_verifies_the_certificate_by_default(
    guarded_sink: SmtpSink,
) -> None:
    with pytest.raises(PermanentMailError, match="certificate is not trusted"):
        await mailer(guarded_url(guarded_sink, "starttls=required")).send(plain_message())


async def test_a_server_without_starttls_gets_no_password_in_clear_text() -> None:
    with running_smtp_sink(None, "--no-starttls") as plain_sink:
        url = f"smtp://mailer:s3cret@127.0.0.1:{plain_sink.smtp_port}"
        with pytest.raises(PermanentMailError, match="clear text"):
            await mailer(url).send(plain_message())
        with pytest.raises(PermanentMailError, match="does not offer STARTTLS"):
            await mailer(url + "?starttls=required").send(plain_message())
        await mailer(url + "?starttls=never").send(plain_message("allowed in clear"))
        async with httpx.AsyncClient(base_url=plain_sink.http_url) as api:
            assert await subjects(api) == ["allowed in clear"]
