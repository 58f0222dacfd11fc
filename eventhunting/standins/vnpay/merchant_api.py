"""VNPAY's merchant web API as the sandbox answers it: querydr and refund over its ledger."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from litestar import Request, Response, post
from litestar.datastructures import State

from eventhunting.payments.vnpay import DIGITS_PATTERN, VERSION, format_vnpay_time, parse_vnpay_time
from eventhunting.payments.vnpay_api import REQUEST_ID_PATTERN
from eventhunting.payments.vnpay_signing import (
    QUERYDR_REQUEST_HASH_ORDER,
    QUERYDR_RESPONSE_HASH_ORDER,
    REFUND_REQUEST_HASH_ORDER,
    REFUND_RESPONSE_HASH_ORDER,
    SECURE_HASH,
    pipe_joined_signature_is_valid,
    sign_pipe_joined,
)
from eventhunting.standins.vnpay.ledger import Refund, Transaction
from eventhunting.standins.vnpay.sandbox import Sandbox

AMOUNT_PATTERN = re.compile(r"[1-9][0-9]{0,11}")
FULL_REFUND = "02"
PARTIAL_REFUND = "03"
PAY = "01"
REFUND_IN_PROGRESS = "05"
REFUND_SENT_TO_BANK = "06"

MESSAGES: dict[str, str] = {
    "02": "Invalid TmnCode",
    "03": "Invalid data format",
    "04": "A full refund is not allowed after a partial refund",
    "13": "Only partial refunds are allowed for this transaction",
    "91": "Transaction not found",
    "93": "Invalid refund amount",
    "94": "Duplicate request",
    "95": "The transaction was not successful at VNPAY; it cannot be refunded",
    "97": "Invalid checksum",
    "99": "Unknown error",
}


class ApiAnswer(msgspec.Struct, frozen=True):
    fields: dict[str, str]
    status_code: int = 200


def signed_answer(sandbox: Sandbox, command: str, fields: dict[str, str]) -> dict[str, str]:
    order = REFUND_RESPONSE_HASH_ORDER if command == "refund" else QUERYDR_RESPONSE_HASH_ORDER
    return {
        **fields,
        SECURE_HASH: sign_pipe_joined(fields, order, sandbox.credentials.hash_secret),
    }


def new_response_id() -> str:
    return secrets.token_hex(16)


def error_answer(
    sandbox: Sandbox,
    command: str,
    code: str,
    received: Mapping[str, str],
    *,
    message: str | None = None,
    status_code: int = 200,
) -> ApiAnswer:
    fields = {
        "vnp_ResponseId": new_response_id(),
        "vnp_Command": command,
        "vnp_ResponseCode": code,
        "vnp_Message": message or MESSAGES[code],
        "vnp_TmnCode": received.get("vnp_TmnCode", ""),
        "vnp_TxnRef": received.get("vnp_TxnRef", ""),
    }
    return ApiAnswer(signed_answer(sandbox, command, fields), status_code)


def is_vnpay_time(text: str) -> bool:
    try:
        parse_vnpay_time(text)
    except ValueError:
        return False
    return True


def is_ip_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def format_problem(command: str, values: Mapping[str, str]) -> str | None:
    """The first field that is missing or malformed, or None."""
    checks: list[tuple[str, bool]] = [
        ("vnp_RequestId", bool(REQUEST_ID_PATTERN.fullmatch(values.get("vnp_RequestId", "")))),
        ("vnp_Version", values.get("vnp_Version") == VERSION),
        ("vnp_TmnCode", bool(values.get("vnp_TmnCode"))),
        ("vnp_TxnRef", bool(values.get("vnp_TxnRef"))),
        ("vnp_OrderInfo", bool(values.get("vnp_OrderInfo"))),
        ("vnp_TransactionDate", is_vnpay_time(values.get("vnp_TransactionDate", ""))),
        ("vnp_CreateDate", is_vnpay_time(values.get("vnp_CreateDate", ""))),
        ("vnp_IpAddr", is_ip_address(values.get("vnp_IpAddr", ""))),
        (SECURE_HASH, bool(values.get(SECURE_HASH))),
    ]
    if command == "refund":
        amount = values.get("vnp_Amount", "")
        transaction_no = values.get("vnp_TransactionNo", "")
        checks += [
            ("vnp_TransactionType", values.get("vnp_TransactionType") in ("02", "03")),
            ("vnp_Amount", bool(AMOUNT_PATTERN.fullmatch(amount)) and amount.endswith("00")),
            ("vnp_CreateBy", bool(values.get("vnp_CreateBy"))),
            (
                "vnp_TransactionNo",
                not transaction_no or bool(DIGITS_PATTERN.fullmatch(transaction_no)),
            ),
        ]
    return next((name for name, valid in checks if not valid), None)


def querydr_answer(sandbox: Sandbox, transaction: Transaction) -> ApiAnswer:
    """The transaction as it stands: type 01 pay, 02 fully or 03 partly refunded."""
    refunded = sandbox.ledger.refunded_amount(transaction.txn_ref)
    if refunded == 0:
        transaction_type, status = PAY, transaction.transaction_status
    elif refunded == transaction.amount:
        transaction_type, status = FULL_REFUND, REFUND_SENT_TO_BANK
    else:
        transaction_type, status = PARTIAL_REFUND, REFUND_SENT_TO_BANK
    fields = {
        "vnp_ResponseId": new_response_id(),
        "vnp_Command": "querydr",
        "vnp_ResponseCode": "00",
        "vnp_Message": "QueryDR Success",
        "vnp_TmnCode": sandbox.credentials.tmn_code,
        "vnp_TxnRef": transaction.txn_ref,
        "vnp_Amount": str(transaction.amount * 100),
        "vnp_OrderInfo": transaction.order_info,
        "vnp_BankCode": transaction.bank_code or "",
        "vnp_PayDate": transaction.pay_date or "",
        "vnp_TransactionNo": transaction.transaction_no,
        "vnp_TransactionType": transaction_type,
        "vnp_TransactionStatus": status,
    }
    return ApiAnswer(signed_answer(sandbox, "querydr", fields))


def refund_refusal(
    sandbox: Sandbox, transaction: Transaction, values: Mapping[str, str]
) -> str | None:
    """The code refusing this refund, or None when it may go ahead."""
    transaction_no = values.get("vnp_TransactionNo", "")
    if transaction_no and transaction_no != transaction.transaction_no:
        return "91"
    if not transaction.paid:
        return "95"
    amount = int(values["vnp_Amount"]) // 100
    refunded = sandbox.ledger.refunded_amount(transaction.txn_ref)
    if values["vnp_TransactionType"] == FULL_REFUND:
        if refunded:
            return "04"
        if not sandbox.switches.full_refunds_allowed:
            return "13"
        if amount != transaction.amount:
            return "93"
    elif amount > transaction.amount - refunded:
        return "93"
    return None


def record_refund(
    sandbox: Sandbox, transaction: Transaction, values: Mapping[str, str]
) -> dict[str, str]:
    """Add the refund to the ledger; the answer's fields (unsigned)."""
    refund = Refund(
        refund_transaction_no=sandbox.ledger.new_transaction_no(),
        request_id=values["vnp_RequestId"],
        txn_ref=transaction.txn_ref,
        amount=int(values["vnp_Amount"]) // 100,
        transaction_type=values["vnp_TransactionType"],
        created_by=values["vnp_CreateBy"],
        create_date=values["vnp_CreateDate"],
        recorded_at=sandbox.now(),
    )
    sandbox.ledger.add_refund(refund)
    return {
        "vnp_ResponseId": new_response_id(),
        "vnp_Command": "refund",
        "vnp_ResponseCode": "00",
        "vnp_Message": "Refund success",
        "vnp_TmnCode": sandbox.credentials.tmn_code,
        "vnp_TxnRef": transaction.txn_ref,
        "vnp_Amount": values["vnp_Amount"],
        "vnp_BankCode": transaction.bank_code or "",
        "vnp_PayDate": format_vnpay_time(refund.recorded_at),
        "vnp_TransactionNo": refund.refund_transaction_no,
        "vnp_TransactionType": refund.transaction_type,
        "vnp_TransactionStatus": REFUND_IN_PROGRESS,
        "vnp_OrderInfo": values["vnp_OrderInfo"],
    }


async def refund(
    sandbox: Sandbox, transaction: Transaction, values: Mapping[str, str]
) -> ApiAnswer:
    refusal = refund_refusal(sandbox, transaction, values)
    if refusal is not None:
        return error_answer(sandbox, "refund", refusal, values)
    if sandbox.refund_fails_now():
        mode = sandbox.switches.refund_failure_mode
        if mode == "applied_then_timeout":
            fields = record_refund(sandbox, transaction, values)
            await asyncio.sleep(sandbox.switches.refund_hang_seconds)
            return ApiAnswer(signed_answer(sandbox, "refund", fields))
        if mode == "timeout":
            await asyncio.sleep(sandbox.switches.refund_hang_seconds)
        return error_answer(sandbox, "refund", "99", values)
    return ApiAnswer(signed_answer(sandbox, "refund", record_refund(sandbox, transaction, values)))


async def answer(sandbox: Sandbox, payload: Any) -> ApiAnswer:
    """Check a request in VNPAY's order (format, merchant, checksum, request id) and act."""
    if not isinstance(payload, dict):
        return error_answer(sandbox, "", "03", {})
    values = {name: value for name, value in payload.items() if isinstance(value, str)}
    command = values.get("vnp_Command", "")
    if command not in ("querydr", "refund"):
        return error_answer(sandbox, "", "03", values)
    if command == "refund" and sandbox.refund_rate_exceeded():
        over_limit = sandbox.switches.refund_rate_limit_answer == "http_429"
        return error_answer(
            sandbox,
            command,
            "99",
            values,
            message="Too many requests",
            status_code=429 if over_limit else 200,
        )
    not_text = any(
        name.startswith("vnp_") and not isinstance(value, str) for name, value in payload.items()
    )
    if not_text or format_problem(command, values) is not None:
        return error_answer(sandbox, command, "03", values)
    if values["vnp_TmnCode"] != sandbox.credentials.tmn_code:
        return error_answer(sandbox, command, "02", values)
    order: Sequence[str] = (
        REFUND_REQUEST_HASH_ORDER if command == "refund" else QUERYDR_REQUEST_HASH_ORDER
    )
    if not pipe_joined_signature_is_valid(values, order, sandbox.credentials.hash_secret):
        return error_answer(sandbox, command, "97", values)
    day = values["vnp_CreateDate"][:8]
    if not sandbox.ledger.remember_request_id(day, values["vnp_RequestId"]):
        return error_answer(sandbox, command, "94", values)
    transaction = sandbox.ledger.transactions.get(values["vnp_TxnRef"])
    if transaction is None or transaction.create_date != values["vnp_TransactionDate"]:
        return error_answer(sandbox, command, "91", values)
    if command == "querydr":
        return querydr_answer(sandbox, transaction)
    return await refund(sandbox, transaction, values)


@post("/merchant_webapi/api/transaction", status_code=200, include_in_schema=False)
async def merchant_transaction_api(
    request: Request[object, object, State], state: State
) -> Response[dict[str, str]]:
    """querydr and refund, JSON in and out, every answer signed."""
    sandbox: Sandbox = state.sandbox
    try:
        payload = msgspec.json.decode(await request.body())
    except msgspec.DecodeError:
        payload = None
    result = await answer(sandbox, payload)
    return Response(result.fields, status_code=result.status_code)
