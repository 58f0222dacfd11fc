"""The registry of domain event types, their schema versions and upcasters."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar

import msgspec


class DomainEvent(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Base of every domain event payload. Subclasses are registered by name.

    Events are values (strings, numbers, times and tuples of other value Structs), so they
    can never be part of a reference cycle, and the garbage collector does not track them
    (`gc=False`, inherited; value Structs inside events set it too): reading a log of
    millions of them would otherwise spend more time in collections than in decoding.
    """


class Command(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every command: what someone asks an aggregate to do, imperative (`PlaceOrder`).

    A command holds what was asked and nothing else: the ids it addresses, who asks and the
    body as sent, so it tells a repeated request from a different one (`fingerprint_of`).
    What the server supplies to serve it (the time, ids it draws, a password's hash, a
    setting) is passed to the decision as keyword arguments.
    """


class RecordedEvent(Protocol):
    """What a fold needs of a stored event (the store's envelope provides it)."""

    @property
    def data(self) -> DomainEvent: ...

    @property
    def version(self) -> int: ...

    @property
    def occurred_at(self) -> datetime: ...


StateT = TypeVar("StateT")


def fold(
    evolve: Callable[[StateT | None, RecordedEvent], StateT], history: Iterable[RecordedEvent]
) -> StateT | None:
    """The state a stream's history describes (None for an empty stream), by one `evolve`."""
    state: StateT | None = None
    for recorded in history:
        state = evolve(state, recorded)
    return state


EventT = TypeVar("EventT", bound=type[DomainEvent])
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class EventType:
    name: str
    schema: int
    payload: type[DomainEvent]
    stream_kind: str
    description: str


@dataclass
class EventRegistry:
    """Maps stable event names to payload types; upcasts old schemas on read."""

    by_name: dict[str, EventType] = field(default_factory=dict)
    by_payload: dict[type[DomainEvent], EventType] = field(default_factory=dict)
    upcasters: dict[tuple[str, int], Upcaster] = field(default_factory=dict)

    def event(self, name: str, *, schema: int = 1, stream_kind: str) -> Callable[[EventT], EventT]:
        def register(payload: EventT) -> EventT:
            if name in self.by_name:
                raise ValueError(f"event type {name!r} is registered twice")
            described = EventType(
                name=name,
                schema=schema,
                payload=payload,
                stream_kind=stream_kind,
                description=(payload.__doc__ or "").strip(),
            )
            self.by_name[name] = described
            self.by_payload[payload] = described
            return payload

        return register

    def upcaster(self, name: str, *, from_schema: int) -> Callable[[Upcaster], Upcaster]:
        def register(function: Upcaster) -> Upcaster:
            self.upcasters[(name, from_schema)] = function
            return function

        return register

    def type_of(self, payload: DomainEvent) -> EventType:
        try:
            return self.by_payload[type(payload)]
        except KeyError:
            raise LookupError(f"{type(payload).__name__} is not a registered event") from None

    def decode(self, name: str, schema: int, data: dict[str, Any]) -> DomainEvent:
        """Build the current payload from stored data, upcasting older schemas step by step."""
        described = self.by_name.get(name)
        if described is None:
            raise LookupError(f"unknown event type {name!r}")
        while schema < described.schema:
            upcast = self.upcasters.get((name, schema))
            if upcast is None:
                raise LookupError(f"no upcaster for {name} schema {schema}")
            data = upcast(data)
            schema += 1
        return msgspec.convert(data, described.payload, strict=False)


registry = EventRegistry()
"""The process-wide registry; domain modules register their events on import."""
