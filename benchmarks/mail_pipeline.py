"""Mail pipeline benchmark: paid orders to mails in the SMTP sink, beside a bare SMTP client.

N free orders (one ticket each, each paid at once by its `OrderPlaced` + `OrderPaid` append)
are placed while no mailer runs; then `eventhunting worker mailer` starts and issues the
tickets and mails each order once. Timed from the last `OrderPaid` (the answer of the last
placement) to the `received_at` of the last message in the sink, so the mailer's start-up
counts; the first-to-last message span is reported beside it.

In the same run the sink's own accept rate: the same rendered messages (fetched raw from the
sink's JSON API, inbox cleared) sent again by `smtplib` over one connection, one after the
other, timed from the first MAIL FROM to the last 250 reply. Then the same messages through
`SmtpMailer` alone, as many at once as the mailer sends (`CONCURRENCY`): over its kept
connections (`EVENTHUNTING_SMTP_CONNECTIONS`, default 4), and over a new connection (with
STARTTLS) per message, as the mailer did before it kept them.

The system is the other benchmarks': a private Redis with `appendfsync always`, the MongoDB
stand-in, one `eventhunting api` process, plus the SMTP sink (messages in memory) and the
mailer, each a process of its own.

    python -m benchmarks.mail_pipeline               # 1,000 orders
    python -m benchmarks.mail_pipeline --orders 200
    python -m benchmarks.mail_pipeline --smoke       # 20 orders, for CI
"""

from __future__ import annotations

import argparse
import asyncio
import email
import json
import smtplib
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from benchmarks.harness import (
    BenchSystem,
    bench_services,
    machine_description,
    on_sale_event,
    running_bench_system,
)
from benchmarks.load import new_event_loop
from eventhunting.consumers.mailer import CONCURRENCY
from eventhunting.domain.accounts import RegisterAccount
from eventhunting.domain.orders import OrderStatus, RequestedItem
from eventhunting.mail.smtp_mailer import SmtpMailer
from eventhunting.mail.smtp_url import parse_smtp_url
from eventhunting.settings import MailSettings
from eventhunting.tickets.qr_keys import private_key_text
from tests.support.servers import SmtpSink, running_smtp_sink
from tests.support.system import stop_process

PREPARE_CONCURRENCY = 32
# Longest wait for the mailer to have mailed every order.
MAIL_TIMEOUT_SECONDS = 600.0
POLL_SECONDS = 0.2


@dataclass
class Pipeline:
    orders: int
    placed_seconds: float
    """Placing the orders (not part of the pipeline time)."""
    seconds: float
    """Last `OrderPaid` to the last message in the sink (the mailer's start-up included)."""
    first_message_seconds: float
    """Last `OrderPaid` to the first message: the mailer's start-up and first batch."""
    first_to_last_seconds: float

    @property
    def rate(self) -> float:
        return self.orders / self.seconds if self.seconds else 0.0

    @property
    def steady_rate(self) -> float:
        span = self.first_to_last_seconds
        return (self.orders - 1) / span if span else 0.0


@dataclass
class Bare:
    messages: int
    seconds: float
    total_bytes: int

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


async def paid_free_orders(system: BenchSystem, count: int) -> float:
    """`count` buyers each with a paid free order of one ticket; when the last was paid
    (wall clock, seconds since the epoch)."""
    services = await bench_services(system)
    try:
        event_id, ticket_type_id = await on_sale_event(services, quantity=count, price=0)
        run = uuid.uuid4().hex[:8]
        gate = asyncio.Semaphore(PREPARE_CONCURRENCY)

        async def buyer(number: int) -> str:
            async with gate:
                account = await services.accounts.register(
                    RegisterAccount(
                        email=f"mail-buyer-{run}-{number}@bench.test",
                        password="correct horse battery staple",
                        full_name=f"Người mua {number}",
                    )
                )
            return account.account_id

        buyers = await asyncio.gather(*(buyer(n) for n in range(count)))

        async def order(buyer_id: str) -> None:
            async with gate:
                placement = await services.orders.place(
                    buyer_id=buyer_id,
                    event_id=event_id,
                    items=[RequestedItem(ticket_type_id=ticket_type_id, quantity=1)],
                )
            if placement.order.status is not OrderStatus.PAID:
                raise RuntimeError(f"free order {placement.order.id} is not paid at once")

        await asyncio.gather(*(order(buyer_id) for buyer_id in buyers))
        return time.time()
    finally:
        await services.close()


async def sink_listing(sink: httpx.AsyncClient) -> list[dict[str, object]]:
    response = await sink.get("/api/messages")
    response.raise_for_status()
    listing: list[dict[str, object]] = response.json()
    return listing


def received_at(message: dict[str, object]) -> float:
    return datetime.fromisoformat(str(message["received_at"])).astimezone(UTC).timestamp()


async def wait_for_messages(sink: httpx.AsyncClient, count: int) -> list[dict[str, object]]:
    async with asyncio.timeout(MAIL_TIMEOUT_SECONDS):
        while True:
            listing = await sink_listing(sink)
            if len(listing) >= count:
                return listing
            await asyncio.sleep(POLL_SECONDS)


def send_bare(smtp_port: int, messages: list[tuple[str, list[str], bytes]]) -> float:
    """Send `messages` over one SMTP connection, one after the other; seconds taken."""
    with smtplib.SMTP("127.0.0.1", smtp_port, timeout=30) as client:
        client.ehlo()
        start = time.perf_counter()
        for mail_from, rcpt_tos, raw in messages:
            client.sendmail(mail_from, rcpt_tos, raw)
        return time.perf_counter() - start


async def measure(orders: int, log: Path) -> dict[str, object]:
    overrides = {
        "EVENTHUNTING_QR_SIGNING_KEY": private_key_text(Ed25519PrivateKey.generate()),
    }
    with running_smtp_sink() as sink_process:
        overrides["EVENTHUNTING_SMTP_URL"] = sink_process.smtp_url
        with running_bench_system(hello=False, overrides=overrides) as system:
            async with httpx.AsyncClient(base_url=sink_process.http_url, timeout=30) as sink:
                pipeline = await run_pipeline(system, sink, orders, log)
                messages = await sent_messages(sink)
                bare = await run_bare(sink_process, sink, messages)
                kept = await run_smtp_mailer(sink_process, sink, messages, reuse=True)
                fresh = await run_smtp_mailer(sink_process, sink, messages, reuse=False)
    return {
        "machine": machine_description(),
        "orders": orders,
        "redis_appendfsync": "always",
        "pipeline": {
            **vars(pipeline),
            "rate": pipeline.rate,
            "steady_rate": pipeline.steady_rate,
        },
        "bare_smtp": {**vars(bare), "rate": bare.rate},
        "smtp_mailer_kept_connections": {**vars(kept), "rate": kept.rate},
        "smtp_mailer_connection_per_message": {**vars(fresh), "rate": fresh.rate},
        "ratio_pipeline_to_bare": pipeline.rate / bare.rate if bare.rate else 0.0,
        "ratio_steady_to_bare": pipeline.steady_rate / bare.rate if bare.rate else 0.0,
    }


@contextmanager
def running_mailer(environment: dict[str, str], log: Path) -> Iterator[None]:
    """`eventhunting worker mailer` as a process of its own, its log to `log`."""
    with log.open("ab") as log_file:
        mailer = subprocess.Popen(
            [sys.executable, "-m", "eventhunting.cli", "worker", "mailer"],
            env=environment,
            stderr=log_file,
        )
    try:
        yield
    finally:
        stop_process(mailer)


async def run_pipeline(
    system: BenchSystem, sink: httpx.AsyncClient, orders: int, log: Path
) -> Pipeline:
    started = time.perf_counter()
    last_paid = await paid_free_orders(system, orders)
    placed_seconds = time.perf_counter() - started
    with running_mailer(system.environment, log):
        listing = await wait_for_messages(sink, orders)
    if len(listing) != orders:
        raise RuntimeError(f"{len(listing)} messages in the sink for {orders} orders")
    times = sorted(received_at(message) for message in listing)
    return Pipeline(
        orders=orders,
        placed_seconds=placed_seconds,
        seconds=times[-1] - last_paid,
        first_message_seconds=times[0] - last_paid,
        first_to_last_seconds=times[-1] - times[0],
    )


Envelope = tuple[str, list[str], bytes]


async def sent_messages(sink: httpx.AsyncClient) -> list[Envelope]:
    """The messages in the sink, oldest first, as sender, recipients and raw bytes."""
    listing = await sink_listing(sink)
    messages = []
    for message in reversed(listing):  # the listing is newest first
        raw = await sink.get(f"/api/messages/{message['id']}/raw")
        raw.raise_for_status()
        recipients = message["to"]
        assert isinstance(recipients, list)
        messages.append((str(message["from"]), [str(r) for r in recipients], raw.content))
    return messages


async def emptied(sink: httpx.AsyncClient) -> None:
    (await sink.delete("/api/messages")).raise_for_status()
    (await sink.delete("/api/counters")).raise_for_status()


async def all_accepted(sink: httpx.AsyncClient, count: int) -> None:
    counters = (await sink.get("/api/counters")).json()
    if counters["accepted"] != count:
        raise RuntimeError(f"the sink accepted {counters['accepted']} of {count} messages")


async def run_bare(
    sink_process: SmtpSink, sink: httpx.AsyncClient, messages: list[Envelope]
) -> Bare:
    await emptied(sink)
    seconds = await asyncio.to_thread(send_bare, sink_process.smtp_port, messages)
    await all_accepted(sink, len(messages))
    return Bare(
        messages=len(messages),
        seconds=seconds,
        total_bytes=sum(len(raw) for _, _, raw in messages),
    )


async def run_smtp_mailer(
    sink_process: SmtpSink, sink: httpx.AsyncClient, messages: list[Envelope], *, reuse: bool
) -> Bare:
    """The messages through `SmtpMailer` as the mailer worker has it (its settings' defaults,
    `CONCURRENCY` messages at once): over kept connections, or (`reuse=False`) as before it
    kept them, a new connection per message (a kept one is never fresh enough), as many
    connections as messages at once."""
    await emptied(sink)
    parsed = [email.message_from_bytes(raw, policy=policy.default) for _, _, raw in messages]
    defaults = MailSettings()
    smtp = SmtpMailer(
        parse_smtp_url(sink_process.smtp_url),
        attempts=defaults.smtp_attempts,
        retry_max_seconds=defaults.smtp_retry_max_seconds,
        timeout_seconds=defaults.smtp_timeout_seconds,
        # Before it kept connections, each of the mailer's concurrent deliveries had its own.
        connections=defaults.smtp_connections if reuse else CONCURRENCY,
        idle_seconds=30.0 if reuse else 0.0,
    )
    gate = asyncio.Semaphore(CONCURRENCY)

    async def send(message: EmailMessage) -> None:
        async with gate:
            await smtp.send(message)

    start = time.perf_counter()
    await asyncio.gather(
        *(send(message) for message in parsed if isinstance(message, EmailMessage))
    )
    seconds = time.perf_counter() - start
    await smtp.aclose()
    await all_accepted(sink, len(messages))
    return Bare(
        messages=len(messages),
        seconds=seconds,
        total_bytes=sum(len(raw) for _, _, raw in messages),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000, help="paid orders to mail")
    parser.add_argument("--smoke", action="store_true", help="20 orders; checks it runs")
    parser.add_argument("--json", type=Path, help="also write the results here")
    arguments = parser.parse_args(argv)
    orders = 20 if arguments.smoke else arguments.orders

    loop = new_event_loop()
    with tempfile.TemporaryDirectory(prefix="bench-mailer-") as scratch:
        log = Path(scratch) / "mailer.log"
        try:
            report = loop.run_until_complete(measure(orders, log))
        except BaseException:
            if log.exists():
                sys.stderr.write(log.read_text(errors="replace")[-4000:])
            raise
        finally:
            loop.close()

    pipeline, bare = report["pipeline"], report["bare_smtp"]
    assert isinstance(pipeline, dict)
    assert isinstance(bare, dict)
    print(f"machine: {report['machine']}")
    print(
        f"{orders} free orders of one ticket, placed (not timed) in"
        f" {pipeline['placed_seconds']:.1f} s; redis appendfsync always; sink in memory"
    )
    print(
        f"pipeline: last OrderPaid to last message {pipeline['seconds']:.2f} s"
        f" = {pipeline['rate']:.1f} messages/s (first message after"
        f" {pipeline['first_message_seconds']:.2f} s; first to last"
        f" {pipeline['first_to_last_seconds']:.2f} s = {pipeline['steady_rate']:.1f} messages/s)"
    )
    print(
        f"bare smtplib, one connection: {bare['messages']} messages"
        f" ({bare['total_bytes'] / bare['messages'] / 1024:.1f} KiB each) in"
        f" {bare['seconds']:.2f} s = {bare['rate']:.1f} messages/s"
    )
    for key, name in (
        ("smtp_mailer_kept_connections", "SmtpMailer, kept connections"),
        ("smtp_mailer_connection_per_message", "SmtpMailer, a new connection per message"),
    ):
        stage = report[key]
        assert isinstance(stage, dict)
        print(
            f"{name}, {CONCURRENCY} at once: {stage['messages']} messages in"
            f" {stage['seconds']:.2f} s = {stage['rate']:.1f} messages/s"
        )
    print(
        f"pipeline / bare: {report['ratio_pipeline_to_bare']:.2f}"
        f" (steady {report['ratio_steady_to_bare']:.2f})"
    )
    if arguments.json:
        arguments.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
