"""Command line: `python -m eventhunting.standins.mongo --host H --port N [--data-file PATH]`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import time
from pathlib import Path

import bson.errors

from eventhunting.standins.mongo import persistence
from eventhunting.standins.mongo.heap import FrozenBetweenCompleteCollections
from eventhunting.standins.mongo.server import StandinServer
from eventhunting.standins.mongo.state import ServerState, Settings
from eventhunting.standins.mongo.storage import Store
from eventhunting.structured_logging import configure_logging

log = logging.getLogger("eventhunting.standins.mongo")

FLUSH_INTERVAL_SECONDS = 1.0


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="eventhunting standin mongo",
        description="MongoDB wire-protocol stand-in for development and tests only.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=27017, help="port to listen on (0: any free)")
    parser.add_argument("--data-file", type=Path, default=None, help="keep data in this file")
    parser.add_argument("--replica-set", default="rs0", help="replica set name hello reports")
    parser.add_argument(
        "--transaction-lifetime-limit-seconds",
        type=float,
        default=60.0,
        help="abort transactions open longer than this",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    return parser.parse_args(argv)


async def _flush_forever(state: ServerState, path: Path) -> None:
    saved = state.store.changes
    while True:
        await asyncio.sleep(FLUSH_INTERVAL_SECONDS)
        if state.store.changes == saved:
            continue
        saved = state.store.changes
        snapshot = persistence.capture(state.store)
        try:
            await asyncio.to_thread(persistence.write, path, snapshot)
        except OSError:
            log.exception("saving the data file failed", extra={"data_file": str(path)})


async def serve(arguments: argparse.Namespace) -> int:
    # The process is the stand-in's alone: the collector's policy is set for the data it holds.
    # A collection may end in any thread (saving the data file runs in one).
    loop = asyncio.get_running_loop()
    FrozenBetweenCompleteCollections(schedule=loop.call_soon_threadsafe).install()
    store = Store()
    data_file: Path | None = arguments.data_file
    loaded = 0
    try:
        if data_file is not None and data_file.exists():  # noqa: ASYNC240 - once, before serving
            loaded = persistence.load(data_file, store)
    except (OSError, ValueError, bson.errors.BSONError) as error:
        log.error(
            "cannot load the data file",
            extra={"data_file": str(data_file), "error": str(error)},
        )
        return 1
    state = ServerState(
        Settings(
            replica_set_name=arguments.replica_set,
            transaction_lifetime_limit_seconds=arguments.transaction_lifetime_limit_seconds,
        ),
        store,
    )
    server = StandinServer(state)
    try:
        port = await server.start(arguments.host, arguments.port)
    except OSError as error:
        log.error(
            "cannot listen",
            extra={
                "host": arguments.host,
                "port": arguments.port,
                "error": str(error),
            },
        )
        return 1
    log.info(
        "mongo stand-in listening",
        extra={
            "host": arguments.host,
            "port": port,
            "replica_set": arguments.replica_set,
            "data_file": str(data_file) if data_file else None,
            "documents_loaded": loaded,
        },
    )
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    flusher = asyncio.create_task(_flush_forever(state, data_file)) if data_file else None
    started = time.monotonic()
    await stopping.wait()
    if flusher is not None:
        flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flusher
    await server.stop()
    if data_file is not None:
        persistence.write(data_file, persistence.capture(state.store))
    log.info(
        "mongo stand-in stopped",
        extra={"uptime_seconds": round(time.monotonic() - started, 3)},
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    configure_logging(arguments.log_level.upper())
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        return asyncio.run(serve(arguments))
    return uvloop.run(serve(arguments))
