"""The asyncio TCP server: reads wire messages, runs commands, writes replies."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from eventhunting.standins.mongo import wire
from eventhunting.standins.mongo.commands import (
    COMMANDS,
    CommandContext,
    Handler,
    resolve_session,
    topology_version,
)
from eventhunting.standins.mongo.error_labels import STATE_CHANGE_CODES, error_labels
from eventhunting.standins.mongo.errors import COMMAND_NOT_FOUND, CommandError
from eventhunting.standins.mongo.failpoints import FailAction
from eventhunting.standins.mongo.snapshots import abort
from eventhunting.standins.mongo.state import Connection, ServerState
from eventhunting.standins.mongo.write_concerns import (
    WRITE_CONCERN_COMMANDS,
    unsatisfied_write_concern,
)

log = logging.getLogger("eventhunting.standins.mongo")

REAPER_INTERVAL_SECONDS = 0.25
WRITE_BUFFER_HIGH_WATER = 4 * 1024 * 1024
NOT_IN_TRANSACTION_ABORT = frozenset({"commitTransaction", "abortTransaction"})


class CloseConnection(Exception):
    """The failCommand failpoint asked to drop the connection without replying."""


class StandinServer:
    def __init__(self, state: ServerState) -> None:
        self.state = state
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._reaper: asyncio.Task[None] | None = None
        self._request_ids = 0

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(
            self._serve_connection, host, port, reuse_address=True, limit=2**20
        )
        self._reaper = asyncio.create_task(self._reap_forever(), name="mongo-standin-reaper")
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(REAPER_INTERVAL_SECONDS)
            try:
                for transaction in self.state.reap():
                    log.debug(
                        "transaction aborted",
                        extra={"txn_number": transaction.number},
                    )
            except Exception:
                log.exception(
                    "reaper failed",
                )

    def _next_request_id(self) -> int:
        self._request_ids = (self._request_ids + 1) & 0x7FFFFFFF
        return self._request_ids

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        self.state.open_connections += 1
        local = writer.get_extra_info("sockname") or ("127.0.0.1", 0)
        peer = writer.get_extra_info("peername") or ("?", 0)
        connection = Connection(
            id=next(self.state.connection_ids),
            peer=f"{peer[0]}:{peer[1]}",
            local_host=str(local[0]),
            local_port=int(local[1]),
        )
        try:
            await self._serve_messages(connection, reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, CloseConnection):
            pass
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("connection failed", extra={"peer": connection.peer})
        finally:
            self.state.open_connections -= 1
            self._connections.discard(task)
            writer.transport.abort()

    async def _serve_messages(
        self, connection: Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:
            header = await reader.readexactly(16)
            length, request_id, _, op_code = wire.HEADER.unpack(header)
            if length < 16 or length > wire.MAX_MESSAGE_SIZE:
                return
            payload = await reader.readexactly(length - 16)
            if op_code == wire.OP_MSG:
                try:
                    request = wire.decode_op_msg(request_id, payload)
                except CommandError as error:
                    writer.write(
                        wire.encode_op_msg(self._next_request_id(), request_id, error.reply())
                    )
                    continue
                reply = await self.execute(connection, request.command, request.database)
                if request.more_to_come:
                    continue
                writer.write(wire.encode_op_msg(self._next_request_id(), request_id, reply))
            elif op_code == wire.OP_QUERY:
                request = wire.decode_op_query(request_id, payload)
                reply = await self.execute(connection, request.command, request.database)
                writer.write(wire.encode_op_reply(self._next_request_id(), request_id, reply))
            else:
                log.warning("unsupported opcode", extra={"op_code": op_code})
                return
            if writer.transport.get_write_buffer_size() > WRITE_BUFFER_HIGH_WATER:
                await writer.drain()

    async def execute(
        self, connection: Connection, command: dict[str, Any], database: str
    ) -> dict[str, Any]:
        """Run one command and return its reply document (raises CloseConnection)."""
        if not command:
            return CommandError(COMMAND_NOT_FOUND, "no command given").reply()
        name = next(iter(command))
        handler = COMMANDS.get(name)
        if handler is None:
            return CommandError(COMMAND_NOT_FOUND, f"no such command: '{name}'").reply()
        ctx = CommandContext(self.state, connection, database, command, name)
        action = None
        if name != "configureFailPoint":
            action = self.state.fail_command.trigger(
                name, connection.app_name, takes_write_concern=name in WRITE_CONCERN_COMMANDS
            )
        if action is not None:
            await self._before(action)
        failed_code: int | None
        if action is not None and action.error_code is not None:
            # Answered before the command reaches its session: a transaction stays as it was.
            failed_code = action.error_code
            reply = CommandError(failed_code, "Failing command via 'failCommand' failpoint").reply()
        else:
            reply, failed_code = await self._run(ctx, handler)
        self._add_failure_details(ctx, reply, failed_code, action)
        return reply

    def _add_failure_details(
        self,
        ctx: CommandContext,
        reply: dict[str, Any],
        failed_code: int | None,
        action: FailAction | None,
    ) -> None:
        """Add the write concern error, error labels and topology version MongoDB would."""
        write_concern_error = None
        if ctx.name in WRITE_CONCERN_COMMANDS:
            write_concern_error = (
                action.write_concern_error if action is not None else None
            ) or unsatisfied_write_concern(ctx.command)
        write_concern_code = None
        if write_concern_error is not None:
            reply["writeConcernError"] = write_concern_error
            write_concern_code = write_concern_error.get("code")
        if action is not None and action.error_labels is not None:
            labels = action.error_labels  # failCommand's errorLabels replace computed ones
        else:
            labels = error_labels(ctx.name, ctx.command, failed_code, write_concern_code)
        if labels:
            reply["errorLabels"] = labels
        if failed_code in STATE_CHANGE_CODES or write_concern_code in STATE_CHANGE_CODES:
            reply["topologyVersion"] = topology_version(self.state)

    async def _run(
        self, ctx: CommandContext, handler: Handler
    ) -> tuple[dict[str, Any], int | None]:
        """The command's own reply, and the code it failed with (None when it succeeded)."""
        max_time = ctx.command.get("maxTimeMS")
        if isinstance(max_time, int | float) and max_time > 0:
            ctx.deadline = time.monotonic() + max_time / 1000
        try:
            resolve_session(ctx)
            if ctx.cached_reply is not None:
                return dict(ctx.cached_reply), None
            reply = await handler(ctx)
        except CommandError as error:
            self._abort_on_error(ctx, error.message)
            return error.reply(), error.code
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.exception("command failed", extra={"command": ctx.name})
            self._abort_on_error(ctx, str(error))
            failure = CommandError(1, f"stand-in internal error in {ctx.name}: {error!r}")
            return failure.reply(), failure.code
        if "writeErrors" in reply:
            self._abort_on_error(ctx, "a write failed")
        reply["ok"] = 1.0
        if ctx.retryable_txn_number is not None and ctx.session is not None:
            # A retry gets this reply; its write concern is checked (and labelled) again.
            ctx.session.retried_write = (ctx.retryable_txn_number, dict(reply))
        return reply, None

    def _abort_on_error(self, ctx: CommandContext, reason: str) -> None:
        transaction = ctx.transaction
        if (
            transaction is not None
            and transaction.active
            and ctx.name not in NOT_IN_TRANSACTION_ABORT
        ):
            abort(self.state.store, transaction, reason)

    async def _before(self, action: FailAction) -> None:
        if action.block_seconds:
            await asyncio.sleep(action.block_seconds)
        if action.close_connection:
            raise CloseConnection
