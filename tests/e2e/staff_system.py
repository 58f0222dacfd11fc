"""The API and the workers behind the staff pages (check-in, dashboard), with a QR signing key."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from eventhunting.tickets.qr_keys import QrKeyRing, private_key_text
from tests.support.servers import SmtpSink, running_smtp_sink
from tests.support.system import RunningSystem, running_system

# Read models (the sales figures the dashboard draws), hold expiry, and the mailer, which
# issues the tickets of paid orders (and mails them to the SMTP sink).
STAFF_PAGE_WORKERS = ("projector", "expirer", "mailer")


@dataclass(frozen=True)
class StaffSystem:
    """The running API and workers, the key ring its tickets are signed with, and the SMTP
    sink its mail goes to."""

    api: RunningSystem
    qr_keys: QrKeyRing
    sink: SmtpSink


@contextmanager
def running_staff_system(redis_url: str, mongodb_url: str) -> Iterator[StaffSystem]:
    signing_key = Ed25519PrivateKey.generate()
    with (
        running_smtp_sink() as sink,
        running_system(
            redis_url,
            mongodb_url,
            f"e2e_staff_{uuid.uuid4().hex[:8]}",
            workers=STAFF_PAGE_WORKERS,
            overrides={
                "EVENTHUNTING_QR_SIGNING_KEY": private_key_text(signing_key),
                "EVENTHUNTING_SMTP_URL": sink.smtp_url,
            },
        ) as api,
    ):
        yield StaffSystem(api=api, qr_keys=QrKeyRing(signing_key=signing_key), sink=sink)
