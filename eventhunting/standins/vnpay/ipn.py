"""Signed payment results: the return redirect, and IPN calls retried as VNPAY retries them."""

from __future__ import annotations

import asyncio
import logging

import httpx
import msgspec

from eventhunting.payments.vnpay_signing import signed_query_string
from eventhunting.standins.vnpay.ledger import IpnAttempt, Transaction
from eventhunting.standins.vnpay.sandbox import Sandbox

log = logging.getLogger("eventhunting.standins.vnpay")

CONFIRMING_RSP_CODES = frozenset({"00", "02"})


class IpnAnswer(msgspec.Struct):
    RspCode: str
    Message: str = ""


def result_parameters(transaction: Transaction, tmn_code: str) -> dict[str, str]:
    """The unsigned parameters of a return or IPN query (empty ones are left out)."""
    return {
        "vnp_TmnCode": tmn_code,
        "vnp_Amount": str(transaction.amount * 100),
        "vnp_BankCode": transaction.bank_code or "",
        "vnp_BankTranNo": transaction.bank_tran_no or "",
        "vnp_CardType": transaction.card_type or "",
        "vnp_PayDate": transaction.pay_date or "",
        "vnp_OrderInfo": transaction.order_info,
        "vnp_TransactionNo": transaction.transaction_no,
        "vnp_ResponseCode": transaction.response_code or "",
        "vnp_TransactionStatus": transaction.transaction_status,
        "vnp_TxnRef": transaction.txn_ref,
    }


def with_query(url: str, query: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{query}"


def signed_result_query(sandbox: Sandbox, transaction: Transaction) -> str:
    credentials = sandbox.credentials
    return signed_query_string(
        result_parameters(transaction, credentials.tmn_code), credentials.hash_secret
    )


def return_url_of(sandbox: Sandbox, transaction: Transaction) -> str:
    """Where the buyer's browser goes once the payment is finished."""
    return with_query(transaction.return_url, signed_result_query(sandbox, transaction))


async def call_ipn(sandbox: Sandbox, transaction: Transaction, *, manual: bool) -> IpnAttempt:
    """One GET of the merchant's IPN URL, recorded in the ledger."""
    attempt = await _call(sandbox, transaction, manual=manual)
    transaction.ipn_attempts.append(attempt)
    if attempt.outcome == "confirmed":
        transaction.ipn = "confirmed"
    sandbox.ledger.changed()
    log.info(
        "IPN call",
        extra={
            "txn_ref": transaction.txn_ref,
            "outcome": attempt.outcome,
            "http_status": attempt.http_status,
            "rsp_code": attempt.rsp_code,
        },
    )
    return attempt


async def _call(sandbox: Sandbox, transaction: Transaction, *, manual: bool) -> IpnAttempt:
    at = sandbox.now()
    if sandbox.switches.drop_ipns and not manual:
        return IpnAttempt(at=at, outcome="dropped", manual=manual)
    url = with_query(sandbox.config.ipn_url, signed_result_query(sandbox, transaction))
    try:
        response = await sandbox.http.get(url)
    except httpx.HTTPError as error:
        return IpnAttempt(at=at, outcome="failed", error=type(error).__name__, manual=manual)
    try:
        rsp_code: str | None = msgspec.json.decode(response.content, type=IpnAnswer).RspCode
    except msgspec.DecodeError:
        rsp_code = None
    confirmed = response.status_code == 200 and rsp_code in CONFIRMING_RSP_CODES
    return IpnAttempt(
        at=at,
        outcome="confirmed" if confirmed else "refused",
        http_status=response.status_code,
        rsp_code=rsp_code,
        manual=manual,
    )


async def deliver_ipn(sandbox: Sandbox, transaction: Transaction) -> None:
    """Call until the merchant confirms (RspCode 00 or 02), at most `ipn_max_calls` times."""
    calls = sum(1 for attempt in transaction.ipn_attempts if not attempt.manual)
    if calls == 0 and sandbox.switches.ipn_delay_seconds:
        await asyncio.sleep(sandbox.switches.ipn_delay_seconds)
    while calls < sandbox.config.ipn_max_calls:
        if calls:
            await asyncio.sleep(sandbox.switches.ipn_retry_seconds)
        if transaction.ipn == "confirmed":  # a manual call may have been confirmed meanwhile
            return
        attempt = await call_ipn(sandbox, transaction, manual=False)
        calls += 1
        if attempt.outcome == "confirmed":
            return
    transaction.ipn = "gave_up"
    sandbox.ledger.changed()


def schedule_ipn(sandbox: Sandbox, transaction: Transaction) -> None:
    transaction.ipn = "pending"
    sandbox.ledger.changed()
    task = asyncio.create_task(deliver_ipn(sandbox, transaction), name=f"ipn:{transaction.txn_ref}")
    sandbox.ipn_tasks[transaction.txn_ref] = task

    def forget(done: asyncio.Task[None]) -> None:
        if sandbox.ipn_tasks.get(transaction.txn_ref) is done:
            del sandbox.ipn_tasks[transaction.txn_ref]

    task.add_done_callback(forget)


def resume_ipn_deliveries(sandbox: Sandbox) -> None:
    """After a restart, go on calling for every result the merchant has not confirmed."""
    for transaction in sandbox.ledger.transactions.values():
        if transaction.ipn == "pending":
            schedule_ipn(sandbox, transaction)
