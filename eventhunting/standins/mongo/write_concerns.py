"""Write concerns on the stand-in's one-node replica set: which ones it cannot satisfy."""

from __future__ import annotations

from typing import Any

from bson import Int64

from eventhunting.standins.mongo.errors import (
    UNKNOWN_REPL_WRITE_CONCERN,
    UNSATISFIABLE_WRITE_CONCERN,
    code_name,
)

# Commands that wait for a write concern (and so may answer with a writeConcernError).
WRITE_CONCERN_COMMANDS = frozenset(
    {
        "insert",
        "update",
        "delete",
        "findAndModify",
        "findandmodify",
        "create",
        "drop",
        "dropDatabase",
        "createIndexes",
        "dropIndexes",
        "deleteIndexes",
        "renameCollection",
        "commitTransaction",
        "abortTransaction",
    }
)
DATA_BEARING_MEMBERS = 1
MAJORITY = "majority"


def unsatisfied_write_concern(command: dict[str, Any]) -> dict[str, Any] | None:
    """The writeConcernError MongoDB answers for a write concern this replica set cannot meet.

    As on MongoDB, the command still runs: the write concern is checked when the server waits
    for it, after the write. `w` above the number of data-bearing members is
    UnsatisfiableWriteConcern; a `w` tag other than "majority" is UnknownReplWriteConcern,
    since the set defines no tags.
    """
    concern = command.get("writeConcern")
    if not isinstance(concern, dict) or "w" not in concern:
        return None
    w = concern["w"]
    if isinstance(w, str):
        if w == MAJORITY:
            return None
        code = UNKNOWN_REPL_WRITE_CONCERN
        message = f"No write concern mode named '{w}' found in replica set configuration"
    elif isinstance(w, int | float | Int64) and not isinstance(w, bool):
        if w <= DATA_BEARING_MEMBERS:
            return None
        code = UNSATISFIABLE_WRITE_CONCERN
        message = "Not enough data-bearing nodes"
    else:
        return None
    shown = {"w": w, "wtimeout": concern.get("wtimeout", 0)}
    if "j" in concern:
        shown["j"] = concern["j"]
    return {
        "code": code,
        "codeName": code_name(code),
        "errmsg": message,
        "errInfo": {"writeConcern": {**shown, "provenance": "clientSupplied"}},
    }
