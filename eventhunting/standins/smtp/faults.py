"""Faults tests ask the sink for (refuse, drop, go down) and the counts of what it did."""

from __future__ import annotations

from collections import deque
from datetime import datetime
from typing import Annotated, Literal

import msgspec

Stage = Literal["rcpt", "data"]


class RefuseFault(msgspec.Struct, tag="refuse", tag_field="kind", kw_only=True):
    """Answer `code` to the next `count` messages at RCPT TO or after DATA; keep none of them."""

    count: Annotated[int, msgspec.Meta(ge=1)] = 1
    at: Stage = "data"
    code: Annotated[int, msgspec.Meta(ge=400, le=599)] = 451
    message: str | None = None

    def reply(self) -> str:
        if self.message is not None:
            return f"{self.code} {self.message}"
        if self.code < 500:
            return f"{self.code} 4.3.0 Temporarily refused by the SMTP sink (injected fault)"
        return f"{self.code} 5.7.1 Refused by the SMTP sink (injected fault)"


class DropFault(msgspec.Struct, tag="drop", tag_field="kind", kw_only=True):
    """Close the connection without a reply on the next `count` messages (RCPT TO or DATA)."""

    count: Annotated[int, msgspec.Meta(ge=1)] = 1
    at: Stage = "data"


class DownFault(msgspec.Struct, tag="down", tag_field="kind", kw_only=True):
    """Stop listening and close every connection for `seconds`, then listen again."""

    seconds: Annotated[float, msgspec.Meta(gt=0, le=3600)]


Fault = RefuseFault | DropFault | DownFault
MessageFault = RefuseFault | DropFault


class FaultState(msgspec.Struct, frozen=True, kw_only=True):
    """Message faults still to apply (first first, `count` = what remains) and any outage."""

    pending: list[MessageFault]
    down_until: datetime | None
    listening: bool


class Counters(msgspec.Struct, kw_only=True):
    """What the sink did with each message attempt since start (or the last reset)."""

    accepted: int = 0
    refused: int = 0
    dropped: int = 0


class FaultPlan:
    """A queue of message faults; each message takes one unit of the first, if at its stage."""

    def __init__(self) -> None:
        self.pending: deque[MessageFault] = deque()
        self.counters = Counters()

    def add(self, fault: MessageFault) -> None:
        self.pending.append(msgspec.structs.replace(fault))

    def take(self, stage: Stage) -> MessageFault | None:
        """The fault for a message reaching `stage`, or None to go on normally."""
        if not self.pending or self.pending[0].at != stage:
            return None
        head = self.pending[0]
        head.count -= 1
        if head.count == 0:
            self.pending.popleft()
        return msgspec.structs.replace(head, count=1)

    def clear(self) -> None:
        self.pending.clear()

    def reset_counters(self) -> None:
        self.counters = Counters()
