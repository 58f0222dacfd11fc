"""Payment routes: start a VNPAY payment, VNPAY's IPN, the return page, and invoices."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, MediaType, Request, Response, get, post
from litestar.datastructures import State
from litestar.di import Provide

from eventhunting.api.auth import Principal, signed_in
from eventhunting.api.openapi import PROBLEM_STATUSES
from eventhunting.api.pages import page_language, render_page
from eventhunting.bootstrap import Services
from eventhunting.domain.orders import CreditNoteIssued, InvoiceIssued
from eventhunting.languages.catalogs import catalog
from eventhunting.payments.vnpay import BANK_CODE_PATTERN
from eventhunting.services.payments import PaymentOutcome, PaymentService

BankCode = Annotated[str, msgspec.Meta(pattern=f"^{BANK_CODE_PATTERN.pattern}$")]


class VnpayPaymentCreate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Optional: a bank to go to directly (`NCB`, `VNBANK`, `VNPAYQR`, `INTCARD`...) and the
    language of VNPAY's page (`vn` or `en`)."""

    bank_code: BankCode | None = None
    locale: Literal["vn", "en"] | None = None


class VnpayPayment(msgspec.Struct, frozen=True, kw_only=True):
    """Where to send the buyer; the page stays open until `expires_at` (never after the hold)."""

    payment_url: str
    txn_ref: str
    expires_at: datetime


class IpnReply(msgspec.Struct, frozen=True):
    """Exactly what VNPAY expects back from an IPN call."""

    RspCode: str
    Message: str


class PaymentResultView(msgspec.Struct, frozen=True, kw_only=True):
    order_id: str | None
    status: str
    message: str


class Party(msgspec.Struct, frozen=True, kw_only=True):
    name: str | None
    email: str | None = None


class Seller(msgspec.Struct, frozen=True, kw_only=True):
    organizer_id: str
    name: str | None


class InvoiceLineView(msgspec.Struct, frozen=True, kw_only=True):
    """`amount` includes VAT: `amount_before_vat + vat_amount`, VAT at `vat_rate` percent."""

    description: str
    quantity: int
    unit_price: int
    amount: int
    amount_before_vat: int
    vat_rate: int
    vat_amount: int


class InvoicePaymentView(msgspec.Struct, frozen=True, kw_only=True):
    method: str
    transaction_no: str | None
    bank_code: str | None
    paid_at: datetime


class Invoice(msgspec.Struct, frozen=True, kw_only=True):
    """An invoice: its number is unique and gapless in its series and never changes."""

    number: str
    symbol: str | None
    order_id: str
    issued_at: datetime
    seller: Seller
    buyer: Party
    lines: list[InvoiceLineView]
    amount_before_vat: int
    vat_amount: int
    total_amount: int
    currency: str
    payment: InvoicePaymentView


class InvoiceReferenceView(msgspec.Struct, frozen=True, kw_only=True):
    """The invoice a credit note adjusts."""

    symbol: str | None
    number: str
    issued_at: datetime


class CreditNoteLineView(msgspec.Struct, frozen=True, kw_only=True):
    """What is taken off line `line` (from 1) of the original invoice: `quantity`, `amount`,
    `amount_before_vat` and `vat_amount` are negative; `unit_price` and `vat_rate` are the
    original's."""

    line: int
    description: str
    quantity: int
    unit_price: int
    amount: int
    amount_before_vat: int
    vat_rate: int
    vat_amount: int


class CreditNote(msgspec.Struct, frozen=True, kw_only=True):
    """A credit note (adjusting invoice) of one completed refund, numbered in the same gapless
    series as invoices; amounts are negative integer VND."""

    number: str
    symbol: str
    order_id: str
    refund_id: str
    issued_at: datetime
    adjusts: InvoiceReferenceView
    seller: Seller
    buyer: Party
    lines: list[CreditNoteLineView]
    amount_before_vat: int
    vat_amount: int
    total_amount: int
    currency: str
    reason: str


class CreditNoteList(msgspec.Struct, frozen=True, kw_only=True):
    items: list[CreditNote]


def wants_json(request: Request[Any, Any, Any]) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def invoice_view(invoice: InvoiceIssued, seller_name: str | None, buyer: Party) -> Invoice:
    return Invoice(
        number=invoice.number,
        symbol=invoice.symbol,
        order_id=invoice.order_id,
        issued_at=invoice.issued_at,
        seller=Seller(organizer_id=invoice.organizer_id, name=seller_name),
        buyer=buyer,
        lines=[
            InvoiceLineView(
                description=line.description,
                quantity=line.quantity,
                unit_price=line.unit_price,
                amount=line.amount,
                amount_before_vat=line.amount_before_vat,
                vat_rate=line.vat_rate,
                vat_amount=line.vat_amount,
            )
            for line in invoice.lines
        ],
        amount_before_vat=invoice.amount_before_vat,
        vat_amount=invoice.vat_amount,
        total_amount=invoice.total_amount,
        currency=invoice.currency,
        payment=InvoicePaymentView(
            method=invoice.payment.method,
            transaction_no=invoice.payment.transaction_no,
            bank_code=invoice.payment.bank_code,
            paid_at=invoice.payment.paid_at,
        ),
    )


def credit_note_view(note: CreditNoteIssued, seller_name: str | None, buyer: Party) -> CreditNote:
    return CreditNote(
        number=note.number,
        symbol=note.symbol,
        order_id=note.order_id,
        refund_id=note.refund_id,
        issued_at=note.issued_at,
        adjusts=InvoiceReferenceView(
            symbol=note.adjusts.symbol,
            number=note.adjusts.number,
            issued_at=note.adjusts.issued_at,
        ),
        seller=Seller(organizer_id=note.organizer_id, name=seller_name),
        buyer=buyer,
        lines=[
            CreditNoteLineView(
                line=line.line,
                description=line.description,
                quantity=line.quantity,
                unit_price=line.unit_price,
                amount=line.amount,
                amount_before_vat=line.amount_before_vat,
                vat_rate=line.vat_rate,
                vat_amount=line.vat_amount,
            )
            for line in note.lines
        ],
        amount_before_vat=note.amount_before_vat,
        vat_amount=note.vat_amount,
        total_amount=note.total_amount,
        currency=note.currency,
        reason=note.reason,
    )


def provide_payments(state: State) -> PaymentService:
    services: Services = state.services
    return services.payments


def peer_of(request: Request[Any, Any, Any]) -> str | None:
    return request.client.host if request.client else None


class PaymentController(Controller):
    path = "/api/v1"
    tags = ["payments"]
    dependencies = {"payments": Provide(provide_payments, sync_to_thread=False)}

    @post(
        "/orders/{order_id:str}/payments/vnpay",
        guards=[signed_in],
        summary="Start paying a pending order through VNPAY",
        description=(
            "Records a new payment attempt and returns the signed VNPAY URL to send the buyer"
            " to. 409 `order_not_pending`, `hold_expired`; 404 for another buyer's order;"
            " 503 `payments_unavailable` when no merchant is configured."
        ),
        status_code=201,
        opt={PROBLEM_STATUSES: (404, 409, 503)},
    )
    async def start(
        self,
        order_id: str,
        request: Request[Any, Any, Any],
        payments: PaymentService,
        principal: Principal,
        data: VnpayPaymentCreate | None = None,
    ) -> VnpayPayment:
        body = data or VnpayPaymentCreate()
        link = await payments.start(
            order_id,
            buyer_id=principal.account_id,
            client_ip=payments.client_ip(peer_of(request), request.headers.get("x-forwarded-for")),
            bank_code=body.bank_code,
            locale=body.locale,
        )
        return VnpayPayment(
            payment_url=link.payment_url, txn_ref=link.txn_ref, expires_at=link.expires_at
        )

    @get(
        "/orders/{order_id:str}/invoice",
        guards=[signed_in],
        summary="The invoice of a paid order (buyer, the event's organizer, admin)",
        description="404 `invoice_not_found` until the order is paid through VNPAY.",
        opt={PROBLEM_STATUSES: (404,)},
    )
    async def invoice(
        self, order_id: str, payments: PaymentService, principal: Principal
    ) -> Invoice:
        issued = await payments.invoice_of(
            order_id, viewer_id=principal.account_id, viewer_is_admin=principal.is_admin
        )
        seller, buyer = issued.seller, issued.buyer
        return invoice_view(
            issued.invoice,
            seller.full_name if seller else None,
            Party(name=buyer.full_name, email=buyer.email) if buyer else Party(name=None),
        )

    @get(
        "/orders/{order_id:str}/credit-notes",
        guards=[signed_in],
        summary="The credit notes of an order's completed refunds (buyer, organizer, admin)",
        description=(
            "One per completed refund of the order's invoiced payment, oldest first: an"
            " adjusting invoice referencing the order's invoice, negative amounts, numbered in"
            " the invoice's series. Empty until a refund completes; 404 for others' orders."
        ),
        opt={PROBLEM_STATUSES: (404,)},
    )
    async def credit_notes(
        self, order_id: str, payments: PaymentService, principal: Principal
    ) -> CreditNoteList:
        issued = await payments.credit_notes_of(
            order_id, viewer_id=principal.account_id, viewer_is_admin=principal.is_admin
        )
        seller, buyer = issued.seller, issued.buyer
        party = Party(name=buyer.full_name, email=buyer.email) if buyer else Party(name=None)
        return CreditNoteList(
            items=[
                credit_note_view(note, seller.full_name if seller else None, party)
                for note in issued.credit_notes
            ]
        )


class VnpayGatewayController(Controller):
    """What VNPAY calls (the IPN) and where it sends the buyer back (the return page): the
    routes of an API process that serves payments only (`eventhunting api --only payments`)."""

    path = "/api/v1"
    tags = ["payments"]
    dependencies = {"payments": Provide(provide_payments, sync_to_thread=False)}

    @get(
        "/payments/vnpay/ipn",
        summary="VNPAY's IPN: records a payment result and answers VNPAY",
        description=(
            "Called by VNPAY with the signed result. Always 200 with exactly"
            ' `{"RspCode", "Message"}`: 97 invalid signature, 01 order not found, 04 invalid'
            " amount, 02 already confirmed, 00 recorded, 99 unexpected error (VNPAY retries)."
        ),
        opt={PROBLEM_STATUSES: (403,)},
    )
    async def ipn(self, request: Request[Any, Any, Any], payments: PaymentService) -> IpnReply:
        payments.ensure_ipn_caller_allowed(peer_of(request), request.headers.get("x-forwarded-for"))
        answer = await payments.handle_ipn(request.query_params.multi_items())
        return IpnReply(RspCode=answer.code, Message=answer.message)

    @get(
        "/payments/vnpay/return",
        summary="Where VNPAY sends the buyer back: the payment's outcome (display only)",
        description=(
            "An HTML page in Vietnamese or English (`?lang=vi|en`, else Accept-Language, else"
            " Vietnamese); with"
            " `Accept: application/json`, `{order_id, status, message}`. Never changes an order."
        ),
        media_type=MediaType.HTML,
        opt={PROBLEM_STATUSES: (503,)},
    )
    async def return_page(
        self, request: Request[Any, Any, Any], payments: PaymentService
    ) -> Response[Any]:
        outcome: PaymentOutcome = await payments.outcome(request.query_params.multi_items())
        language = page_language(request)
        message = catalog(language).text(f"pages.payment.message.{outcome.status}")
        if wants_json(request):
            view = PaymentResultView(
                order_id=outcome.order_id, status=outcome.status, message=message
            )
            return Response(msgspec.to_builtins(view), media_type=MediaType.JSON)
        return render_page(
            "payment_result.html", language=language, outcome=outcome, message=message
        )
