"""Invoice numbers: the one way an invoice or a credit note takes the next number of its series.

A series (`domain/payments.py: invoice_series`: one symbol, so one year, of one event) is
gapless across invoices and credit notes: its counter `{p<k>}:counter:invoice-series:<series>`
moves in the same atomic append as the numbered document, guarded to be exactly the number
the decision used. A refused or failed append uses no number, and a replay of the stream
reproduces every number. Appends of one series take their numbers in turn within a process;
across processes a lost race is decided again on a fresh read.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from eventhunting.domain.events import DomainEvent
from eventhunting.domain.orders import CreditNoteIssued, InvoiceIssued
from eventhunting.services.repository import Effects, Idempotency, Loaded, Repository, Saved
from eventhunting.store.append import CounterChange, EventStore
from eventhunting.store.errors import GuardRejected

S = TypeVar("S")

# Refused because another append took the number read: read it again and decide.
INVOICE_NUMBER_TAKEN = "invoice_number_taken"

NumberedDecision = Callable[[S | None, int], list[DomainEvent] | Awaitable[list[DomainEvent]]]


def invoice_series_counter(series: str) -> str:
    """The numbers issued in a series (`issued`), in the series' event's partition."""
    return f"invoice-series:{series}"


def number_claims(events: Sequence[DomainEvent]) -> list[CounterChange]:
    """The series counter moves of an append's numbered documents (invoices, credit notes):
    each takes its number only if no other append took it first."""
    return [
        CounterChange(
            invoice_series_counter(event.series),
            {"issued": 1},
            sum_fields=("issued",),
            ceiling=event.sequence,
            code=INVOICE_NUMBER_TAKEN,
        )
        for event in events
        if isinstance(event, InvoiceIssued | CreditNoteIssued)
    ]


class InvoiceNumbers:
    """Numbers documents of invoice series through `Repository.decide_and_append`."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.turns: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def next_sequence(self, partition: int, series: str) -> int:
        """The number the next document of `series` takes, as the counter says now."""
        counter = invoice_series_counter(series)
        counters = await self.store.read_counters(partition, [counter])
        return counters[counter].get("issued", 0) + 1

    async def append(
        self,
        repository: Repository[S],
        aggregate_id: str,
        series: str,
        decide: NumberedDecision[S],
        *,
        effects: Callable[[S | None, list[DomainEvent]], Effects],
        idempotency: Idempotency | None = None,
        actor: str | None = None,
        decide_again_on: Callable[[GuardRejected], bool] | None = None,
        loaded: Loaded[S] | None = None,
    ) -> Saved[S] | None:
        """Decide with the series' next number and append; decided again when another
        append took that number first (and on what `decide_again_on` names).

        `decide(state, sequence)` may ignore the number (a decision that issues no
        document): then no number is taken.
        """
        partition = repository.partition_of(aggregate_id)

        async def numbered(state: S | None) -> list[DomainEvent]:
            sequence = await self.next_sequence(partition, series)
            decided = decide(state, sequence)
            return await decided if isinstance(decided, Awaitable) else decided

        def again(rejected: GuardRejected) -> bool:
            if rejected.code == INVOICE_NUMBER_TAKEN:
                return True
            return decide_again_on is not None and decide_again_on(rejected)

        async with self.turns[series]:
            return await repository.decide_and_append(
                aggregate_id,
                numbered,
                effects=effects,
                idempotency=idempotency,
                actor=actor,
                decide_again_on=again,
                loaded=loaded,
            )
