"""The SMTP side of the sink: aiosmtpd sessions that keep mail or apply injected faults."""

from __future__ import annotations

import asyncio
import hmac
import logging
import ssl
import weakref
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from eventhunting.standins.smtp.faults import DropFault, FaultPlan, RefuseFault
from eventhunting.standins.smtp.inbox import Inbox

log = logging.getLogger("eventhunting.standins.smtp")

HOST_NAME = "eventhunting-smtp-sink"
DATA_SIZE_LIMIT = 32 * 1024 * 1024
REBIND_RETRY_SECONDS = 0.2


class SinkHandler:
    """aiosmtpd hooks: apply the fault plan at RCPT TO and DATA, else keep the message."""

    def __init__(self, inbox: Inbox, plan: FaultPlan) -> None:
        self.inbox = inbox
        self.plan = plan
        # A transaction refused at its first RCPT TO is refused at every later one too.
        self._refused: weakref.WeakKeyDictionary[Envelope, str] = weakref.WeakKeyDictionary()

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        refusal = self._refused.get(envelope)
        if refusal is not None:
            return refusal
        fault = self.plan.take("rcpt")
        if isinstance(fault, RefuseFault):
            self.plan.counters.refused += 1
            self._refused[envelope] = fault.reply()
            log.info("refused a message at RCPT TO", extra={"reply": fault.reply()})
            return fault.reply()
        if isinstance(fault, DropFault):
            await self._drop(server, "rcpt")
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        fault = self.plan.take("data")
        if isinstance(fault, RefuseFault):
            self.plan.counters.refused += 1
            log.info("refused a message after DATA", extra={"reply": fault.reply()})
            return fault.reply()
        if isinstance(fault, DropFault):
            await self._drop(server, "data")
        raw = envelope.original_content or b""
        try:
            message = await self.inbox.add(
                mail_from=envelope.mail_from or "",
                rcpt_tos=envelope.rcpt_tos,
                raw=raw,
                auth_user=session.auth_data if isinstance(session.auth_data, str) else None,
            )
        except OSError as error:
            log.error("cannot store a message", extra={"error": str(error)})
            return "451 4.3.0 The SMTP sink cannot store the message"
        self.plan.counters.accepted += 1
        envelope_view = message.envelope
        log.info(
            "message accepted",
            extra={
                "message_id": envelope_view.id,
                "mail_from": envelope_view.mail_from,
                "rcpt_tos": envelope_view.rcpt_tos,
                "size": envelope_view.size,
            },
        )
        return f"250 2.0.0 OK queued as {envelope_view.id}"

    async def _drop(self, server: SMTP, stage: str) -> None:
        self.plan.counters.dropped += 1
        log.info("dropping a connection mid-transaction", extra={"stage": stage})
        transport: Any = server.transport
        if transport is not None:
            transport.abort()
        # connection_lost cancels this session's task; nothing is answered or kept.
        await asyncio.Event().wait()


class Credentials:
    """AUTH PLAIN/LOGIN: any user and password, or only the configured ones."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self.users = dict(users)

    def __call__(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user = auth_data.login.decode("utf-8", errors="replace")
        if self.users:
            expected = self.users.get(user)
            if expected is None or not hmac.compare_digest(
                expected.encode(), bytes(auth_data.password)
            ):
                log.info("AUTH refused", extra={"user": user, "mechanism": mechanism})
                return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=user)


IDLE_TIMEOUT_SECONDS = 300.0
"""RFC 5321's 5 minutes: a session without a command this long is closed (421 and hang up)."""


class SinkSmtp(SMTP):
    """One SMTP session that registers itself, so an outage can close every connection."""

    def __init__(self, connections: set[SinkSmtp], handler: SinkHandler, **options: Any) -> None:
        super().__init__(handler, **options)
        self._connections = connections

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._connections.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self._connections.discard(self)
        super().connection_lost(error)


class SmtpListener:
    """Listens for SMTP; can stop listening for a while (an outage) and come back by itself."""

    def __init__(
        self,
        handler: SinkHandler,
        *,
        host: str,
        port: int,
        tls_context: ssl.SSLContext | None,
        users: Mapping[str, str],
        auth_required: bool,
        idle_timeout_seconds: float = IDLE_TIMEOUT_SECONDS,
    ) -> None:
        self.handler = handler
        self.idle_timeout_seconds = idle_timeout_seconds
        self.host = host
        self.port = port
        self.tls_context = tls_context
        self.credentials = Credentials(users)
        self.auth_required = auth_required
        self.connections: set[SinkSmtp] = set()
        self.down_until: datetime | None = None
        self._server: asyncio.Server | None = None
        self._return_timer: asyncio.TimerHandle | None = None
        self._returning: asyncio.Task[None] | None = None

    @property
    def listening(self) -> bool:
        return self._server is not None

    def _session(self) -> SinkSmtp:
        return SinkSmtp(
            self.connections,
            self.handler,
            hostname=HOST_NAME,
            data_size_limit=DATA_SIZE_LIMIT,
            enable_SMTPUTF8=True,
            tls_context=self.tls_context,
            authenticator=self.credentials,
            auth_required=self.auth_required,
            # A local sink: clients may authenticate without STARTTLS.
            auth_require_tls=False,
            timeout=self.idle_timeout_seconds,
        )

    async def start(self) -> int:
        """Listen; return the port (the one chosen by the system when asked for 0)."""
        self._server = await asyncio.get_running_loop().create_server(
            self._session, self.host, self.port
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    def go_down(self, seconds: float) -> datetime:
        """Refuse connections for `seconds` (a later outage replaces an earlier one)."""
        self._cancel_return()
        if self._returning is not None:
            self._returning.cancel()
            self._returning = None
        if self._server is not None:
            self._server.close()
            self._server = None
        for session in list(self.connections):
            transport: Any = session.transport
            if transport is not None:
                transport.abort()
        self.down_until = datetime.now(UTC) + timedelta(seconds=seconds)
        self._return_timer = asyncio.get_running_loop().call_later(seconds, self._return_later)
        log.info("SMTP is down", extra={"seconds": seconds, "port": self.port})
        return self.down_until

    def _return_later(self) -> None:
        self._return_timer = None
        self._returning = asyncio.get_running_loop().create_task(self.come_back())

    async def come_back(self) -> None:
        """Listen again on the same port (now, when called during an outage)."""
        self._cancel_return()
        while self._server is None:
            try:
                await self.start()
            except OSError as error:
                log.warning("cannot listen again yet", extra={"error": str(error)})
                await asyncio.sleep(REBIND_RETRY_SECONDS)
        if self.down_until is not None:
            log.info("SMTP is back", extra={"port": self.port})
        self.down_until = None

    def _cancel_return(self) -> None:
        if self._return_timer is not None:
            self._return_timer.cancel()
            self._return_timer = None

    async def stop(self) -> None:
        self._cancel_return()
        if self._returning is not None:
            self._returning.cancel()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for session in list(self.connections):
            transport: Any = session.transport
            if transport is not None:
                transport.abort()
