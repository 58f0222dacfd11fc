"""VNPAY's merchant web API (querydr, refund): signed JSON requests, verified typed answers."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, Self

import httpx
import msgspec

from eventhunting.payments.vnpay import (
    VERSION,
    InvalidPaymentRequest,
    InvalidVnpayMessage,
    MerchantCredentials,
    VnpayError,
    amount_in_vnd,
    ascii_order_info,
    check_amount,
    check_ip_address,
    check_txn_ref,
    optional_text,
    parse_vnpay_time,
    two_digit_code,
    vnpay_time_of,
)
from eventhunting.payments.vnpay_signing import (
    QUERYDR_REQUEST_HASH_ORDER,
    QUERYDR_RESPONSE_HASH_ORDER,
    REFUND_REQUEST_HASH_ORDER,
    REFUND_RESPONSE_HASH_ORDER,
    SECURE_HASH,
    pipe_joined_signature_is_valid,
    sign_pipe_joined,
)

# VNPAY answers within seconds; a caller retrying (with backoff) beats one stuck request.
DEFAULT_TIMEOUT_SECONDS = 10.0
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,32}")
CREATED_BY_MAX_LENGTH = 250
REFUND_TRANSACTION_TYPES: dict[str, str] = {"full": "02", "partial": "03"}


class VnpayTransportError(VnpayError):
    """The API could not be reached or did not answer with JSON; the call may be retried."""

    def __init__(self, detail: str, *, status_code: int | None = None) -> None:
        super().__init__(detail)
        self.status_code = status_code


class VnpayResponseSignatureError(VnpayError):
    """An API answer's `vnp_SecureHash` does not match its content; nothing in it is trusted."""

    def __init__(self, response_code: str | None) -> None:
        super().__init__("the VNPAY answer's signature does not match its content")
        self.response_code = response_code


class QueryRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A querydr: the state of the payment `txn_ref` created at `transaction_date`."""

    request_id: str
    txn_ref: str
    order_info: str
    transaction_date: datetime
    created_at: datetime
    ip_address: str
    transaction_no: str | None = None


class RefundRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A refund of `amount` VND of the payment `txn_ref` created at `transaction_date`."""

    request_id: str
    txn_ref: str
    order_info: str
    transaction_date: datetime
    created_at: datetime
    ip_address: str
    amount: int
    refund_type: Literal["full", "partial"]
    created_by: str
    transaction_no: str | None = None


class QueryResult(msgspec.Struct, frozen=True, kw_only=True):
    """A verified querydr answer; `response_code` `00` means the transaction was found."""

    response_id: str
    response_code: str
    message: str
    tmn_code: str | None
    txn_ref: str | None
    amount: int | None
    order_info: str | None
    bank_code: str | None
    pay_date: datetime | None
    transaction_no: str | None
    transaction_type: str | None
    transaction_status: str | None
    promotion_code: str | None
    promotion_amount: str | None


class RefundResult(msgspec.Struct, frozen=True, kw_only=True):
    """A verified refund answer; `response_code` `00` means VNPAY accepted the refund."""

    response_id: str
    response_code: str
    message: str
    tmn_code: str | None
    txn_ref: str | None
    amount: int | None
    order_info: str | None
    bank_code: str | None
    pay_date: datetime | None
    transaction_no: str | None
    transaction_type: str | None
    transaction_status: str | None


def check_request_id(request_id: str) -> None:
    if not REQUEST_ID_PATTERN.fullmatch(request_id):
        raise InvalidPaymentRequest(
            "request_id", "must be 1 to 32 letters, digits, '_' or '-' (unique per day)"
        )


def querydr_body(request: QueryRequest, credentials: MerchantCredentials) -> dict[str, str]:
    """The signed JSON body of a querydr; raises InvalidPaymentRequest."""
    check_request_id(request.request_id)
    check_txn_ref(request.txn_ref)
    check_ip_address(request.ip_address)
    body = {
        "vnp_RequestId": request.request_id,
        "vnp_Version": VERSION,
        "vnp_Command": "querydr",
        "vnp_TmnCode": credentials.tmn_code,
        "vnp_TxnRef": request.txn_ref,
        "vnp_OrderInfo": ascii_order_info(request.order_info),
        "vnp_TransactionDate": vnpay_time_of(request.transaction_date, "transaction_date"),
        "vnp_CreateDate": vnpay_time_of(request.created_at, "created_at"),
        "vnp_IpAddr": request.ip_address,
    }
    if request.transaction_no:
        body["vnp_TransactionNo"] = request.transaction_no
    body[SECURE_HASH] = sign_pipe_joined(body, QUERYDR_REQUEST_HASH_ORDER, credentials.hash_secret)
    return body


def refund_body(request: RefundRequest, credentials: MerchantCredentials) -> dict[str, str]:
    """The signed JSON body of a refund; raises InvalidPaymentRequest."""
    check_request_id(request.request_id)
    check_txn_ref(request.txn_ref)
    check_ip_address(request.ip_address)
    check_amount(request.amount)
    if request.refund_type not in REFUND_TRANSACTION_TYPES:
        raise InvalidPaymentRequest("refund_type", "must be 'full' or 'partial'")
    if not request.created_by or len(request.created_by) > CREATED_BY_MAX_LENGTH:
        raise InvalidPaymentRequest(
            "created_by", f"must be 1 to {CREATED_BY_MAX_LENGTH} characters"
        )
    body = {
        "vnp_RequestId": request.request_id,
        "vnp_Version": VERSION,
        "vnp_Command": "refund",
        "vnp_TmnCode": credentials.tmn_code,
        "vnp_TransactionType": REFUND_TRANSACTION_TYPES[request.refund_type],
        "vnp_TxnRef": request.txn_ref,
        "vnp_Amount": str(request.amount * 100),
        "vnp_OrderInfo": ascii_order_info(request.order_info),
        "vnp_TransactionDate": vnpay_time_of(request.transaction_date, "transaction_date"),
        "vnp_CreateBy": request.created_by,
        "vnp_CreateDate": vnpay_time_of(request.created_at, "created_at"),
        "vnp_IpAddr": request.ip_address,
    }
    if request.transaction_no:
        body["vnp_TransactionNo"] = request.transaction_no
    body[SECURE_HASH] = sign_pipe_joined(body, REFUND_REQUEST_HASH_ORDER, credentials.hash_secret)
    return body


def raw_text_values(answer: Mapping[str, Any]) -> dict[str, str]:
    """Every `vnp_*` field as the text that was hashed: numbers as written, null as empty."""
    values: dict[str, str] = {}
    for name, value in answer.items():
        if value is None:
            values[name] = ""
        elif isinstance(value, str):
            values[name] = value
        elif isinstance(value, int) and not isinstance(value, bool):
            values[name] = str(value)
        elif name.startswith("vnp_"):
            raise InvalidVnpayMessage(name, "is neither text nor a whole number")
    return values


def verified_values(
    answer: Mapping[str, Any], order: Sequence[str], hash_secret: str
) -> dict[str, str]:
    values = raw_text_values(answer)
    if not pipe_joined_signature_is_valid(values, order, hash_secret):
        raise VnpayResponseSignatureError(values.get("vnp_ResponseCode") or None)
    return values


def common_answer_fields(values: Mapping[str, str]) -> dict[str, Any]:
    pay_date_text = optional_text(values, "vnp_PayDate")
    try:
        pay_date = None if pay_date_text is None else parse_vnpay_time(pay_date_text)
    except ValueError:
        raise InvalidVnpayMessage("vnp_PayDate", "is not yyyyMMddHHmmss") from None
    transaction_type = optional_text(values, "vnp_TransactionType")
    transaction_status = optional_text(values, "vnp_TransactionStatus")
    return {
        "response_id": values.get("vnp_ResponseId", ""),
        "response_code": two_digit_code(values, "vnp_ResponseCode"),
        "message": values.get("vnp_Message", ""),
        "tmn_code": optional_text(values, "vnp_TmnCode"),
        "txn_ref": optional_text(values, "vnp_TxnRef"),
        "amount": amount_in_vnd(values, "vnp_Amount") if values.get("vnp_Amount") else None,
        "order_info": optional_text(values, "vnp_OrderInfo"),
        "bank_code": optional_text(values, "vnp_BankCode"),
        "pay_date": pay_date,
        "transaction_no": optional_text(values, "vnp_TransactionNo"),
        "transaction_type": None
        if transaction_type is None
        else two_digit_code(values, "vnp_TransactionType"),
        "transaction_status": None
        if transaction_status is None
        else two_digit_code(values, "vnp_TransactionStatus"),
    }


def read_querydr_answer(answer: Mapping[str, Any], hash_secret: str) -> QueryResult:
    """Verify a querydr answer's hash over its raw values, then read it.

    Raises VnpayResponseSignatureError on a hash mismatch and InvalidVnpayMessage on a
    signed answer with a missing or unreadable field.
    """
    values = verified_values(answer, QUERYDR_RESPONSE_HASH_ORDER, hash_secret)
    return QueryResult(
        **common_answer_fields(values),
        promotion_code=optional_text(values, "vnp_PromotionCode"),
        promotion_amount=optional_text(values, "vnp_PromotionAmount"),
    )


def read_refund_answer(answer: Mapping[str, Any], hash_secret: str) -> RefundResult:
    """Verify a refund answer's hash over its raw values, then read it (errors as querydr's)."""
    values = verified_values(answer, REFUND_RESPONSE_HASH_ORDER, hash_secret)
    return RefundResult(**common_answer_fields(values))


def check_answer_is_about(txn_ref: str, response_code: str, answered_txn_ref: str | None) -> None:
    if response_code == "00" and answered_txn_ref != txn_ref:
        raise InvalidVnpayMessage("vnp_TxnRef", "names another transaction than the request")


class VnpayGateway:
    """Async client of VNPAY's merchant web API; one per process, closed on shutdown.

    Each call is one POST with a bounded timeout: transport failures raise
    VnpayTransportError and retrying is the caller's decision.
    """

    def __init__(
        self,
        credentials: MerchantCredentials,
        api_url: str,
        *,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self.credentials = credentials
        self.api_url = api_url
        self._client = httpx.AsyncClient(timeout=timeout_seconds, follow_redirects=False)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def query(self, request: QueryRequest) -> QueryResult:
        """Ask VNPAY for the state of one payment."""
        answer = await self._post(querydr_body(request, self.credentials))
        result = read_querydr_answer(answer, self.credentials.hash_secret)
        check_answer_is_about(request.txn_ref, result.response_code, result.txn_ref)
        return result

    async def refund(self, request: RefundRequest) -> RefundResult:
        """Ask VNPAY to refund (part of) one payment."""
        answer = await self._post(refund_body(request, self.credentials))
        result = read_refund_answer(answer, self.credentials.hash_secret)
        check_answer_is_about(request.txn_ref, result.response_code, result.txn_ref)
        return result

    async def _post(self, body: Mapping[str, str]) -> dict[str, Any]:
        try:
            response = await self._client.post(
                self.api_url,
                content=msgspec.json.encode(body),
                headers={"Content-Type": "application/json", "Accept": "application/json"},
            )
        except httpx.HTTPError as error:
            raise VnpayTransportError(
                f"the VNPAY API did not answer: {type(error).__name__}"
            ) from error
        if not response.is_success:
            raise VnpayTransportError(
                f"the VNPAY API answered HTTP {response.status_code}",
                status_code=response.status_code,
            )
        try:
            answer = msgspec.json.decode(response.content)
        except msgspec.DecodeError:
            raise VnpayTransportError(
                "the VNPAY API answered something that is not JSON",
                status_code=response.status_code,
            ) from None
        if not isinstance(answer, dict):
            raise VnpayTransportError(
                "the VNPAY API answered JSON that is not an object",
                status_code=response.status_code,
            )
        return answer
