"""Sends one message over SMTP, retrying transient failures with capped, jittered backoff."""

from __future__ import annotations

import logging
import socket
import ssl
from email.message import EmailMessage
from email.utils import make_msgid

import aiosmtplib
import msgspec
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


class SmtpMailer:
    """Delivers messages to one SMTP server; one connection per delivery.

    A delivery makes up to `attempts` attempts while failures are transient (4xx replies,
    refused or dropped connections, timeouts), waiting `retry_initial_seconds` doubled each
    time (at most `retry_max_seconds`) plus up to `retry_initial_seconds` of jitter; it then
    raises the last failure as a
    `TransientMailError` (`MailServerUnavailable` for connection-level ones). A 5xx reply
    raises `PermanentMailError` at once.
    """

    def __init__(
        self,
        endpoint: SmtpEndpoint,
        *,
        attempts: int = 5,
        retry_initial_seconds: float = RETRY_INITIAL_SECONDS,
        retry_max_seconds: float = 30.0,
        timeout_seconds: float = 30.0,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.endpoint = endpoint
        self.attempts = attempts
        self.retry_initial_seconds = retry_initial_seconds
        self.retry_max_seconds = retry_max_seconds
        self.timeout_seconds = timeout_seconds
        self.tls_context = (
            ssl.create_default_context() if endpoint.tls_verify else unverified_tls_context()
        )
        self.local_hostname = socket.gethostname()

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

    async def _attempt(self, message: EmailMessage) -> dict[str, int]:
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
        try:
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
            refused, _ = await client.send_message(message)
            await self._quit(client)
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
        return {address: response.code for address, response in refused.items()}

    @staticmethod
    async def _quit(client: aiosmtplib.SMTP) -> None:
        # The message is accepted once DATA got its 250; a failing QUIT changes nothing.
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
