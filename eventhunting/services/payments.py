"""Payment commands: send a buyer to VNPAY, and record what VNPAY says exactly once."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from pymongo.asynchronous.database import AsyncDatabase

from eventhunting.client_address import ClientAddresses, Network, is_trusted
from eventhunting.domain.accounts import Account
from eventhunting.domain.errors import DomainError, ErrorKind, Forbidden
from eventhunting.domain.events import DomainEvent
from eventhunting.domain.orders import (
    CreditNoteIssued,
    InvoiceIssued,
    Order,
    OrderNotFound,
    OrderStatus,
    PaymentDetails,
    PaymentStarted,
    PaymentStatus,
)
from eventhunting.domain.payments import (
    DEFAULT_INVOICE_LETTERS,
    PaymentAlreadyRecorded,
    PaymentAmountMismatch,
    PaymentNotFound,
    RecordPaymentResult,
    RecordRefundResult,
    RefundNotFound,
    StartPayment,
    decide_payment_result,
    decide_start_payment,
    invoice_series,
    invoice_symbol,
    order_id_of,
)
from eventhunting.domain.refunds import (
    CreditNoteSeries,
    ResolveRefund,
    decide_refund_resolution,
    decide_refund_settled,
)
from eventhunting.domain.tickets import OrderTickets
from eventhunting.payments.vnpay import (
    InvalidVnpayMessage,
    MerchantCredentials,
    PaymentRequest,
    PaymentResult,
    QueryParameters,
    build_payment_url,
    check_bank_code,
    check_ip_address,
    verify_payment_callback,
)
from eventhunting.services.invoice_numbers import append_numbered
from eventhunting.services.orders import (
    LIMIT_EXCEEDED,
    SOLD_OUT,
    OrderService,
    order_effects,
)
from eventhunting.services.repository import Effects, Idempotency, Loaded, Repository, Saved
from eventhunting.services.tickets import ORDER_TICKETS
from eventhunting.store import keys
from eventhunting.store.archive import archive_appended
from eventhunting.store.errors import GuardRejected
from eventhunting.store.redis_client import RedisClient

logger = logging.getLogger("eventhunting.services.payments")

RETURN_PATH = "/api/v1/payments/vnpay/return"


class PaymentsUnavailable(DomainError):
    """VNPAY merchant credentials are not set (EVENTHUNTING_VNPAY_TMN_CODE / _HASH_SECRET)."""

    kind = ErrorKind.UNAVAILABLE
    code = "payments_unavailable"
    title = "Payments are not available"


@dataclass(frozen=True, slots=True)
class IssuedInvoice:
    """An invoice with the parties it names (accounts may be gone: then None)."""

    invoice: InvoiceIssued
    seller: Account | None
    buyer: Account | None


@dataclass(frozen=True, slots=True)
class IssuedCreditNotes:
    """An order's credit notes with the parties they name (accounts may be gone: then None)."""

    credit_notes: tuple[CreditNoteIssued, ...]
    seller: Account | None
    buyer: Account | None


@dataclass(frozen=True, slots=True)
class PaymentLink:
    payment_url: str
    txn_ref: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class IpnAnswer:
    """VNPAY's IPN reply, exactly `{"RspCode": code, "Message": message}`."""

    code: str
    message: str


INVALID_SIGNATURE = IpnAnswer("97", "Invalid signature")
ORDER_NOT_FOUND = IpnAnswer("01", "Order not found")
INVALID_AMOUNT = IpnAnswer("04", "Invalid amount")
ALREADY_CONFIRMED = IpnAnswer("02", "Order already confirmed")
CONFIRMED = IpnAnswer("00", "Confirm Success")
UNKNOWN_ERROR = IpnAnswer("99", "Unknow error")


@dataclass(frozen=True, slots=True)
class PaymentOutcome:
    """What the return page shows: the order and where its payment stands (display only)."""

    order_id: str | None
    status: str
    """`paid`, `failed`, `processing`, `refunding`, `invalid` or `unknown`; pages word it
    from the language catalogs (`pages.payment.message.<status>`)."""
    signature_valid: bool


def details_of(result: PaymentResult) -> PaymentDetails:
    return PaymentDetails(
        response_code=result.response_code,
        transaction_status=result.transaction_status,
        transaction_no=result.transaction_no,
        bank_code=result.bank_code,
        bank_tran_no=result.bank_tran_no,
        card_type=result.card_type,
        pay_date=result.pay_date,
    )


def result_idempotency(txn_ref: str) -> Idempotency:
    """A gateway result is recorded once per attempt, whoever reports it (IPN or querydr)."""
    return Idempotency(f"payment-result:{txn_ref}", txn_ref)


class PaymentService:
    """Starts VNPAY payments and records their results on the order's stream.

    Recording a result is one read of the order, one append (conditional on the order's
    version; the result, the order's payment and its invoice together), and one write of
    that append to the MongoDB archive before VNPAY hears `00`.
    """

    def __init__(
        self,
        *,
        orders: OrderService,
        redis: RedisClient,
        database: AsyncDatabase[dict[str, object]],
        credentials: MerchantCredentials | None,
        pay_url: str,
        public_base_url: str,
        clock: Callable[[], datetime],
        invoice_letters: str = DEFAULT_INVOICE_LETTERS,
        find_account: Callable[[str], Awaitable[Account | None]] | None = None,
        client_addresses: ClientAddresses | None = None,
        ipn_allowed: Sequence[Network] = (),
        refunds_per_second: float = 5.0,
    ) -> None:
        self.refunds_per_second = refunds_per_second
        self.invoice_letters = invoice_letters
        self.find_account = find_account
        self.client_addresses = client_addresses or ClientAddresses()
        self.ipn_allowed = tuple(ipn_allowed)
        self.orders = orders
        self.repository = orders.repository
        self.redis = redis
        self.database = database
        self.credentials = credentials
        self.pay_url = pay_url
        self.return_url = public_base_url.rstrip("/") + RETURN_PATH
        self.clock = clock
        self.order_tickets = Repository(orders.store, ORDER_TICKETS)

    def client_ip(self, peer: str | None, forwarded_for: str | None) -> str:
        """The buyer's address for vnp_IpAddr (X-Forwarded-For only from trusted proxies)."""
        return self.client_addresses.of(peer, forwarded_for)

    def ensure_ipn_caller_allowed(self, peer: str | None, forwarded_for: str | None) -> None:
        """Refuse (403) an IPN caller outside the allow-list, when one is configured."""
        if self.ipn_allowed and not is_trusted(
            self.client_ip(peer, forwarded_for), self.ipn_allowed
        ):
            raise Forbidden("This address may not call the IPN route.", code="ipn_forbidden")

    async def record_refund(self, outcome: RecordRefundResult) -> Saved[OrderTickets] | None:
        """Record what the gateway said about a refund, once: RefundCompleted with its credit
        note (the next number of the event's invoice series, in the same append) or
        RefundFailed; None when the refund was settled already."""
        recorded_at = self.orders.now()
        loaded = await self.order_tickets.load(outcome.order_id)
        if loaded.state is None:
            raise OrderNotFound(f"There is no order {outcome.order_id!r}.")
        in_series = await self.credit_note_series(loaded.state.order, recorded_at)

        def decide(state: OrderTickets | None) -> list[DomainEvent]:
            return decide_refund_settled(state, outcome, series=in_series, now=recorded_at)

        return await append_numbered(
            self.order_tickets,
            outcome.order_id,
            decide,
            effects=lambda state, events: order_effects(events),
            actor="reconciler",
            loaded=loaded,
        )

    async def credit_note_series(self, order: Order, at: datetime) -> CreditNoteSeries:
        """The series a credit note of `order` issued at `at` takes its number in: the
        organizer's series in force then (their letters, that year's symbol); only an
        invoiced order gets a credit note."""
        invoice = order.invoice
        letters = (
            self.invoice_letters
            if invoice is None
            else await self.invoice_letters_of(invoice.organizer_id)
        )
        symbol = invoice_symbol(at, letters)
        return CreditNoteSeries(series=invoice_series(order.event_id, symbol), symbol=symbol)

    async def resolve_refund(self, command: ResolveRefund) -> Saved[OrderTickets] | None:
        """Append an admin's resolution of a failed refund; a `settled` one completes it with
        its credit note (the series' next number) in the same append. None for a repeat."""
        now = self.clock()
        loaded = await self.order_tickets.load(command.order_id)
        if loaded.state is None:
            raise RefundNotFound(f"There is no refund {command.refund_id!r}.")
        in_series = await self.credit_note_series(loaded.state.order, now)

        def decide(state: OrderTickets | None) -> list[DomainEvent]:
            return decide_refund_resolution(state, command, now=now, series=in_series)

        return await append_numbered(
            self.order_tickets,
            command.order_id,
            decide,
            effects=lambda state, events: order_effects(events),
            actor=command.by.account_id,
            loaded=loaded,
        )

    async def credit_notes_of(
        self, order_id: str, *, viewer_id: str, viewer_is_admin: bool
    ) -> IssuedCreditNotes:
        """The order's credit notes, oldest first, with the parties they name (its buyer,
        the event's organizer, admin; none before a refund completed)."""
        order = await self.orders.get_visible(
            order_id, viewer_id=viewer_id, viewer_is_admin=viewer_is_admin
        )
        seller = buyer = None
        if self.find_account is not None and order.credit_notes:
            seller = await self.find_account(order.credit_notes[0].organizer_id)
            buyer = await self.find_account(order.buyer_id)
        return IssuedCreditNotes(credit_notes=order.credit_notes, seller=seller, buyer=buyer)

    async def invoice_of(
        self, order_id: str, *, viewer_id: str, viewer_is_admin: bool
    ) -> IssuedInvoice:
        """The order's invoice with the seller's and buyer's names (404 until paid)."""
        order = await self.orders.get_visible(
            order_id, viewer_id=viewer_id, viewer_is_admin=viewer_is_admin
        )
        if order.invoice is None:
            raise OrderNotFound(f"Order {order_id!r} has no invoice.", code="invoice_not_found")
        seller = buyer = None
        if self.find_account is not None:
            seller = await self.find_account(order.invoice.organizer_id)
            buyer = await self.find_account(order.buyer_id)
        return IssuedInvoice(invoice=order.invoice, seller=seller, buyer=buyer)

    def require_credentials(self) -> MerchantCredentials:
        if self.credentials is None:
            raise PaymentsUnavailable("VNPAY merchant credentials are not configured")
        return self.credentials

    async def start(
        self,
        order_id: str,
        *,
        buyer_id: str,
        client_ip: str,
        bank_code: str | None = None,
        locale: str | None = None,
    ) -> PaymentLink:
        """Record a new attempt (`PaymentStarted`) and sign the URL that sends the buyer there."""
        credentials = self.require_credentials()
        # Inputs the pay URL will carry are checked before the attempt is recorded.
        check_ip_address(client_ip)
        if bank_code is not None:
            check_bank_code(bank_code)
        command = StartPayment(
            order_id=order_id,
            buyer_id=buyer_id,
            bank_code=bank_code,
            locale=locale,
        )
        saved = await self.repository.decide_and_append(
            order_id,
            lambda order: list(decide_start_payment(order, command, now=self.orders.now())),
            effects=lambda order, events: order_effects(events),
            actor=buyer_id,
        )
        assert saved is not None
        started = saved.events[-1].data
        assert isinstance(started, PaymentStarted)
        url = build_payment_url(
            PaymentRequest(
                amount=started.amount,
                txn_ref=started.txn_ref,
                order_info=f"Thanh toan don hang {order_id}",
                return_url=self.return_url,
                ip_address=client_ip,
                created_at=started.started_at,
                expires_at=started.expires_at,
                locale="en" if locale == "en" else "vn",
                bank_code=bank_code,
            ),
            credentials,
            self.pay_url,
        )
        return PaymentLink(payment_url=url, txn_ref=started.txn_ref, expires_at=started.expires_at)

    async def handle_ipn(self, query: QueryParameters) -> IpnAnswer:
        """VNPAY's IPN: checks in VNPAY's order (97, 01, 04, 02), records, answers 00 (or 99)."""
        try:
            credentials = self.require_credentials()
            verdict = verify_payment_callback(query, credentials.hash_secret)
            if not verdict.signature_valid or verdict.result is None:
                return INVALID_SIGNATURE
            if verdict.result.tmn_code != credentials.tmn_code:
                return INVALID_SIGNATURE
            return await self.record(verdict.result)
        except InvalidVnpayMessage:
            logger.warning("IPN with a valid signature but an unreadable field")
            return UNKNOWN_ERROR
        except Exception:
            logger.exception("IPN failed")
            return UNKNOWN_ERROR

    async def record(self, result: PaymentResult) -> IpnAnswer:
        """Record a gateway result once and archive it; the IPN answer it deserves."""
        order_id = order_id_of(result.txn_ref)
        if order_id is None:
            return ORDER_NOT_FOUND
        loaded = await self.repository.load(order_id)
        order = loaded.state
        attempt = None if order is None else order.payment(result.txn_ref)
        if order is None or attempt is None:
            return ORDER_NOT_FOUND
        if attempt.amount != result.amount:
            return INVALID_AMOUNT
        try:
            saved = await self.append_result(
                order, result, loaded if attempt.status is PaymentStatus.STARTED else None
            )
        except PaymentNotFound:
            return ORDER_NOT_FOUND
        except PaymentAmountMismatch:
            return INVALID_AMOUNT
        except PaymentAlreadyRecorded:
            # Recorded without this key (cannot happen today); nothing to archive from here.
            return ALREADY_CONFIRMED
        await archive_appended(self.redis, self.database, saved.events, saved.appended)
        return ALREADY_CONFIRMED if saved.repeated else CONFIRMED

    async def append_result(
        self, order: Order, result: PaymentResult, loaded: Loaded[Order] | None = None
    ) -> Saved[Order]:
        event_terms = await self.orders.event_terms(order.event_id, fresh=False)
        partition = keys.partition_of(order.id, self.orders.partitions)
        recorded_at = self.orders.now()
        symbol = invoice_symbol(
            recorded_at, await self.invoice_letters_of(event_terms.organizer_id)
        )
        series = invoice_series(order.event_id, symbol)
        refund_id = keys.new_id_in_partition(partition, self.orders.partitions)
        stock_gone = False

        command = RecordPaymentResult(
            txn_ref=result.txn_ref,
            amount=result.amount,
            succeeded=result.paid,
            details=details_of(result),
        )

        def decide(state: Order | None) -> list[DomainEvent]:
            return list(
                decide_payment_result(
                    state,
                    command,
                    now=recorded_at,
                    organizer_id=event_terms.organizer_id,
                    invoice_series=series,
                    invoice_symbol=symbol,
                    refund_id=refund_id,
                    stock_gone=stock_gone,
                )
            )

        def effects(state: Order | None, events: list[DomainEvent]) -> Effects:
            return order_effects(events, buyer_limit=event_terms.max_tickets_per_customer)

        def decide_again(rejected: GuardRejected) -> bool:
            nonlocal stock_gone
            if rejected.code in (SOLD_OUT, LIMIT_EXCEEDED):
                # The released tickets are gone: record the payment and refund it instead.
                stock_gone = True
                return True
            return False

        # The invoice's number is taken by the append itself (`invoice_numbering`): payments
        # of one series never contend for it, and a refused append takes none.
        saved = await append_numbered(
            self.repository,
            order.id,
            decide,
            effects=effects,
            idempotency=result_idempotency(result.txn_ref),
            actor="vnpay",
            decide_again_on=decide_again,
            loaded=loaded,
        )
        assert saved is not None, "a result always records something"
        return saved

    async def invoice_letters_of(self, organizer_id: str) -> str:
        """The organizer's invoice letters as they are now (read when the payment is recorded,
        so the series is the one in force at that moment), or the default setting."""
        organizer = None if self.find_account is None else await self.find_account(organizer_id)
        if organizer is None or organizer.invoice_letters is None:
            return self.invoice_letters
        return organizer.invoice_letters

    async def outcome(self, query: QueryParameters) -> PaymentOutcome:
        """The return page's answer: read only, it never changes an order."""
        credentials = self.require_credentials()
        try:
            verdict = verify_payment_callback(query, credentials.hash_secret)
        except InvalidVnpayMessage:
            return PaymentOutcome(None, "invalid", False)
        if not verdict.signature_valid or verdict.result is None:
            return PaymentOutcome(None, "invalid", False)
        result = verdict.result
        order_id = order_id_of(result.txn_ref)
        order = None if order_id is None else await self.repository.find(order_id)
        if order is None or order_id is None:
            return PaymentOutcome(order_id, "unknown", True)
        attempt = order.payment(result.txn_ref)
        refunded = any(refund.txn_ref == result.txn_ref for refund in order.refunds)
        if attempt is not None and attempt.status is PaymentStatus.SUCCEEDED and refunded:
            return PaymentOutcome(order.id, "refunding", True)
        if (
            order.status is OrderStatus.PAID
            and attempt is not None
            and (attempt.status is PaymentStatus.SUCCEEDED)
        ):
            return PaymentOutcome(order.id, "paid", True)
        if not result.paid:
            return PaymentOutcome(order.id, "failed", True)
        if attempt is not None and attempt.status is PaymentStatus.SUCCEEDED:
            return PaymentOutcome(order.id, "refunding", True)
        return PaymentOutcome(order.id, "processing", True)


def ipn_body(answer: IpnAnswer) -> Mapping[str, str]:
    return {"RspCode": answer.code, "Message": answer.message}
