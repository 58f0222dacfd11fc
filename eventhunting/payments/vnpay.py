"""VNPAY 2.1.0 pay URLs and return/IPN verification, as pure functions over typed values."""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Literal
from urllib.parse import urlsplit

import msgspec

from eventhunting.payments.vnpay_signing import (
    PARAMETER_PREFIX,
    query_signature_is_valid,
    signed_query_string,
)

VERSION = "2.1.0"
CURRENCY = "VND"
# Vietnam has kept UTC+7 without daylight saving since 1975, so a fixed offset is exact and
# needs no tz database on the server.
VNPAY_TIME_ZONE = timezone(timedelta(hours=7), "GMT+7")
VNPAY_TIME_FORMAT = "%Y%m%d%H%M%S"

ORDER_INFO_MAX_LENGTH = 255
TXN_REF_MAX_LENGTH = 100
RETURN_URL_MAX_LENGTH = 255
# vnp_Amount is Numeric[1,12] and carries VND x 100.
AMOUNT_MAX_VND = (10**12 - 1) // 100
# Punctuation kept in vnp_OrderInfo besides letters, digits and spaces; every form encoder
# (Python, Java, PHP) encodes these alike, unlike `~` and `*`.
ORDER_INFO_PUNCTUATION = frozenset(".,:-_#/")

TMN_CODE_PATTERN = re.compile(r"[A-Za-z0-9]{8}")
TXN_REF_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,100}")
BANK_CODE_PATTERN = re.compile(r"[A-Za-z0-9]{3,20}")
ORDER_TYPE_PATTERN = re.compile(r"[A-Za-z0-9_]{1,100}")
TWO_DIGIT_CODE_PATTERN = re.compile(r"[0-9]{2}")
DIGITS_PATTERN = re.compile(r"[0-9]{1,20}")
# Characters form encoders disagree on; VNPAY could hash them differently from us.
AMBIGUOUS_URL_CHARACTERS = frozenset("~*")

Locale = Literal["vn", "en"]
LOCALES: frozenset[str] = frozenset({"vn", "en"})


class VnpayError(Exception):
    """Base of every error of the VNPAY adapter."""


class InvalidPaymentRequest(VnpayError):
    """A pay, querydr or refund request cannot be sent as it is; `field` names the culprit."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


class InvalidVnpayMessage(VnpayError):
    """A correctly signed VNPAY message lacks a field or carries one we cannot read."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


class MerchantCredentials(msgspec.Struct, frozen=True, kw_only=True):
    """The merchant's `vnp_TmnCode` and hash secret (the secret never appears in a repr)."""

    tmn_code: str
    hash_secret: str

    def __post_init__(self) -> None:
        if not TMN_CODE_PATTERN.fullmatch(self.tmn_code):
            raise ValueError("the VNPAY merchant code must be 8 letters or digits")
        if not self.hash_secret:
            raise ValueError("the VNPAY hash secret must not be empty")

    def __repr__(self) -> str:
        return f"MerchantCredentials(tmn_code={self.tmn_code!r}, hash_secret=<hidden>)"


def format_vnpay_time(moment: datetime) -> str:
    """`yyyyMMddHHmmss` in GMT+7, whatever the zone of the (aware) datetime or the server."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("VNPAY times need an aware datetime")
    return moment.astimezone(VNPAY_TIME_ZONE).strftime(VNPAY_TIME_FORMAT)


def parse_vnpay_time(text: str) -> datetime:
    """An aware GMT+7 datetime from `yyyyMMddHHmmss`; ValueError for anything else."""
    if not re.fullmatch(r"[0-9]{14}", text):
        raise ValueError("a VNPAY time is 14 digits, yyyyMMddHHmmss")
    # Fixed-width slices: strptime would accept a one-digit month and shift the rest.
    return datetime(
        int(text[0:4]),
        int(text[4:6]),
        int(text[6:8]),
        int(text[8:10]),
        int(text[10:12]),
        int(text[12:14]),
        tzinfo=VNPAY_TIME_ZONE,
    )


def ascii_order_info(text: str) -> str:
    """`vnp_OrderInfo` as VNPAY wants it: no Vietnamese accents, no special characters.

    Diacritics are stripped (`đ`/`Đ` become `d`/`D`), anything but ASCII letters, digits,
    spaces and a little punctuation becomes a space, runs of spaces collapse, and the
    result is cut to 255 characters.
    """
    decomposed = unicodedata.normalize("NFKD", text.replace("đ", "d").replace("Đ", "D"))
    kept = "".join(
        character
        if (character.isascii() and character.isalnum()) or character in ORDER_INFO_PUNCTUATION
        else " "
        for character in decomposed
        if not unicodedata.combining(character)
    )
    return " ".join(kept.split())[:ORDER_INFO_MAX_LENGTH].rstrip()


class PaymentRequest(msgspec.Struct, frozen=True, kw_only=True):
    """What a pay URL asks VNPAY for; amounts in VND, times aware (any zone)."""

    amount: int
    txn_ref: str
    order_info: str
    return_url: str
    ip_address: str
    created_at: datetime
    expires_at: datetime
    locale: Locale = "vn"
    bank_code: str | None = None
    order_type: str = "other"


def check_amount(amount: int, field: str = "amount") -> None:
    if type(amount) is not int or amount < 1:
        raise InvalidPaymentRequest(field, "must be a positive whole number of VND")
    if amount > AMOUNT_MAX_VND:
        raise InvalidPaymentRequest(field, f"must be at most {AMOUNT_MAX_VND} VND")


def check_txn_ref(txn_ref: str) -> None:
    if not TXN_REF_PATTERN.fullmatch(txn_ref):
        raise InvalidPaymentRequest(
            "txn_ref", f"must be 1 to {TXN_REF_MAX_LENGTH} letters, digits, '.', '_' or '-'"
        )


def check_bank_code(bank_code: str) -> None:
    if not BANK_CODE_PATTERN.fullmatch(bank_code):
        raise InvalidPaymentRequest("bank_code", "must be 3 to 20 letters or digits")


def check_ip_address(ip_address: str) -> None:
    try:
        ipaddress.ip_address(ip_address)
    except ValueError:
        raise InvalidPaymentRequest("ip_address", "must be an IPv4 or IPv6 address") from None


def vnpay_time_of(moment: datetime, field: str) -> str:
    try:
        return format_vnpay_time(moment)
    except (ValueError, AttributeError):
        raise InvalidPaymentRequest(field, "must be an aware datetime") from None


def payment_parameters(request: PaymentRequest, tmn_code: str) -> dict[str, str]:
    """The unsigned `vnp_*` parameters of a pay URL; raises InvalidPaymentRequest."""
    check_amount(request.amount)
    check_txn_ref(request.txn_ref)
    order_info = ascii_order_info(request.order_info)
    if not order_info:
        raise InvalidPaymentRequest("order_info", "has no letters or digits left once made ASCII")
    if request.locale not in LOCALES:
        raise InvalidPaymentRequest("locale", "must be 'vn' or 'en'")
    return_url = urlsplit(request.return_url)
    if return_url.scheme not in ("http", "https") or not return_url.netloc:
        raise InvalidPaymentRequest("return_url", "must be an http or https URL")
    if len(request.return_url) > RETURN_URL_MAX_LENGTH:
        raise InvalidPaymentRequest("return_url", f"must be at most {RETURN_URL_MAX_LENGTH} long")
    if AMBIGUOUS_URL_CHARACTERS & set(request.return_url):
        raise InvalidPaymentRequest("return_url", "must not contain '~' or '*'")
    check_ip_address(request.ip_address)
    created = vnpay_time_of(request.created_at, "created_at")
    expires = vnpay_time_of(request.expires_at, "expires_at")
    if request.expires_at <= request.created_at:
        raise InvalidPaymentRequest("expires_at", "must be after created_at")
    if not ORDER_TYPE_PATTERN.fullmatch(request.order_type):
        raise InvalidPaymentRequest("order_type", "must be a VNPAY category code such as 'other'")
    parameters = {
        "vnp_Version": VERSION,
        "vnp_Command": "pay",
        "vnp_TmnCode": tmn_code,
        "vnp_Amount": str(request.amount * 100),
        "vnp_CurrCode": CURRENCY,
        "vnp_TxnRef": request.txn_ref,
        "vnp_OrderInfo": order_info,
        "vnp_OrderType": request.order_type,
        "vnp_Locale": request.locale,
        "vnp_ReturnUrl": request.return_url,
        "vnp_IpAddr": request.ip_address,
        "vnp_CreateDate": created,
        "vnp_ExpireDate": expires,
    }
    if request.bank_code is not None:
        check_bank_code(request.bank_code)
        parameters["vnp_BankCode"] = request.bank_code
    return parameters


def build_payment_url(
    request: PaymentRequest, credentials: MerchantCredentials, pay_url: str
) -> str:
    """The signed URL that sends the buyer to VNPAY's payment page."""
    query = signed_query_string(
        payment_parameters(request, credentials.tmn_code), credentials.hash_secret
    )
    return f"{pay_url}{'&' if '?' in pay_url else '?'}{query}"


class PaymentResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a signed return or IPN query says about one payment; `amount` in VND."""

    tmn_code: str
    txn_ref: str
    amount: int
    response_code: str
    transaction_status: str
    transaction_no: str
    bank_code: str | None
    bank_tran_no: str | None
    card_type: str | None
    pay_date: datetime | None
    order_info: str

    @property
    def paid(self) -> bool:
        """VNPAY took the money: both codes are `00`."""
        return self.response_code == "00" and self.transaction_status == "00"


class PaymentCallback(msgspec.Struct, frozen=True, kw_only=True):
    """The verdict on a return or IPN query; `result` is set exactly when the hash is valid."""

    signature_valid: bool
    result: PaymentResult | None = None


QueryParameters = Mapping[str, str] | Iterable[tuple[str, str]]


def single_vnp_values(query: QueryParameters) -> dict[str, str] | None:
    """Decoded parameters by name; None when a `vnp_*` name repeats (VNPAY never does that)."""
    pairs = query.items() if isinstance(query, Mapping) else query
    values: dict[str, str] = {}
    for name, value in pairs:
        if name in values and name.startswith(PARAMETER_PREFIX):
            return None
        values.setdefault(name, value)
    return values


def verify_payment_callback(query: QueryParameters, hash_secret: str) -> PaymentCallback:
    """Check a return or IPN query's hash and read it.

    Unknown extra parameters are ignored. Raises InvalidVnpayMessage when the hash is valid
    but a field is missing or unreadable; an invalid hash is a verdict, not an error.
    """
    values = single_vnp_values(query)
    if values is None or not query_signature_is_valid(values, hash_secret):
        return PaymentCallback(signature_valid=False)
    return PaymentCallback(signature_valid=True, result=read_payment_result(values))


def read_payment_result(values: Mapping[str, str]) -> PaymentResult:
    """The typed content of return or IPN parameters (their hash checked by the caller)."""
    pay_date_text = optional_text(values, "vnp_PayDate")
    try:
        pay_date = None if pay_date_text is None else parse_vnpay_time(pay_date_text)
    except ValueError:
        raise InvalidVnpayMessage("vnp_PayDate", "is not yyyyMMddHHmmss") from None
    return PaymentResult(
        tmn_code=required_text(values, "vnp_TmnCode"),
        txn_ref=required_text(values, "vnp_TxnRef"),
        amount=amount_in_vnd(values, "vnp_Amount"),
        response_code=two_digit_code(values, "vnp_ResponseCode"),
        transaction_status=two_digit_code(values, "vnp_TransactionStatus"),
        transaction_no=digits(values, "vnp_TransactionNo"),
        bank_code=optional_text(values, "vnp_BankCode"),
        bank_tran_no=optional_text(values, "vnp_BankTranNo"),
        card_type=optional_text(values, "vnp_CardType"),
        pay_date=pay_date,
        order_info=values.get("vnp_OrderInfo", ""),
    )


def optional_text(values: Mapping[str, str], name: str) -> str | None:
    return values.get(name) or None


def required_text(values: Mapping[str, str], name: str) -> str:
    value = values.get(name, "")
    if not value:
        raise InvalidVnpayMessage(name, "is missing")
    return value


def two_digit_code(values: Mapping[str, str], name: str) -> str:
    value = required_text(values, name)
    if not TWO_DIGIT_CODE_PATTERN.fullmatch(value):
        raise InvalidVnpayMessage(name, "is not a two-digit code")
    return value


def digits(values: Mapping[str, str], name: str) -> str:
    value = required_text(values, name)
    if not DIGITS_PATTERN.fullmatch(value):
        raise InvalidVnpayMessage(name, "is not a number")
    return value


def amount_in_vnd(values: Mapping[str, str], name: str) -> int:
    """A `vnp_Amount` (VND x 100) as whole VND."""
    hundredths = int(digits(values, name))
    if hundredths % 100:
        raise InvalidVnpayMessage(name, "is not a whole number of VND x 100")
    return hundredths // 100
