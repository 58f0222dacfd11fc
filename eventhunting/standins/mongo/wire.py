"""MongoDB wire protocol framing: OP_MSG (with document sequences), OP_QUERY and OP_REPLY."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import bson

from eventhunting.standins.mongo.errors import BAD_VALUE, CommandError

OP_REPLY = 1
OP_QUERY = 2004
OP_COMPRESSED = 2012
OP_MSG = 2013

HEADER = struct.Struct("<iiii")
INT32 = struct.Struct("<i")
UINT32 = struct.Struct("<I")
OP_REPLY_PREFIX = struct.Struct("<iqii")

CHECKSUM_PRESENT = 1 << 0
MORE_TO_COME = 1 << 1
EXHAUST_ALLOWED = 1 << 16

MAX_MESSAGE_SIZE = 48_000_000


@dataclass
class Request:
    """One decoded client message: a command document and how to answer it."""

    request_id: int
    op_code: int
    command: dict[str, Any]
    database: str
    more_to_come: bool = False
    exhaust_allowed: bool = False
    sequences: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def decode_op_msg(request_id: int, payload: bytes) -> Request:
    (flags,) = UINT32.unpack_from(payload, 0)
    end = len(payload) - (4 if flags & CHECKSUM_PRESENT else 0)
    position = 4
    body: dict[str, Any] | None = None
    sequences: dict[str, list[dict[str, Any]]] = {}
    while position < end:
        kind = payload[position]
        position += 1
        (size,) = INT32.unpack_from(payload, position)
        if kind == 0:
            body = bson.decode(payload[position : position + size])
        elif kind == 1:
            name_end = payload.index(b"\x00", position + 4)
            identifier = payload[position + 4 : name_end].decode()
            sequences[identifier] = bson.decode_all(payload[name_end + 1 : position + size])
        else:
            raise CommandError(BAD_VALUE, f"Unknown OP_MSG section kind {kind}")
        position += size
    if body is None:
        raise CommandError(BAD_VALUE, "OP_MSG has no body section")
    for identifier, documents in sequences.items():
        existing = body.get(identifier)
        body[identifier] = (existing or []) + documents
    database = body.get("$db", "admin")
    return Request(
        request_id=request_id,
        op_code=OP_MSG,
        command=body,
        database=str(database),
        more_to_come=bool(flags & MORE_TO_COME),
        exhaust_allowed=bool(flags & EXHAUST_ALLOWED),
        sequences=sequences,
    )


def decode_op_query(request_id: int, payload: bytes) -> Request:
    name_end = payload.index(b"\x00", 4)
    namespace = payload[4:name_end].decode()
    position = name_end + 1 + 8  # numberToSkip, numberToReturn
    (size,) = INT32.unpack_from(payload, position)
    query = bson.decode(payload[position : position + size])
    if "$query" in query:
        query = dict(query["$query"])
    database = namespace.split(".", 1)[0]
    return Request(request_id=request_id, op_code=OP_QUERY, command=query, database=database)


def encode_op_msg(request_id: int, response_to: int, reply: dict[str, Any]) -> bytes:
    body = bson.encode(reply)
    length = 16 + 4 + 1 + len(body)
    return b"".join(
        (HEADER.pack(length, request_id, response_to, OP_MSG), UINT32.pack(0), b"\x00", body)
    )


def encode_op_reply(request_id: int, response_to: int, reply: dict[str, Any]) -> bytes:
    body = bson.encode(reply)
    length = 16 + OP_REPLY_PREFIX.size + len(body)
    return b"".join(
        (
            HEADER.pack(length, request_id, response_to, OP_REPLY),
            OP_REPLY_PREFIX.pack(0, 0, 0, 1),
            body,
        )
    )
