"""Invoice numbers: the one way an invoice or a credit note takes the next number of its series.

A series (`domain/payments.py: invoice_series`: one symbol, so one year, of one event) is
gapless across invoices and credit notes. Its counter `{p<k>}:counter:invoice-series:<series>`
(field `issued`) lives in the event's partition, the same slot as the order's stream, so the
append that issues the document takes the number itself: the decision writes the document
`UNNUMBERED` (`sequence` 0, `number` `<series>-00000000`, and `OrderPaid.invoice_number` the
same), and the append script increments the counter after its checks and writes the number
over those placeholders (`store/append.py: Numbering`). No number is read before deciding,
appends of one series never conflict over it, a refused or failed append takes none, and the
stored events (so the log, the archive, the projections and a replay) carry the number.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from eventhunting.domain.events import DomainEvent
from eventhunting.domain.orders import CreditNoteIssued, InvoiceIssued
from eventhunting.domain.payments import (
    INVOICE_NUMBER_DIGITS,
    MAX_INVOICE_SEQUENCE,
    UNNUMBERED,
    InvoiceSeriesExhausted,
)
from eventhunting.services.repository import Effects, Idempotency, Loaded, Repository, Saved
from eventhunting.store.append import Numbering
from eventhunting.store.errors import GuardRejected

S = TypeVar("S")

# Refused because the series has issued MAX_INVOICE_SEQUENCE numbers this year.
INVOICE_SERIES_EXHAUSTED = InvoiceSeriesExhausted.code


def invoice_series_counter(series: str) -> str:
    """The numbers issued in a series (`issued`), in the series' event's partition."""
    return f"invoice-series:{series}"


def invoice_numbering(events: Sequence[DomainEvent]) -> Numbering | None:
    """The number an append's document (an invoice or a credit note) takes inside the
    append, written over its placeholders; None when the append issues no document."""
    documents = [
        event
        for event in events
        if isinstance(event, InvoiceIssued | CreditNoteIssued) and event.sequence == UNNUMBERED
    ]
    if not documents:
        return None
    if len(documents) > 1:
        raise ValueError("an append issues at most one numbered document")
    [document] = documents
    # An invoice's number is on the OrderPaid of the same append too.
    text_fields = (
        ("number", "invoice_number") if isinstance(document, InvoiceIssued) else ("number",)
    )
    return Numbering(
        name=invoice_series_counter(document.series),
        field="issued",
        maximum=MAX_INVOICE_SEQUENCE,
        code=INVOICE_SERIES_EXHAUSTED,
        number_fields=("sequence",),
        text_fields=text_fields,
        text_prefix=f"{document.series}-",
        digits=INVOICE_NUMBER_DIGITS,
    )


async def append_numbered(
    repository: Repository[S],
    aggregate_id: str,
    decide: Callable[[S | None], list[DomainEvent] | Awaitable[list[DomainEvent]]],
    *,
    effects: Callable[[S | None, list[DomainEvent]], Effects],
    idempotency: Idempotency | None = None,
    actor: str | None = None,
    decide_again_on: Callable[[GuardRejected], bool] | None = None,
    loaded: Loaded[S] | None = None,
) -> Saved[S] | None:
    """`Repository.decide_and_append` for decisions that may issue a numbered document
    (`effects` includes `invoice_numbering`): a full series is `InvoiceSeriesExhausted`."""
    try:
        return await repository.decide_and_append(
            aggregate_id,
            decide,
            effects=effects,
            idempotency=idempotency,
            actor=actor,
            decide_again_on=decide_again_on,
            loaded=loaded,
        )
    except GuardRejected as rejected:
        if rejected.code == INVOICE_SERIES_EXHAUSTED:
            raise InvoiceSeriesExhausted(f"Invoice series {rejected.name!r} is full.") from None
        raise
