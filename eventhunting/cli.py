"""The `eventhunting` command: API server, workers, the dev system, stand-ins and maintenance."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from datetime import datetime
from typing import TYPE_CHECKING

from eventhunting import __version__
from eventhunting.settings import Settings, SettingsError, SettingsT, StoreSettings, load_settings
from eventhunting.structured_logging import configure_logging

if TYPE_CHECKING:
    from litestar import Litestar

PROMETHEUS_MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

Command = Callable[[argparse.Namespace], int]

DESCRIPTION = """\
EventHunting: an event-sourced ticketing backend.

Start everything on one machine with no configuration:   eventhunting dev
Serve the HTTP API against configured Redis and MongoDB:  eventhunting api
Run background workers:                                   eventhunting worker projector archiver

Settings come from EVENTHUNTING_* environment variables (see README).
"""


def settings_or_exit(schema: type[SettingsT]) -> SettingsT:
    """The settings a command uses (`schema`), or one line naming the bad variable and exit 2."""
    try:
        settings = load_settings(schema=schema)
    except SettingsError as error:
        print(f"eventhunting: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.log_level)
    return settings


def app_serving(routes: str) -> Litestar:
    """The API app of one server process, from the environment's settings."""
    from eventhunting.api.app import create_app, freeze_startup_heap

    app = create_app(settings_or_exit(Settings), routes=routes)
    freeze_startup_heap()
    return app


def api_app() -> Litestar:
    """uvicorn's factory of `eventhunting api`: every route."""
    return app_serving("all")


def payments_api_app() -> Litestar:
    """uvicorn's factory of `eventhunting api --only payments`."""
    return app_serving("payments")


API_FACTORIES = {"all": "eventhunting.cli:api_app", "payments": "eventhunting.cli:payments_api_app"}
"""The factory each server process builds its app with, by `--only` (uvicorn imports it)."""


def run_api(arguments: argparse.Namespace) -> int:
    import uvicorn

    # Checked here once, so a bad setting stops the command before any process starts; each
    # server process then builds its own app and services (bootstrap.py) from the same
    # environment.
    settings_or_exit(Settings)
    with ExitStack() as stack:
        if arguments.workers > 1 and PROMETHEUS_MULTIPROCESS_VARIABLE not in os.environ:
            # Every process's counters in one /metrics answer, whichever process serves it.
            os.environ[PROMETHEUS_MULTIPROCESS_VARIABLE] = stack.enter_context(
                tempfile.TemporaryDirectory(prefix="eventhunting-metrics-")
            )
        uvicorn.run(
            API_FACTORIES[arguments.only or "all"],
            factory=True,
            workers=arguments.workers,
            host=arguments.host,
            port=arguments.port,
            log_config=None,
            access_log=False,
            loop="uvloop" if arguments.fast_loop else "asyncio",
            http="httptools" if arguments.fast_loop else "h11",
            timeout_graceful_shutdown=10,
            # The peer stays the connection's: EVENTHUNTING_TRUSTED_PROXIES decides whether
            # X-Forwarded-For is believed (uvicorn would believe it from 127.0.0.1).
            proxy_headers=False,
        )
    return 0


def run_workers(arguments: argparse.Namespace) -> int:
    from eventhunting.workers import SETTINGS_CHECKS, WORKERS, run_named_workers

    unknown = [name for name in arguments.names if name not in WORKERS]
    if unknown:
        known = ", ".join(sorted(WORKERS))
        print(f"eventhunting: unknown worker {unknown[0]!r}; known: {known}", file=sys.stderr)
        return 2
    settings = settings_or_exit(Settings)
    for name in dict.fromkeys(arguments.names):
        check = SETTINGS_CHECKS.get(name)
        try:
            if check is not None:
                check(settings)
        except SettingsError as error:
            print(f"eventhunting: {error}", file=sys.stderr)
            return 2
    metrics_address = (
        None if arguments.metrics_port is None else (arguments.metrics_host, arguments.metrics_port)
    )
    return asyncio.run(
        run_named_workers(settings, arguments.names, metrics_address=metrics_address)
    )


def run_dev(arguments: argparse.Namespace) -> int:
    from eventhunting.dev_system import run_dev_system

    return run_dev_system(port=arguments.port, data_dir=arguments.data_dir)


def run_standin(arguments: argparse.Namespace) -> int:
    from eventhunting.standins import run_standin as run_named_standin

    return run_named_standin(arguments.name, arguments.standin_arguments)


def run_restore(arguments: argparse.Namespace) -> int:
    from eventhunting.maintenance import restore_command

    return asyncio.run(restore_command(settings_or_exit(StoreSettings), force=arguments.force))


def run_replay(arguments: argparse.Namespace) -> int:
    from eventhunting.maintenance import replay_command

    return asyncio.run(
        replay_command(
            settings_or_exit(StoreSettings),
            names=arguments.projection,
            from_archive=arguments.from_archive,
            jobs=arguments.jobs,
        )
    )


def job_count(text: str) -> int:
    """A number of processes, as a command-line argument: 1 to 1024."""
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= count <= 1024:
        raise argparse.ArgumentTypeError("must be between 1 and 1024")
    return count


def rfc3339_argument(text: str) -> datetime:
    """An RFC 3339 time with an offset, as a command-line argument."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs an offset, e.g. +07:00 or Z")
    return moment


def run_export(arguments: argparse.Namespace) -> int:
    from pathlib import Path

    from eventhunting.export import ExportQuery, export_command

    settings = settings_or_exit(StoreSettings)
    query = ExportQuery(since=arguments.since, until=arguments.until, event_id=arguments.event)
    if arguments.format == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            print(
                "eventhunting export: Parquet needs pyarrow: pip install 'eventhunting[analytics]'",
                file=sys.stderr,
            )
            return 2
    return asyncio.run(
        export_command(settings, Path(arguments.out), export_format=arguments.format, query=query)
    )


def worker_count(text: str) -> int:
    """The number of API server processes: a whole number, 1 or more."""
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a process count (a whole number >= 1)")
    return count


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eventhunting",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"eventhunting {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    api = commands.add_parser("api", help="serve the HTTP API")
    api.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    api.add_argument("--port", type=int, default=8000, help="port to bind (default 8000)")
    api.add_argument(
        "--only",
        choices=["payments"],
        help="serve only these routes: `payments` = VNPAY's IPN and return page (and health),"
        " for a process VNPAY's IPN URL names (docs/payments.md)",
    )
    api.add_argument(
        "--no-fast-loop",
        dest="fast_loop",
        action="store_false",
        help="use asyncio and h11 instead of uvloop and httptools",
    )
    api.add_argument(
        "--workers",
        type=worker_count,
        default=1,
        metavar="N",
        help="server processes sharing the port; a dead one is restarted (default 1)",
    )
    api.set_defaults(handler=run_api)

    worker = commands.add_parser("worker", help="run one or more background workers")
    worker.add_argument(
        "names",
        nargs="+",
        metavar="NAME",
        help="a worker: archiver, projector, expirer, reconciler, mailer",
    )
    worker.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve Prometheus metrics on this port (default: not served)",
    )
    worker.add_argument(
        "--metrics-host", default="127.0.0.1", help="address for --metrics-port (default 127.0.0.1)"
    )
    worker.set_defaults(handler=run_workers)

    dev = commands.add_parser(
        "dev", help="run the whole system locally (Redis, stand-ins, API, workers)"
    )
    dev.add_argument("--port", type=int, default=8000, help="API port (default 8000)")
    dev.add_argument(
        "--data-dir",
        default=".eventhunting",
        help="where Redis and the MongoDB stand-in keep data (default .eventhunting)",
    )
    dev.set_defaults(handler=run_dev)

    standin = commands.add_parser(
        "standin", help="run a development stand-in for an external system"
    )
    standin.add_argument("name", choices=["mongo", "smtp", "vnpay"])
    standin.add_argument(
        "standin_arguments",
        nargs=argparse.REMAINDER,
        metavar="...",
        help="the stand-in's own options (e.g. --port N)",
    )
    standin.set_defaults(handler=run_standin)

    restore = commands.add_parser(
        "restore", help="rebuild the Redis event store from the MongoDB archive"
    )
    restore.add_argument(
        "--force",
        action="store_true",
        help="replace existing event-store keys instead of refusing",
    )
    restore.set_defaults(handler=run_restore)

    replay = commands.add_parser(
        "replay", help="rebuild read models into fresh collections and swap them in"
    )
    replay.add_argument(
        "--projection",
        action="append",
        metavar="NAME",
        help="only this projection (repeatable; default all)",
    )
    replay.add_argument(
        "--from-archive",
        action="store_true",
        help="read events from the MongoDB archive instead of the Redis partition logs",
    )
    replay.add_argument(
        "--jobs",
        type=job_count,
        default=1,
        metavar="N",
        help="spread the partitions over N processes (default 1; at most one per partition)",
    )
    replay.set_defaults(handler=run_replay)

    export = commands.add_parser(
        "export", help="write the archived event history as Parquet or JSON lines"
    )
    export.add_argument("--format", choices=["parquet", "jsonl"], required=True)
    export.add_argument(
        "--since", type=rfc3339_argument, help="events that occurred at or after this (RFC 3339)"
    )
    export.add_argument(
        "--until", type=rfc3339_argument, help="events that occurred before this (RFC 3339)"
    )
    export.add_argument(
        "--event", metavar="ID", help="only this catalog event's stream and its orders' streams"
    )
    export.add_argument("out", metavar="OUT", help="file to write")
    export.set_defaults(handler=run_export)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    arguments = parser.parse_args(argv)
    handler: Command = arguments.handler
    try:
        return handler(arguments)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
