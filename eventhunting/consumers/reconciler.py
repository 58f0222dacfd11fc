"""The reconciler: refunds through VNPAY, settles a cancelled event's orders, asks querydr."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import time
from collections.abc import Sequence
from datetime import datetime

from prometheus_client import Counter
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from eventhunting.domain.catalog import EventCancelled
from eventhunting.domain.orders import (
    HOLD_RELEASED_EVENT_CANCELLED,
    Order,
    OrderNotFound,
    PaymentStatus,
    Refund,
    RefundRequested,
)
from eventhunting.domain.payments import (
    RecordRefundResult,
    order_id_of,
)
from eventhunting.payments.vnpay import PaymentResult
from eventhunting.payments.vnpay_api import (
    QueryRequest,
    QueryResult,
    RefundRequest,
    VnpayGateway,
    VnpayTransportError,
)
from eventhunting.services.orders import PAYMENT_CHECK_SCHEDULE
from eventhunting.services.payments import PaymentService
from eventhunting.services.refunds import RefundService
from eventhunting.store import keys
from eventhunting.store.append import text
from eventhunting.store.consumer_groups import Lease, PartitionOwnership
from eventhunting.store.envelope import EventEnvelope

logger = logging.getLogger("eventhunting.consumers.reconciler")

RECONCILER_GROUP = "reconciler"
# Gateway calls per delivery for transport failures, and the capped, jittered wait between.
GATEWAY_ATTEMPTS = 4
GATEWAY_RETRY_INITIAL_SECONDS = 0.5
GATEWAY_RETRY_MAX_SECONDS = 8.0
# How often the payment-check schedules are polled, and how many due attempts per round.
CHECK_INTERVAL_SECONDS = 5.0
CHECK_BATCH = 100
REFUND_CREATED_BY = "eventhunting"

OUTCOMES = Counter(
    "eventhunting_reconciler_outcomes_total",
    "Refunds and payment checks the reconciler settled, by outcome.",
    ["outcome"],
)


class GatewayUnreachable(ConnectionError):
    """VNPAY did not answer after the retries of one delivery: an outage, tried again later."""


def server_address() -> str:
    """This host's address, sent as vnp_IpAddr on querydr and refund calls."""
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def request_id() -> str:
    """A fresh vnp_RequestId: VNPAY refuses (94) a request id it has seen that day."""
    return secrets.token_hex(16)


def refund_was_made(answer: QueryResult, amount: int) -> bool:
    """querydr says the payment was refunded (transaction type 02/03, refund sent or done)."""
    return (
        answer.response_code == "00"
        and answer.transaction_type in ("02", "03")
        and answer.transaction_status in ("05", "06")
        and (answer.amount is None or answer.amount >= amount)
    )


def payment_result_of(answer: QueryResult, txn_ref: str, tmn_code: str) -> PaymentResult | None:
    """A querydr answer about a payment as the IPN would have said it; None when not final."""
    if answer.response_code != "00" or answer.transaction_status in (None, "01"):
        return None
    return PaymentResult(
        tmn_code=answer.tmn_code or tmn_code,
        txn_ref=txn_ref,
        amount=answer.amount or 0,
        response_code="00" if answer.transaction_status == "00" else "99",
        transaction_status=answer.transaction_status or "02",
        transaction_no=answer.transaction_no or "0",
        bank_code=answer.bank_code,
        bank_tran_no=None,
        card_type=None,
        pay_date=answer.pay_date,
        order_info=answer.order_info or "",
    )


class Reconciler:
    """Settles refunds (a consumer group over the logs) and checks payments VNPAY went quiet on.

    Refunds: for each RefundRequested, first ask querydr whether the money went back already
    (a refund whose answer was lost), else call refund; then RefundCompleted or RefundFailed
    is appended once, decided by the order's stream. Transport failures are retried with
    tenacity inside one delivery, then the entry is left for a later delivery (an outage,
    never dead-lettered), so a refund is retried until VNPAY answers.
    """

    def __init__(
        self,
        payments: PaymentService,
        gateway: VnpayGateway,
        *,
        gateway_attempts: int = GATEWAY_ATTEMPTS,
        retry_initial_seconds: float = GATEWAY_RETRY_INITIAL_SECONDS,
        check_delay_seconds: float = 120.0,
        refunds_per_second: float | None = None,
    ) -> None:
        rate = refunds_per_second or payments.refunds_per_second
        self.refund_interval = 1.0 / rate
        self.next_refund_at = 0.0
        self.refunds = RefundService(payments.orders, payments.database)
        self.check_delay_ms = int(check_delay_seconds * 1000)
        self.gateway_attempts = gateway_attempts
        self.retry_initial_seconds = retry_initial_seconds
        self.payments = payments
        self.orders = payments.orders
        self.gateway = gateway
        self.ip_address = server_address()

    def now(self) -> datetime:
        return self.orders.now()

    async def __call__(self, batch: list[EventEnvelope], lease: Lease) -> None:
        for envelope in batch:
            if isinstance(envelope.data, RefundRequested):
                await self.settle_refund(envelope.data.order_id, envelope.data.refund_id)
            elif isinstance(envelope.data, EventCancelled):
                await self.release_cancelled_event_holds(envelope.data.event_id)
                await self.refund_cancelled_event(envelope.data.event_id)

    async def pace(self) -> None:
        """Wait for the next refund slot: at most `refunds_per_second` per process."""
        now = time.monotonic()
        wait = self.next_refund_at - now
        self.next_refund_at = max(now, self.next_refund_at) + self.refund_interval
        if wait > 0:
            await asyncio.sleep(wait)

    async def release_cancelled_event_holds(self, event_id: str) -> int:
        """Cancel every pending order of a cancelled event (`OrderCancelled` by the system,
        reason `event_cancelled`; held tickets free at once); how many were.

        Orders are listed from the read model in id order; each is decided by its own
        stream, so a redelivery finds them settled and changes nothing, and one paid in the
        meantime is left to the refunds.
        """
        released = 0
        after = ""
        while batch := await self.refunds.pending_orders(event_id, after=after):
            for order_id in batch:
                with contextlib.suppress(OrderNotFound):
                    if await self.orders.release_hold(
                        order_id, reason=HOLD_RELEASED_EVENT_CANCELLED
                    ):
                        released += 1
            after = batch[-1]
        OUTCOMES.labels("cancellation_holds_released").inc(released)
        logger.info(
            "cancelled event's holds released",
            extra={"event_id": event_id, "released": released},
        )
        return released

    async def refund_cancelled_event(self, event_id: str) -> int:
        """Put every paid order of a cancelled event up for a full refund; how many were.

        Orders are listed from the read model in id order, at the gateway's pace. Each is
        decided by its own stream, so a redelivery after a crash (or another process doing
        the same) skips the orders refunded already and never refunds one twice.
        """
        requested = 0
        after = ""
        while batch := await self.refunds.refundable_orders(event_id, after=after):
            for order_id in batch:
                await self.pace()
                if await self.refunds.refund_cancelled(order_id):
                    requested += 1
            after = batch[-1]
        OUTCOMES.labels("cancellation_refunds_requested").inc(requested)
        logger.info(
            "cancelled event's orders put up for refund",
            extra={"event_id": event_id, "requested": requested},
        )
        return requested

    async def settle_refund(self, order_id: str, refund_id: str) -> str:
        """Give the money of one refund back, once; the outcome for metrics and tests."""
        order = await self.orders.get(order_id)
        refund = next((r for r in order.refunds if r.id == refund_id), None)
        if refund is None or refund.status != "requested":
            return "settled"
        attempt = order.payment(refund.txn_ref)
        if attempt is None or attempt.details is None:
            return "settled"
        try:
            async for retry in AsyncRetrying(
                stop=stop_after_attempt(self.gateway_attempts),
                wait=wait_random_exponential(
                    multiplier=self.retry_initial_seconds, max=GATEWAY_RETRY_MAX_SECONDS
                ),
                retry=retry_if_exception_type(VnpayTransportError),
                reraise=True,
            ):
                with retry:
                    outcome = await self.refund_outcome(order, refund)
        except VnpayTransportError as error:
            OUTCOMES.labels("gateway_unreachable").inc()
            raise GatewayUnreachable(str(error)) from error
        await self.payments.record_refund(outcome)
        result = "refund_completed" if outcome.completed else "refund_failed"
        OUTCOMES.labels(result).inc()
        logger.info(
            "refund settled",
            extra={"order_id": order.id, "refund_id": refund.id, "outcome": result},
        )
        return result

    async def refund_outcome(self, order: Order, refund: Refund) -> RecordRefundResult:
        """One try: querydr first (a refund whose answer was lost), else the refund call."""
        attempt = order.payment(refund.txn_ref)
        assert attempt is not None
        assert attempt.details is not None
        # querydr tells that the payment was refunded, not how much: it recognises a lost
        # answer only for the first refund of a payment.
        earlier = any(
            r.txn_ref == refund.txn_ref and r.id != refund.id and r.status != "failed"
            for r in order.refunds[: order.refunds.index(refund)]
        )
        checked = (
            None if earlier else await self.gateway.query(self.query_of(order, refund.txn_ref))
        )
        if checked is not None and refund_was_made(checked, refund.amount):
            return RecordRefundResult(
                order_id=order.id,
                refund_id=refund.id,
                completed=True,
                response_code="00",
                message="refunded (confirmed by querydr)",
                transaction_no=checked.transaction_no,
                recorded_at=self.now(),
            )
        full = refund.amount == attempt.amount
        await self.pace()
        answer = await self.gateway.refund(
            RefundRequest(
                request_id=request_id(),
                txn_ref=refund.txn_ref,
                order_info=f"Hoan tien don hang {order.id}",
                transaction_date=attempt.started_at,
                created_at=self.now(),
                ip_address=self.ip_address,
                amount=refund.amount,
                refund_type="full" if full else "partial",
                created_by=REFUND_CREATED_BY,
                transaction_no=attempt.details.transaction_no,
            )
        )
        return RecordRefundResult(
            order_id=order.id,
            refund_id=refund.id,
            completed=answer.response_code == "00",
            response_code=answer.response_code,
            message=answer.message,
            transaction_no=answer.transaction_no,
            recorded_at=self.now(),
        )

    def query_of(self, order: Order, txn_ref: str) -> QueryRequest:
        attempt = order.payment(txn_ref)
        assert attempt is not None
        return QueryRequest(
            request_id=request_id(),
            txn_ref=txn_ref,
            order_info=f"Kiem tra don hang {order.id}",
            transaction_date=attempt.started_at,
            created_at=self.now(),
            ip_address=self.ip_address,
            transaction_no=None if attempt.details is None else attempt.details.transaction_no,
        )

    async def check_payment(self, txn_ref: str) -> str:
        """Ask VNPAY about an attempt whose result never came; record it as the IPN would."""
        order_id = order_id_of(txn_ref)
        order = None if order_id is None else await self.orders.repository.find(order_id)
        attempt = None if order is None else order.payment(txn_ref)
        if order is None or attempt is None or attempt.status is not PaymentStatus.STARTED:
            await self.forget_check(txn_ref)
            return "settled"
        try:
            answer = await self.gateway.query(self.query_of(order, txn_ref))
        except VnpayTransportError:
            OUTCOMES.labels("gateway_unreachable").inc()
            return "gateway_unreachable"
        credentials = self.payments.require_credentials()
        result = payment_result_of(answer, txn_ref, credentials.tmn_code)
        if result is None:
            # VNPAY has no final result: the buyer never paid; nothing to record.
            await self.forget_check(txn_ref)
            OUTCOMES.labels("payment_not_made").inc()
            return "payment_not_made"
        reply = await self.payments.record(result)
        OUTCOMES.labels("payment_recorded").inc()
        logger.info(
            "payment result recovered by querydr",
            extra={"txn_ref": txn_ref, "rsp_code": reply.code, "paid": result.paid},
        )
        return "payment_recorded"

    async def forget_check(self, txn_ref: str) -> None:
        order_id = order_id_of(txn_ref)
        if order_id is None:
            return
        partition = keys.partition_of(order_id, self.orders.partitions)
        await self.orders.redis.zrem(keys.schedule_key(partition, PAYMENT_CHECK_SCHEDULE), txn_ref)

    async def due_checks(self, partitions: Sequence[int]) -> list[str]:
        # An attempt is asked about once its page closed and the delay passed without an IPN.
        now_ms = int(self.now().timestamp() * 1000) - self.check_delay_ms
        due: list[str] = []
        for partition in partitions:
            members = await self.orders.redis.zrangebyscore(
                keys.schedule_key(partition, PAYMENT_CHECK_SCHEDULE),
                "-inf",
                now_ms,
                start=0,
                num=CHECK_BATCH,
            )
            due.extend(text(member) for member in members if isinstance(member, bytes | str))
        return due

    async def check_payments(self, ownership: PartitionOwnership, stop: asyncio.Event) -> None:
        """Poll the payment-check schedules of the partitions this process leases."""
        while not stop.is_set():
            try:
                for partition in list(ownership.surplus):
                    await ownership.release(partition)
                for txn_ref in await self.due_checks(sorted(ownership.held)):
                    await self.check_payment(txn_ref)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("payment check round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=CHECK_INTERVAL_SECONDS)
