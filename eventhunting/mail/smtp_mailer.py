"""Sends messages over kept SMTP connections, retrying transient failures with capped backoff."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid

import aiosmtplib
import msgspec
from prometheus_client import Counter
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from eventhunting.mail.smtp_url import SmtpEndpoint, parse_smtp_url
from eventhunting.settings import PREFIX, MailSettings, SettingsError

logger = logging.getLogger("eventhunting.mail")

RETRY_INITIAL_SECONDS = 1.0
"""First wait between two attempts; each later wait doubles, plus up to this much jitter."""
SERVICE_NOT_AVAILABLE = 421
"""The one 4xx reply about the server rather than the message: it is closing the channel."""
IDLE_CONNECTION_SECONDS = 30.0
"""A kept connection unused for this long is closed instead of reused. RFC 5321 asks servers
to wait 5 minutes for the next command, but many drop idle sessions sooner; one the server
dropped anyway is noticed when used and replaced at once (`SmtpMailer._attempt`)."""

CONNECTIONS_OPENED = Counter(
    "eventhunting_smtp_connections_opened_total",
    "SMTP connections opened (connected, STARTTLS, authenticated) by this process.",
)


class MailDeliveryError(Exception):
    """A message was not delivered; `smtp_code` is the server's reply code when it gave one."""

    def __init__(self, detail: str, *, smtp_code: int | None = None, attempts: int = 1) -> None:
        super().__init__(detail)
        self.detail = detail
        self.smtp_code = smtp_code
        self.attempts = attempts


class TransientMailError(MailDeliveryError):
    """Every attempt of this delivery met a failure that may pass (a 4xx reply): try later.

    A consumer-group worker lets it propagate: the entry stays pending and comes again
    after the retry delay, and counts towards dead-lettering like any failure of the entry.
    """


class MailServerUnavailable(TransientMailError, ConnectionError):
    """The server could not be reached, dropped the connection, timed out or answered 421.

    It is a `ConnectionError`, so the consumer-group runtime treats it as an outage: the entry
    waits, however long the server is down, and never goes to the dead letters for it.
    """


class PermanentMailError(MailDeliveryError):
    """The server refused for good (5xx), or the configuration cannot work: retrying won't help."""


class SentMessage(msgspec.Struct, frozen=True, kw_only=True):
    """The server accepted the message (for at least one recipient)."""

    message_id: str
    attempts: int
    refused_recipients: dict[str, int] = msgspec.field(default_factory=dict)


def unverified_tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def delivery_error(error: Exception) -> MailDeliveryError | None:
    """What an SMTP client failure means for the delivery (None: not an SMTP failure)."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return PermanentMailError(f"the SMTP server's TLS certificate is not trusted: {error}")
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        codes = [refusal.code for refusal in error.recipients]
        temporary = [code for code in codes if 400 <= code < 500]
        detail = f"every recipient was refused ({', '.join(map(str, codes))})"
        if SERVICE_NOT_AVAILABLE in codes:
            return MailServerUnavailable(detail, smtp_code=SERVICE_NOT_AVAILABLE)
        if temporary:
            return TransientMailError(detail, smtp_code=temporary[0])
        return PermanentMailError(detail, smtp_code=codes[0] if codes else None)
    if isinstance(error, aiosmtplib.SMTPResponseException):
        code, detail = error.code, f"the SMTP server answered {error.code} {error.message}"
        if code == SERVICE_NOT_AVAILABLE:
            return MailServerUnavailable(detail, smtp_code=code)
        if 400 <= code < 500:
            return TransientMailError(detail, smtp_code=code)
        if code >= 500:
            return PermanentMailError(detail, smtp_code=code)
        return MailServerUnavailable(detail, smtp_code=code)
    if isinstance(error, aiosmtplib.SMTPNotSupported):
        return PermanentMailError(f"the SMTP server does not support what we need: {error}")
    if isinstance(error, OSError | TimeoutError | aiosmtplib.SMTPException):
        # refused, reset or dropped connections, timeouts, TLS handshakes cut short
        return MailServerUnavailable(f"the SMTP server is unreachable: {error}")
    return None


@dataclass(slots=True)
class KeptConnection:
    """An open, authenticated connection between two messages, and when it was last used."""

    client: aiosmtplib.SMTP
    last_used: float


@contextmanager
def closed_on_failure(client: aiosmtplib.SMTP) -> Iterator[None]:
    """Close `client` if the block fails, and raise the failure as a `MailDeliveryError`."""
    try:
        yield
    except MailDeliveryError:
        client.close()
        raise
    except Exception as error:
        client.close()
        translated = delivery_error(error)
        if translated is None:
            raise
        raise translated from error
    except BaseException:  # cancelled: leave no connection behind
        client.close()
        raise


class SmtpMailer:
    """Delivers messages to one SMTP server over up to `connections` kept connections.

    A connection is opened (connect, EHLO, STARTTLS, AUTH) when a message finds none free,
    and kept for the next messages of this process, across batches, until it fails or sits
    unused for `idle_seconds`. Up to `connections` messages are sent at once, one a
    connection; more wait for a free one.

    A delivery makes up to `attempts` attempts while failures are transient (4xx replies,
    refused or dropped connections, timeouts), waiting `retry_initial_seconds` doubled each
    time (at most `retry_max_seconds`) plus up to `retry_initial_seconds` of jitter; it then
    raises the last failure as a
    `TransientMailError` (`MailServerUnavailable` for connection-level ones). A 5xx reply
    raises `PermanentMailError` at once. A failed connection is closed, never reused; a kept
    one that turns out to be gone (the server's idle timeout, a 421, a restart) is replaced
    by a new one within the same attempt, without a wait.
    """

    def __init__(
        self,
        endpoint: SmtpEndpoint,
        *,
        attempts: int = 5,
        retry_initial_seconds: float = RETRY_INITIAL_SECONDS,
        retry_max_seconds: float = 30.0,
        timeout_seconds: float = 30.0,
        connections: int = 1,
        idle_seconds: float = IDLE_CONNECTION_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        if connections < 1:
            raise ValueError("connections must be at least 1")
        self.endpoint = endpoint
        self.attempts = attempts
        self.retry_initial_seconds = retry_initial_seconds
        self.retry_max_seconds = retry_max_seconds
        self.timeout_seconds = timeout_seconds
        self.idle_seconds = idle_seconds
        self.clock = clock
        self.tls_context = (
            ssl.create_default_context() if endpoint.tls_verify else unverified_tls_context()
        )
        self.local_hostname = socket.gethostname()
        # A slot is a connection, open or not yet: at most `connections` exist at a time.
        self._slots = asyncio.Semaphore(connections)
        self._kept: list[KeptConnection] = []
        self.connections_opened = 0

    @classmethod
    def from_settings(cls, settings: MailSettings) -> SmtpMailer:
        """The mailer `EVENTHUNTING_SMTP_*` describe; without a URL a sender cannot start."""
        if settings.smtp_url is None:
            raise SettingsError(
                f"{PREFIX}SMTP_URL is required: the SMTP server that sends ticket mail"
                " (smtp://user:pass@host:port or smtps://...)"
            )
        return cls(
            parse_smtp_url(settings.smtp_url),
            attempts=settings.smtp_attempts,
            retry_max_seconds=settings.smtp_retry_max_seconds,
            timeout_seconds=settings.smtp_timeout_seconds,
            connections=settings.smtp_connections,
        )

    async def send(self, message: EmailMessage) -> SentMessage:
        """Deliver `message` to the recipients in its To/Cc/Bcc headers, from its From."""
        if message["Message-ID"] is None:
            message["Message-ID"] = make_msgid("mail")
        message_id = str(message["Message-ID"])
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.attempts),
            # min(initial * 2**(n-1), cap) plus up to `initial` of jitter, so that many
            # mailers refused at once do not come back at once.
            wait=wait_exponential(multiplier=self.retry_initial_seconds, max=self.retry_max_seconds)
            + wait_random(0, self.retry_initial_seconds),
            retry=retry_if_exception_type(TransientMailError),
            before_sleep=self._log_retry,
            reraise=True,
        )
        attempt_number = 0
        try:
            async for attempt in retrying:
                with attempt:
                    attempt_number = attempt.retry_state.attempt_number
                    refused = await self._attempt(message)
                    return SentMessage(
                        message_id=message_id,
                        attempts=attempt_number,
                        refused_recipients=refused,
                    )
        except TransientMailError as error:
            raise type(error)(
                f"{error.detail} (gave up after {attempt_number} attempts)",
                smtp_code=error.smtp_code,
                attempts=attempt_number,
            ) from error
        except PermanentMailError as error:
            error.attempts = attempt_number
            raise
        raise AssertionError("tenacity ended without a result or an error")  # pragma: no cover

    async def aclose(self) -> None:
        """Say QUIT on every kept connection (a mailer stopping)."""
        kept, self._kept = self._kept, []
        await asyncio.gather(*(self._quit(connection.client) for connection in kept))

    async def _attempt(self, message: EmailMessage) -> dict[str, int]:
        async with self._slots:
            client = await self._kept_client()
            if client is not None:
                try:
                    return await self._transact(client, message)
                except MailServerUnavailable as error:
                    # The server let the kept connection go while we did not use it (idle
                    # timeout, 421, restart): not a failure of this attempt yet.
                    logger.info(
                        "kept smtp connection lost; reconnecting",
                        extra={"reason": str(error), "smtp_code": error.smtp_code},
                    )
            client = await self._connect()
            return await self._transact(client, message)

    async def _kept_client(self) -> aiosmtplib.SMTP | None:
        """The most recently used kept connection still open and fresh; older ones are closed."""
        while self._kept:
            kept = self._kept.pop()
            if kept.client.is_connected and self.clock() - kept.last_used < self.idle_seconds:
                return kept.client
            await self._quit(kept.client)
        return None

    async def _transact(self, client: aiosmtplib.SMTP, message: EmailMessage) -> dict[str, int]:
        """Send one message over an open connection, and keep the connection for the next."""
        with closed_on_failure(client):
            refused, _ = await client.send_message(message)
        self._kept.append(KeptConnection(client, self.clock()))
        return {address: response.code for address, response in refused.items()}

    async def _connect(self) -> aiosmtplib.SMTP:
        """A new connection, encrypted and authenticated as the endpoint asks."""
        endpoint = self.endpoint
        client = aiosmtplib.SMTP(
            hostname=endpoint.host,
            port=endpoint.port,
            local_hostname=self.local_hostname,
            use_tls=endpoint.implicit_tls,
            start_tls=False,  # decided below, after EHLO, by `endpoint.starttls`
            timeout=self.timeout_seconds,
            tls_context=self.tls_context,
        )
        with closed_on_failure(client):
            await client.connect()
            await client.ehlo()
            encrypted = endpoint.implicit_tls
            if not encrypted and endpoint.starttls != "never":
                if client.supports_extension("starttls"):
                    await client.starttls(tls_context=self.tls_context)
                    encrypted = True
                elif endpoint.starttls == "required":
                    raise PermanentMailError(
                        "the SMTP server does not offer STARTTLS, which starttls=required needs"
                    )
            if endpoint.username is not None:
                if not encrypted and endpoint.starttls != "never":
                    raise PermanentMailError(
                        "the SMTP server offers no STARTTLS: refusing to send the password in"
                        " clear text (use smtps://, or starttls=never to allow it)"
                    )
                await client.login(endpoint.username, endpoint.password or "")
        self.connections_opened += 1
        CONNECTIONS_OPENED.inc()
        return client

    @staticmethod
    async def _quit(client: aiosmtplib.SMTP) -> None:
        # A message is accepted once DATA got its 250; a failing QUIT changes nothing.
        if not client.is_connected:
            client.close()
            return
        try:
            await client.quit()
        except (aiosmtplib.SMTPException, OSError):
            client.close()

    def _log_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        logger.warning(
            "smtp attempt failed; retrying",
            extra={
                "attempt": state.attempt_number,
                "attempts": self.attempts,
                "retry_in_seconds": round(wait, 3),
                "reason": str(error),
                "smtp_code": getattr(error, "smtp_code", None),
                "smtp_server": f"{self.endpoint.host}:{self.endpoint.port}",
            },
        )
