"""The sandbox's memory: payments, refunds and API request ids, optionally kept in a file."""

from __future__ import annotations

import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Literal

import msgspec

FORMAT = "eventhunting-vnpay-standin"
VERSION = 1
FIRST_TRANSACTION_NO = 14_000_001

PaymentStep = Literal["card", "otp", "finished"]
IpnState = Literal["not_sent", "pending", "confirmed", "gave_up"]


class IpnAttempt(msgspec.Struct, kw_only=True):
    """One IPN call: `confirmed` (200, RspCode 00/02), `refused`, `failed` or `dropped`.

    `manual` calls were asked for through the control API and do not count as retries.
    """

    at: datetime
    outcome: Literal["confirmed", "refused", "failed", "dropped"]
    http_status: int | None = None
    rsp_code: str | None = None
    error: str | None = None
    manual: bool = False


class Transaction(msgspec.Struct, kw_only=True):
    """One pay request and, once finished, its outcome (amounts in VND, dates as VNPAY's)."""

    txn_ref: str
    page_token: str
    amount: int
    order_info: str
    order_type: str
    locale: str
    return_url: str
    ip_address: str
    requested_bank_code: str | None
    create_date: str
    expire_date: str
    step: PaymentStep = "card"
    card_number: str | None = None
    bank_code: str | None = None
    response_code: str | None = None
    transaction_status: str = "01"
    transaction_no: str = "0"
    bank_tran_no: str | None = None
    card_type: str | None = None
    pay_date: str | None = None
    ipn: IpnState = "not_sent"
    ipn_attempts: list[IpnAttempt] = []

    @property
    def paid(self) -> bool:
        return self.response_code == "00" and self.step == "finished"


class Refund(msgspec.Struct, kw_only=True):
    """One accepted refund; its own VNPAY transaction number and amount in VND."""

    refund_transaction_no: str
    request_id: str
    txn_ref: str
    amount: int
    transaction_type: str
    created_by: str
    create_date: str
    recorded_at: datetime


class LedgerFile(msgspec.Struct, kw_only=True):
    format: str
    version: int
    next_transaction_no: int
    transactions: list[Transaction]
    refunds: list[Refund]
    request_ids: list[str]


class Ledger:
    """Everything the sandbox knows; mutated only on the event loop, so without locks."""

    def __init__(self) -> None:
        self.transactions: dict[str, Transaction] = {}
        self.refunds: list[Refund] = []
        self.request_ids: set[str] = set()
        self.next_transaction_no = FIRST_TRANSACTION_NO
        self.changes = 0

    def clear(self) -> None:
        self.transactions.clear()
        self.refunds.clear()
        self.request_ids.clear()
        self.changed()

    def changed(self) -> None:
        self.changes += 1

    def add_transaction(self, transaction: Transaction) -> None:
        self.transactions[transaction.txn_ref] = transaction
        self.changed()

    def by_page_token(self, token: str) -> Transaction | None:
        for transaction in self.transactions.values():
            if transaction.page_token == token:
                return transaction
        return None

    def new_transaction_no(self) -> str:
        number = self.next_transaction_no
        self.next_transaction_no += 1
        self.changed()
        return str(number)

    def refunds_of(self, txn_ref: str) -> list[Refund]:
        return [refund for refund in self.refunds if refund.txn_ref == txn_ref]

    def refunded_amount(self, txn_ref: str) -> int:
        return sum(refund.amount for refund in self.refunds_of(txn_ref))

    def add_refund(self, refund: Refund) -> None:
        self.refunds.append(refund)
        self.changed()

    def remember_request_id(self, day: str, request_id: str) -> bool:
        """False when this request id was already used on this (GMT+7) day."""
        key = f"{day}:{request_id}"
        if key in self.request_ids:
            return False
        self.request_ids.add(key)
        self.changed()
        return True

    def encode(self) -> bytes:
        return msgspec.json.encode(
            LedgerFile(
                format=FORMAT,
                version=VERSION,
                next_transaction_no=self.next_transaction_no,
                transactions=list(self.transactions.values()),
                refunds=self.refunds,
                request_ids=sorted(self.request_ids),
            )
        )

    def load(self, path: Path) -> None:
        """Replace the content with a saved file's; ValueError when it is not one."""
        try:
            saved = msgspec.json.decode(path.read_bytes(), type=LedgerFile)
        except msgspec.DecodeError as error:
            raise ValueError(f"{path} is not a {FORMAT} file: {error}") from None
        if saved.format != FORMAT or saved.version != VERSION:
            raise ValueError(f"{path} is not a {FORMAT} v{VERSION} file")
        self.transactions = {t.txn_ref: t for t in saved.transactions}
        self.refunds = saved.refunds
        self.request_ids = set(saved.request_ids)
        self.next_transaction_no = saved.next_transaction_no


def write_atomically(path: Path, content: bytes) -> None:
    """A temporary file in the same folder, fsynced, then renamed over the old one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
