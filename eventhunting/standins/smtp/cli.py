"""Command line: `eventhunting standin smtp --smtp-port N --http-port M [--data-dir D]`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import socket
import warnings
from collections.abc import Iterator
from pathlib import Path

import msgspec
import uvicorn

from eventhunting.standins.smtp.faults import FaultPlan
from eventhunting.standins.smtp.http_app import create_http_app
from eventhunting.standins.smtp.inbox import Inbox
from eventhunting.standins.smtp.smtp_server import (
    HOST_NAME,
    IDLE_TIMEOUT_SECONDS,
    SinkHandler,
    SmtpListener,
)
from eventhunting.standins.smtp.storage import MessageFolder
from eventhunting.standins.smtp.tls import self_signed_context
from eventhunting.structured_logging import configure_logging

log = logging.getLogger("eventhunting.standins.smtp")


def user_and_password(value: str) -> tuple[str, str]:
    user, separator, password = value.partition(":")
    if not separator or not user:
        raise argparse.ArgumentTypeError("expected USER:PASSWORD")
    return user, password


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="eventhunting standin smtp",
        description="SMTP sink with an inbox page and a JSON API, for development and tests.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--smtp-port", type=int, default=1025, help="SMTP port (0: any free)")
    parser.add_argument("--http-port", type=int, default=8025, help="inbox and API port")
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="keep messages here across restarts"
    )
    parser.add_argument(
        "--user",
        type=user_and_password,
        action="append",
        default=[],
        metavar="USER:PASSWORD",
        help="accept only these AUTH credentials (repeatable; default: any)",
    )
    parser.add_argument("--require-auth", action="store_true", help="refuse mail before AUTH")
    parser.add_argument("--no-starttls", action="store_true", help="do not offer STARTTLS")
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=IDLE_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help="close a session after this long without a command, as servers do (default 300)",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    return parser.parse_args(argv)


class EmbeddedHttpServer(uvicorn.Server):
    """uvicorn inside the sink's loop; the sink's own signal handlers stop it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def serve(arguments: argparse.Namespace) -> int:
    data_dir: Path | None = arguments.data_dir
    inbox = Inbox(MessageFolder(data_dir) if data_dir is not None else None)
    try:
        loaded = inbox.load()
    except (OSError, ValueError, msgspec.DecodeError) as error:
        log.error(
            "cannot load the data folder", extra={"data_dir": str(data_dir), "error": str(error)}
        )
        return 1
    plan = FaultPlan()
    listener = SmtpListener(
        SinkHandler(inbox, plan),
        host=arguments.host,
        port=arguments.smtp_port,
        tls_context=None if arguments.no_starttls else self_signed_context(HOST_NAME),
        users=dict(arguments.user),
        auth_required=arguments.require_auth,
        idle_timeout_seconds=arguments.idle_timeout,
    )
    try:
        smtp_port = await listener.start()
        http_socket = listening_socket(arguments.host, arguments.http_port)
    except OSError as error:
        await listener.stop()
        log.error("cannot listen", extra={"host": arguments.host, "error": str(error)})
        return 1
    http_port = int(http_socket.getsockname()[1])
    http_server = EmbeddedHttpServer(
        uvicorn.Config(
            create_http_app(inbox, plan, listener),
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=5,
        )
    )
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    http_task = asyncio.create_task(http_server.serve(sockets=[http_socket]))
    host = url_host(arguments.host)
    log.info(
        "smtp sink listening",
        extra={
            "smtp_url": f"smtp://{host}:{smtp_port}",
            "inbox_url": f"http://{host}:{http_port}/",
            "api_url": f"http://{host}:{http_port}/api/messages",
            "starttls": not arguments.no_starttls,
            "auth": "configured users" if arguments.user else "any credentials",
            "data_dir": str(data_dir) if data_dir is not None else None,
            "messages_loaded": loaded,
        },
    )
    stop_waiter = asyncio.create_task(stopping.wait())
    await asyncio.wait({http_task, stop_waiter}, return_when=asyncio.FIRST_COMPLETED)
    stop_waiter.cancel()
    http_server.should_exit = True
    await http_task
    await listener.stop()
    http_socket.close()
    log.info("smtp sink stopped", extra={"messages": len(inbox)})
    return 0


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    configure_logging(arguments.log_level.upper())
    if arguments.log_level != "debug":
        # aiosmtpd logs every command at info and a deprecation warning on every AUTH.
        logging.getLogger("mail.log").setLevel(logging.ERROR)
    # AUTH without STARTTLS is what a local sink is for; aiosmtpd warns on every session.
    warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS", UserWarning)
    return asyncio.run(serve(arguments))
