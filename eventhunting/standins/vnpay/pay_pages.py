"""The pages a buyer sees: the merchant's signed pay request checked, card, OTP, outcome."""

from __future__ import annotations

import ipaddress
import re
import secrets
from collections.abc import Mapping
from urllib.parse import urlsplit

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.response import Redirect, Template

from eventhunting.payments.vnpay import (
    BANK_CODE_PATTERN,
    LOCALES,
    TXN_REF_PATTERN,
    VERSION,
    format_vnpay_time,
    parse_vnpay_time,
    single_vnp_values,
)
from eventhunting.payments.vnpay_signing import query_signature_is_valid
from eventhunting.standins.vnpay import cards
from eventhunting.standins.vnpay.ipn import return_url_of, schedule_ipn
from eventhunting.standins.vnpay.ledger import Transaction
from eventhunting.standins.vnpay.sandbox import Sandbox

AMOUNT_PATTERN = re.compile(r"[1-9][0-9]{0,11}")

# Error page codes (the real gateway shows similar pages with these codes).
BAD_FORMAT = "03"
EXPIRED = "11"
NOT_FOUND = "91"
DUPLICATE_TXN_REF = "94"
BAD_SIGNATURE = "70"
UNKNOWN_MERCHANT = "72"

TEXTS: dict[str, dict[str, str]] = {
    "vn": {
        "title": "Cổng thanh toán VNPAY",
        "sandbox": "môi trường thử nghiệm",
        "merchant": "Đơn vị chấp nhận",
        "txn_ref": "Mã đơn hàng",
        "amount": "Số tiền",
        "order_info": "Nội dung",
        "card_heading": "Thanh toán qua thẻ nội địa",
        "bank": "Ngân hàng",
        "card_number": "Số thẻ",
        "card_holder": "Tên chủ thẻ",
        "issue_date": "Ngày phát hành (MM/YY)",
        "continue": "Tiếp tục",
        "cancel": "Hủy thanh toán",
        "otp_heading": "Xác thực OTP",
        "otp_hint": "Nhập mã OTP ngân hàng đã gửi tới điện thoại của bạn.",
        "otp": "Mã OTP",
        "confirm": "Thanh toán",
        "error_heading": "Thông báo",
        "error_code": "Mã lỗi",
        "bank_refused": "Ngân hàng chưa được hỗ trợ.",
        "card_refused": "Số thẻ không hợp lệ.",
        "holder_refused": "Tên chủ thẻ không đúng.",
        "issue_date_refused": "Ngày phát hành không đúng.",
    },
    "en": {
        "title": "VNPAY payment gateway",
        "sandbox": "sandbox",
        "merchant": "Merchant",
        "txn_ref": "Order reference",
        "amount": "Amount",
        "order_info": "Description",
        "card_heading": "Pay with a domestic card",
        "bank": "Bank",
        "card_number": "Card number",
        "card_holder": "Card holder",
        "issue_date": "Issue date (MM/YY)",
        "continue": "Continue",
        "cancel": "Cancel payment",
        "otp_heading": "OTP verification",
        "otp_hint": "Enter the OTP your bank sent to your phone.",
        "otp": "OTP",
        "confirm": "Pay",
        "error_heading": "Notice",
        "error_code": "Error code",
        "bank_refused": "This bank is not supported.",
        "card_refused": "Invalid card number.",
        "holder_refused": "Wrong card holder name.",
        "issue_date_refused": "Wrong issue date.",
    },
}

ERROR_MESSAGES: dict[str, dict[str, str]] = {
    BAD_FORMAT: {
        "vn": "Dữ liệu gửi sang không đúng định dạng.",
        "en": "The payment request is not well formed.",
    },
    EXPIRED: {
        "vn": "Giao dịch đã quá thời gian chờ thanh toán.",
        "en": "The payment window has expired.",
    },
    NOT_FOUND: {"vn": "Không tìm thấy giao dịch.", "en": "Transaction not found."},
    DUPLICATE_TXN_REF: {
        "vn": "Mã giao dịch (vnp_TxnRef) đã được sử dụng.",
        "en": "This vnp_TxnRef was already used for another payment.",
    },
    BAD_SIGNATURE: {"vn": "Sai chữ ký.", "en": "Invalid signature."},
    UNKNOWN_MERCHANT: {
        "vn": "Không tìm thấy website (vnp_TmnCode).",
        "en": "Unknown merchant (vnp_TmnCode).",
    },
}


class PayRequestRefused(Exception):
    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(code)
        self.code = code
        self.detail = detail


def error_page(code: str, locale: str, detail: str = "", status_code: int = 400) -> Template:
    return Template(
        template_name="error.html",
        context={
            "t": TEXTS[locale],
            "locale": locale,
            "code": code,
            "message": ERROR_MESSAGES[code][locale],
            "detail": detail,
        },
        status_code=status_code,
    )


def required(values: Mapping[str, str], name: str) -> str:
    value = values.get(name, "")
    if not value:
        raise PayRequestRefused(BAD_FORMAT, f"{name} is missing")
    return value


def checked(name: str, valid: bool) -> None:
    if not valid:
        raise PayRequestRefused(BAD_FORMAT, f"{name} is invalid")


def is_ip_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def read_pay_request(sandbox: Sandbox, values: Mapping[str, str]) -> Transaction:
    """A new transaction from a pay query; PayRequestRefused says why not."""
    if values.get("vnp_TmnCode") != sandbox.credentials.tmn_code:
        raise PayRequestRefused(UNKNOWN_MERCHANT)
    if not query_signature_is_valid(values, sandbox.credentials.hash_secret):
        raise PayRequestRefused(BAD_SIGNATURE)
    checked("vnp_Version", required(values, "vnp_Version") == VERSION)
    checked("vnp_Command", required(values, "vnp_Command") == "pay")
    checked("vnp_CurrCode", required(values, "vnp_CurrCode") == "VND")
    amount = required(values, "vnp_Amount")
    checked("vnp_Amount", bool(AMOUNT_PATTERN.fullmatch(amount)) and amount[-2:] == "00")
    txn_ref = required(values, "vnp_TxnRef")
    checked("vnp_TxnRef", bool(TXN_REF_PATTERN.fullmatch(txn_ref)))
    order_info = required(values, "vnp_OrderInfo")
    checked(
        "vnp_OrderInfo",
        len(order_info) <= 255 and order_info.isascii() and order_info.isprintable(),
    )
    order_type = required(values, "vnp_OrderType")
    locale = required(values, "vnp_Locale")
    checked("vnp_Locale", locale in LOCALES)
    return_url = required(values, "vnp_ReturnUrl")
    parts = urlsplit(return_url)
    checked("vnp_ReturnUrl", parts.scheme in ("http", "https") and bool(parts.netloc))
    ip_address = required(values, "vnp_IpAddr")
    checked("vnp_IpAddr", is_ip_address(ip_address))
    bank_code = values.get("vnp_BankCode") or None
    checked("vnp_BankCode", bank_code is None or bool(BANK_CODE_PATTERN.fullmatch(bank_code)))
    create_date = required(values, "vnp_CreateDate")
    expire_date = required(values, "vnp_ExpireDate")
    try:
        created_at = parse_vnpay_time(create_date)
    except ValueError:
        raise PayRequestRefused(BAD_FORMAT, "vnp_CreateDate is invalid") from None
    try:
        expires_at = parse_vnpay_time(expire_date)
    except ValueError:
        raise PayRequestRefused(BAD_FORMAT, "vnp_ExpireDate is invalid") from None
    checked("vnp_ExpireDate", expires_at > created_at)
    if expires_at <= sandbox.now():
        raise PayRequestRefused(EXPIRED, "vnp_ExpireDate has passed")
    return Transaction(
        txn_ref=txn_ref,
        page_token=secrets.token_urlsafe(16),
        amount=int(amount) // 100,
        order_info=order_info,
        order_type=order_type,
        locale=locale,
        return_url=return_url,
        ip_address=ip_address,
        requested_bank_code=bank_code,
        create_date=create_date,
        expire_date=expire_date,
    )


def is_retry_of(existing: Transaction, new: Transaction) -> bool:
    """The same pay URL opened again (a reload) while the payment is still open."""
    return existing.step != "finished" and (
        existing.amount,
        existing.create_date,
        existing.return_url,
    ) == (new.amount, new.create_date, new.return_url)


def finish(sandbox: Sandbox, transaction: Transaction, response_code: str) -> Redirect:
    """Record the outcome, start the IPN calls and send the browser back to the merchant."""
    if transaction.step != "finished":
        reached_bank = response_code not in (cards.CANCELLED, cards.PAYMENT_WINDOW_EXPIRED)
        transaction.step = "finished"
        transaction.response_code = response_code
        transaction.transaction_status = "00" if response_code == cards.SUCCESS else "02"
        transaction.transaction_no = sandbox.ledger.new_transaction_no() if reached_bank else "0"
        transaction.bank_code = (
            transaction.bank_code or transaction.requested_bank_code or cards.BANK_CODE
        )
        if response_code == cards.SUCCESS:
            transaction.bank_tran_no = f"VNP{transaction.transaction_no}"
        transaction.card_type = "ATM" if transaction.card_number else None
        transaction.pay_date = format_vnpay_time(sandbox.now())
        sandbox.ledger.changed()
        schedule_ipn(sandbox, transaction)
    return Redirect(path=return_url_of(sandbox, transaction), status_code=303)


def window_expired(sandbox: Sandbox, transaction: Transaction) -> bool:
    return parse_vnpay_time(transaction.expire_date) <= sandbox.now()


def page_of(transaction: Transaction) -> Redirect:
    return Redirect(path=f"/paymentv2/payment/{transaction.page_token}", status_code=303)


def card_page(
    sandbox: Sandbox,
    transaction: Transaction,
    *,
    problem: str = "",
    entered: Mapping[str, str] | None = None,
) -> Template:
    return Template(
        template_name="card.html",
        context={
            **page_context(sandbox, transaction),
            "problem": problem,
            "bank_name": cards.BANK_NAME,
            "entered": {
                "card_number": "",
                "card_holder": "",
                "issue_date": "",
                **(entered or {}),
            },
        },
    )


def page_context(sandbox: Sandbox, transaction: Transaction) -> dict[str, object]:
    return {
        "t": TEXTS[transaction.locale],
        "locale": transaction.locale,
        "merchant": sandbox.credentials.tmn_code,
        "transaction": transaction,
    }


async def form_fields(request: Request[object, object, State]) -> dict[str, str]:
    form = await request.form()
    return {name: value for name, value in form.items() if isinstance(value, str)}


class PaymentPages(Controller):
    """`/paymentv2/...`: what the buyer's browser is sent to with the merchant's pay URL."""

    include_in_schema = False

    @get("/paymentv2/vpcpay.html", sync_to_thread=False)
    def pay(self, request: Request[object, object, State], state: State) -> Template | Redirect:
        sandbox: Sandbox = state.sandbox
        values = single_vnp_values(request.query_params)
        if values is None:
            return error_page(BAD_FORMAT, "vn", "a vnp_ parameter is repeated")
        locale = values.get("vnp_Locale", "vn")
        locale = locale if locale in LOCALES else "vn"
        try:
            transaction = read_pay_request(sandbox, values)
        except PayRequestRefused as refused:
            return error_page(refused.code, locale, refused.detail)
        existing = sandbox.ledger.transactions.get(transaction.txn_ref)
        if existing is not None:
            if is_retry_of(existing, transaction):
                return page_of(existing)
            return error_page(DUPLICATE_TXN_REF, locale, "vnp_TxnRef")
        sandbox.ledger.add_transaction(transaction)
        return page_of(transaction)

    @get("/paymentv2/payment/{token:str}", sync_to_thread=False)
    def page(self, token: str, state: State) -> Template | Redirect:
        sandbox: Sandbox = state.sandbox
        transaction = sandbox.ledger.by_page_token(token)
        if transaction is None:
            return error_page(NOT_FOUND, "vn", status_code=404)
        if transaction.step == "finished":
            return finish(sandbox, transaction, transaction.response_code or "")
        if window_expired(sandbox, transaction):
            return finish(sandbox, transaction, cards.PAYMENT_WINDOW_EXPIRED)
        if transaction.step == "otp":
            return Template(template_name="otp.html", context=page_context(sandbox, transaction))
        return card_page(sandbox, transaction)

    @post("/paymentv2/payment/{token:str}/card", status_code=200)
    async def card(
        self, token: str, request: Request[object, object, State], state: State
    ) -> Template | Redirect:
        sandbox: Sandbox = state.sandbox
        transaction = sandbox.ledger.by_page_token(token)
        if transaction is None:
            return error_page(NOT_FOUND, "vn", status_code=404)
        if transaction.step != "card":
            return page_of(transaction)
        if window_expired(sandbox, transaction):
            return finish(sandbox, transaction, cards.PAYMENT_WINDOW_EXPIRED)
        fields = await form_fields(request)
        texts = TEXTS[transaction.locale]
        entered = {
            "card_number": fields.get("card_number", ""),
            "card_holder": fields.get("card_holder", ""),
            "issue_date": fields.get("issue_date", ""),
        }
        if fields.get("bank_code") != cards.BANK_CODE:
            return card_page(sandbox, transaction, problem=texts["bank_refused"], entered=entered)
        card = cards.SANDBOX_CARDS.get(cards.normalised_card_number(entered["card_number"]))
        if card is None:
            return card_page(sandbox, transaction, problem=texts["card_refused"], entered=entered)
        if not cards.holder_matches(entered["card_holder"]):
            return card_page(sandbox, transaction, problem=texts["holder_refused"], entered=entered)
        if entered["issue_date"].strip() != cards.ISSUE_DATE:
            return card_page(
                sandbox, transaction, problem=texts["issue_date_refused"], entered=entered
            )
        transaction.card_number = card.number
        transaction.bank_code = cards.BANK_CODE
        if card.decided_at == "card":
            return finish(sandbox, transaction, card.response_code)
        transaction.step = "otp"
        sandbox.ledger.changed()
        return page_of(transaction)

    @post("/paymentv2/payment/{token:str}/otp", status_code=200)
    async def otp(
        self, token: str, request: Request[object, object, State], state: State
    ) -> Template | Redirect:
        sandbox: Sandbox = state.sandbox
        transaction = sandbox.ledger.by_page_token(token)
        if transaction is None:
            return error_page(NOT_FOUND, "vn", status_code=404)
        if transaction.step != "otp":
            return page_of(transaction)
        if window_expired(sandbox, transaction):
            return finish(sandbox, transaction, cards.PAYMENT_WINDOW_EXPIRED)
        fields = await form_fields(request)
        if fields.get("otp", "").strip() != cards.OTP:
            return finish(sandbox, transaction, cards.WRONG_OTP)
        card = cards.SANDBOX_CARDS[transaction.card_number or ""]
        return finish(sandbox, transaction, card.response_code)

    @post("/paymentv2/payment/{token:str}/cancel", status_code=200, sync_to_thread=False)
    def cancel(self, token: str, state: State) -> Template | Redirect:
        sandbox: Sandbox = state.sandbox
        transaction = sandbox.ledger.by_page_token(token)
        if transaction is None:
            return error_page(NOT_FOUND, "vn", status_code=404)
        return finish(sandbox, transaction, cards.CANCELLED)
