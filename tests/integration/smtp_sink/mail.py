"""Mail for the SMTP sink tests: a ticket message with an inline PNG, and sending it."""

from __future__ import annotations

import smtplib
import struct
import zlib
from email import policy
from email.message import EmailMessage

from tests.support.servers import SmtpSink

SENDER = "tickets@eventhunting.test"
RECIPIENT = "buyer@example.test"


def tiny_png() -> bytes:
    """A valid 2x2 RGB PNG, made here so the test owns its bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * 2 for _ in range(2))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def ticket_mail(subject: str = "Your tickets", content_id: str = "qr-1@eventhunting.test") -> bytes:
    """Text and HTML alternatives, the HTML showing an inline PNG by cid:, and a PDF attachment."""
    message = EmailMessage()
    message["From"] = f"EventHunting <{SENDER}>"
    message["To"] = RECIPIENT
    message["Subject"] = subject
    message.set_content("Show this code at the door.\n")
    message.add_alternative(
        f'<html><body><p>Show this code at the door.</p><img src="cid:{content_id}"></body></html>',
        subtype="html",
    )
    html_part = message.get_payload()[1]
    html_part.add_related(tiny_png(), "image", "png", cid=f"<{content_id}>")
    message.add_attachment(b"%PDF-1.4 invoice", "application", "pdf", filename="invoice.pdf")
    return message.as_bytes(policy=policy.SMTP)


def send(sink: SmtpSink, raw: bytes, recipients: tuple[str, ...] = (RECIPIENT,)) -> None:
    with smtplib.SMTP("127.0.0.1", sink.smtp_port, timeout=10) as client:
        client.sendmail(SENDER, list(recipients), raw)
