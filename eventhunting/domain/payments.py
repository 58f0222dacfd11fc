"""Paying an order through a gateway: attempts, their results, invoices and automatic refunds."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from eventhunting.domain.errors import Conflict, InvalidInput, NotFound
from eventhunting.domain.events import Command
from eventhunting.domain.orders import (
    InvoiceIssued,
    InvoiceLine,
    InvoicePayment,
    Order,
    OrderEvent,
    OrderLine,
    OrderNotFound,
    OrderPaid,
    OrderStatus,
    PaymentDetails,
    PaymentFailed,
    PaymentStarted,
    PaymentStatus,
    PaymentSucceeded,
    RefundAttempted,
    RefundCompleted,
    RefundFailed,
    RefundRequested,
    require_order,
    require_pending,
)
from eventhunting.domain.vat import VAT_RATE_PERCENT, vat_included_in

GATEWAY = "VNPAY"
# A gateway payment page stays open at most this long (and never past the hold's expiry).
PAYMENT_WINDOW = timedelta(minutes=15)
# Most attempts one order may start: each is a trip to the gateway; a few cover retries.
MAX_PAYMENT_ATTEMPTS = 20
# Refund reasons recorded when money arrives that we cannot keep.
REFUND_STOCK_GONE = "tickets_no_longer_available"
REFUND_DUPLICATE_PAYMENT = "duplicate_payment"
SYSTEM_ACTOR = "system"


class PaymentNotFound(NotFound):
    code = "payment_not_found"


class PaymentAmountMismatch(Conflict):
    code = "payment_amount_mismatch"


class PaymentAlreadyRecorded(Conflict):
    code = "payment_already_recorded"


class TooManyPaymentAttempts(Conflict):
    code = "too_many_payment_attempts"


class HoldExpired(Conflict):
    code = "hold_expired"


def txn_ref_of(order_id: str, attempt: int) -> str:
    """The gateway reference of an order's `attempt`-th payment: the order id and two digits.

    ASCII letters and digits only, at most 28 characters, unique per attempt, and the order
    is found from the reference alone.
    """
    return f"{order_id}{attempt:02d}"


def order_id_of(txn_ref: str) -> str | None:
    """The order a gateway reference belongs to, or None when it is not one of ours."""
    if len(txn_ref) != 28 or not txn_ref[-2:].isdigit() or not txn_ref.isalnum():
        return None
    return txn_ref[:-2]


# Vietnamese e-invoices (Decree 123/2020/ND-CP, Circular 78/2021/TT-BTC): a symbol of 7
# characters (invoice kind 1 = VAT invoice, K = without the tax authority's code, the
# year's two digits, T = registered by the seller, two letters the seller chooses) and a
# number of at most 8 digits that restarts each year.
INVOICE_KIND = "1"
INVOICE_CODE_KIND = "K"
INVOICE_REGISTRATION = "T"
DEFAULT_INVOICE_LETTERS = "EH"
INVOICE_NUMBER_DIGITS = 8
MAX_INVOICE_SEQUENCE = 99_999_999
UNNUMBERED = 0
"""An invoice's sequence as decided: the payment's append takes the next number of the
series and writes it over this placeholder (`services/orders.py: invoice_numbering`), so
the number is never read before deciding and a refused append takes none."""
VIETNAM = timezone(timedelta(hours=7))


class InvalidInvoiceLetters(InvalidInput):
    code = "invalid_invoice_letters"


def clean_invoice_letters(raw: str) -> str:
    """A seller's two letters of the symbol: two capital letters A-Z (Circular 78, art. 4)."""
    letters = raw.strip()
    if len(letters) != 2 or not all("A" <= letter <= "Z" for letter in letters):
        raise InvalidInvoiceLetters(
            "The invoice series letters are two capital letters A-Z, e.g. EH.", field="letters"
        )
    return letters


def invoice_symbol(issued_at: datetime, letters: str = DEFAULT_INVOICE_LETTERS) -> str:
    """The series symbol for invoices issued at `issued_at` (its year in Vietnam time)."""
    year = issued_at.astimezone(VIETNAM).year % 100
    return f"{INVOICE_KIND}{INVOICE_CODE_KIND}{year:02d}{INVOICE_REGISTRATION}{letters}"


def invoice_series(event_id: str, symbol: str) -> str:
    """A series: one symbol (so one year) of one event.

    Numbers are gapless within a series because the series' counter moves in the same
    atomic append as the payment, and an atomic append touches one partition: an event's
    orders share its partition, an organizer's events do not. So the event is part of the
    series, and of the number, which keeps numbers unique across the organizer's events.
    """
    return f"{symbol}-{event_id}"


def invoice_number(series: str, sequence: int) -> str:
    return f"{series}-{sequence:0{INVOICE_NUMBER_DIGITS}d}"


class StartPayment(Command, frozen=True, kw_only=True):
    """Send the buyer of a pending order to the gateway."""

    order_id: str
    buyer_id: str
    bank_code: str | None = None
    locale: str | None = None


class RecordPaymentResult(Command, frozen=True, kw_only=True):
    """What the gateway said about an attempt (IPN or querydr), to be recorded exactly once."""

    txn_ref: str
    amount: int
    succeeded: bool
    details: PaymentDetails


def decide_start_payment(
    order: Order | None, command: StartPayment, *, now: datetime
) -> list[OrderEvent]:
    """A new attempt for a pending order whose hold has not run out; never past the hold."""
    order = require_order(order, command.order_id)
    if command.buyer_id != order.buyer_id:
        raise OrderNotFound(f"There is no order {order.id!r}.")
    require_pending(order)
    if now >= order.expires_at:
        raise HoldExpired(f"The hold of order {order.id!r} has run out.")
    attempt = len(order.payments) + 1
    if attempt > MAX_PAYMENT_ATTEMPTS:
        raise TooManyPaymentAttempts(f"Order {order.id!r} has too many payment attempts.")
    return [
        PaymentStarted(
            order_id=order.id,
            txn_ref=txn_ref_of(order.id, attempt),
            gateway=GATEWAY,
            amount=order.total_amount,
            currency=order.currency,
            started_at=now,
            expires_at=min(order.expires_at, now + PAYMENT_WINDOW),
            bank_code=command.bank_code,
            locale=command.locale,
        )
    ]


def decide_payment_result(
    order: Order | None,
    command: RecordPaymentResult,
    *,
    now: datetime,
    organizer_id: str,
    invoice_series: str,
    invoice_symbol: str,
    refund_id: str,
    stock_gone: bool = False,
) -> list[OrderEvent]:
    """Record a gateway result once, in VNPAY's order of checks.

    The server supplies the event's organizer, the invoice series (and its symbol) an
    invoice would take its number from, the id a refund would take, and `stock_gone` when a
    first try to take released tickets again was refused.

    Unknown attempt -> `PaymentNotFound`; another amount -> `PaymentAmountMismatch`; a result
    already recorded -> `PaymentAlreadyRecorded`. A failure is recorded and the hold stays.
    A success pays a pending order and issues its invoice in the same append, numbered by the
    append (`UNNUMBERED` until then). Money we cannot
    keep is recorded and refunded in full: a second success for a paid order, or a success
    after the hold was released when the tickets are gone (`stock_gone`). A success after
    the hold was released while tickets are left takes them again (`restocked`).
    """
    if order is None:
        raise PaymentNotFound(f"There is no payment {command.txn_ref!r}.")
    attempt = order.payment(command.txn_ref)
    if attempt is None:
        raise PaymentNotFound(f"There is no payment {command.txn_ref!r}.")
    if command.amount != attempt.amount:
        raise PaymentAmountMismatch(
            f"Payment {command.txn_ref!r} is for {attempt.amount}, not {command.amount}."
        )
    if attempt.status is not PaymentStatus.STARTED:
        raise PaymentAlreadyRecorded(f"Payment {command.txn_ref!r} is recorded already.")
    if not command.succeeded:
        return [
            PaymentFailed(
                order_id=order.id,
                txn_ref=command.txn_ref,
                amount=command.amount,
                currency=order.currency,
                details=command.details,
                recorded_at=now,
            )
        ]
    succeeded = PaymentSucceeded(
        order_id=order.id,
        txn_ref=command.txn_ref,
        amount=command.amount,
        currency=order.currency,
        details=command.details,
        recorded_at=now,
    )
    if order.status is OrderStatus.PAID or stock_gone:
        reason = REFUND_DUPLICATE_PAYMENT if order.status is OrderStatus.PAID else REFUND_STOCK_GONE
        return [succeeded, refund_in_full(order, command, reason, refund_id=refund_id, now=now)]
    if order.status not in (OrderStatus.PENDING, OrderStatus.EXPIRED, OrderStatus.CANCELLED):
        refund = refund_in_full(order, command, REFUND_STOCK_GONE, refund_id=refund_id, now=now)
        return [succeeded, refund]
    paid_at = command.details.pay_date or now
    series = invoice_series
    number = invoice_number(series, UNNUMBERED)
    lines = tuple(invoice_line(line) for line in order.items)
    paid = OrderPaid(
        order_id=order.id,
        event_id=order.event_id,
        buyer_id=order.buyer_id,
        items=order.quantities,
        amount=command.amount,
        currency=order.currency,
        method=GATEWAY,
        payment_reference=command.txn_ref,
        paid_at=paid_at,
        invoice_number=number,
        restocked=order.status is not OrderStatus.PENDING,
    )
    invoice = InvoiceIssued(
        order_id=order.id,
        event_id=order.event_id,
        buyer_id=order.buyer_id,
        organizer_id=organizer_id,
        series=series,
        sequence=UNNUMBERED,
        number=number,
        issued_at=now,
        lines=lines,
        total_amount=order.total_amount,
        symbol=invoice_symbol,
        vat_amount=sum(line.vat_amount for line in lines),
        amount_before_vat=sum(line.amount_before_vat for line in lines),
        currency=order.currency,
        payment=InvoicePayment(
            method=GATEWAY,
            transaction_no=command.details.transaction_no,
            bank_code=command.details.bank_code,
            paid_at=paid_at,
        ),
    )
    return [succeeded, paid, invoice]


def invoice_line(line: OrderLine) -> InvoiceLine:
    """An order line as invoiced: VAT split out of the VAT-inclusive amount, rounded per line."""
    vat = vat_included_in(line.amount, VAT_RATE_PERCENT)
    return InvoiceLine(
        description=line.name,
        quantity=line.quantity,
        unit_price=line.unit_price,
        amount=line.amount,
        vat_rate=VAT_RATE_PERCENT,
        vat_amount=vat,
        amount_before_vat=line.amount - vat,
    )


class InvoiceSeriesExhausted(Conflict):
    """The series has issued MAX_INVOICE_SEQUENCE numbers (the append refuses the next)."""

    code = "invoice_series_exhausted"


def refund_in_full(
    order: Order, command: RecordPaymentResult, reason: str, *, refund_id: str, now: datetime
) -> RefundRequested:
    return RefundRequested(
        order_id=order.id,
        refund_id=refund_id,
        txn_ref=command.txn_ref,
        amount=command.amount,
        currency=order.currency,
        reason=reason,
        full=True,
        requested_at=now,
        requested_by=SYSTEM_ACTOR,
    )


class RecordRefundResult(Command, frozen=True, kw_only=True):
    """What the gateway said about one call of a refund: done (`transaction_no`) or refused
    (a code); `retry_at` when the reconciler tries again, None when an admin decides."""

    order_id: str
    refund_id: str
    completed: bool
    response_code: str
    message: str
    transaction_no: str | None = None
    attempt: int | None = None
    """The refund's attempt the call was; a result of another attempt changes nothing."""
    outcome_unknown: bool = False
    retry_at: datetime | None = None


def decide_refund_result(
    order: Order | None, command: RecordRefundResult, *, now: datetime
) -> list[OrderEvent]:
    """Complete the refund once, or fail its current attempt once.

    The money going back is recorded whatever attempt said so (it is what happened); a
    failure of an attempt that is not the current one (recorded already) changes nothing.
    """
    order = require_order(order, command.order_id)
    refund = next((r for r in order.refunds if r.id == command.refund_id), None)
    if refund is None:
        raise RefundNotFound(f"Order {order.id!r} has no refund {command.refund_id!r}.")
    if refund.status == "completed":
        return []
    if not command.completed:
        stale = (
            refund.status == "failed"
            if command.attempt is None
            else command.attempt != refund.attempt
        )
        if stale:
            return []
    if command.completed:
        return [
            RefundCompleted(
                order_id=order.id,
                refund_id=refund.id,
                amount=refund.amount,
                currency=order.currency,
                transaction_no=command.transaction_no,
                completed_at=now,
                attempt=command.attempt,
            )
        ]
    return [
        RefundFailed(
            order_id=order.id,
            refund_id=refund.id,
            response_code=command.response_code,
            message=command.message,
            failed_at=now,
            attempt=command.attempt,
            outcome_unknown=command.outcome_unknown,
            retry_at=None if command.outcome_unknown else command.retry_at,
        )
    ]


def decide_refund_attempt(
    order: Order | None, *, order_id: str, refund_id: str, request_id: str, now: datetime
) -> list[OrderEvent]:
    """RefundAttempted for the refund's current attempt, once (before its first call);
    nothing when it was recorded already or the refund is completed."""
    order = require_order(order, order_id)
    refund = next((r for r in order.refunds if r.id == refund_id), None)
    if refund is None:
        raise RefundNotFound(f"Order {order.id!r} has no refund {refund_id!r}.")
    if refund.status == "completed" or refund.sent_at is not None:
        return []
    return [
        RefundAttempted(
            order_id=order.id,
            refund_id=refund.id,
            attempt=refund.attempt,
            request_id=request_id,
            sent_at=now,
        )
    ]


class RefundNotFound(NotFound):
    code = "refund_not_found"
