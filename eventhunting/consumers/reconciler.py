"""The reconciler: refunds through VNPAY, settles a cancelled event's orders, asks querydr."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime, timedelta

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
    decide_refund_attempt,
    order_id_of,
)
from eventhunting.domain.refunds import NotRefundable
from eventhunting.payments.vnpay import PaymentResult, format_vnpay_time
from eventhunting.payments.vnpay_api import (
    QueryRequest,
    QueryResult,
    RefundRequest,
    VnpayGateway,
    VnpayTransportError,
)
from eventhunting.services.orders import (
    PAYMENT_CHECK_SCHEDULE,
    REFUND_RETRY_SCHEDULE,
    refund_retry_member,
)
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
# The shortest wait between two polling rounds, also when a refund retry is due already
# (one whose call failed stays due: no busy loop).
RETRY_WAKE_FLOOR_SECONDS = 0.5
REFUND_CREATED_BY = "eventhunting"
# VNPAY's answer to a vnp_RequestId it has seen that day: the call reached it before.
DUPLICATE_REQUEST = "94"
# Failed refunds are called again after a capped exponential backoff (the defaults of the
# EVENTHUNTING_VNPAY_REFUND_RETRY_* settings).
REFUND_RETRY_INITIAL_SECONDS = 60.0
REFUND_RETRY_MAX_SECONDS = 3_600.0
# The longest vnp_RequestId VNPAY takes, and the digits of the attempt in ours.
REQUEST_ID_LENGTH = 32
ATTEMPT_DIGITS = 6

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
    """A fresh vnp_RequestId for a querydr: VNPAY refuses (94) one it has seen that day."""
    return secrets.token_hex(16)


def refund_request_id(refund_id: str, attempt: int) -> str:
    """The vnp_RequestId of one attempt of a refund: the refund id and the attempt number.

    A call whose answer was lost is sent again with the same id, which VNPAY refuses (94)
    instead of refunding twice; a new attempt (after a known failure) gets a new id. Ids are
    unique per refund and attempt, so also per day. A refund id longer than the room left
    (not one of ours: they are 26-character ULIDs) is replaced by a digest of it.
    """
    room = REQUEST_ID_LENGTH - ATTEMPT_DIGITS
    stem = refund_id
    if len(stem) > room or not stem.isalnum():
        stem = hashlib.blake2b(refund_id.encode(), digest_size=13).hexdigest()
    return f"{stem}{attempt:0{ATTEMPT_DIGITS}d}"


def vnpay_day(moment: datetime) -> str:
    """The GMT+7 day VNPAY keeps a request id unique within."""
    return format_vnpay_time(moment)[:8]


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
        refund_retry_initial_seconds: float = REFUND_RETRY_INITIAL_SECONDS,
        refund_retry_max_seconds: float = REFUND_RETRY_MAX_SECONDS,
    ) -> None:
        rate = refunds_per_second or payments.refunds_per_second
        self.refund_interval = 1.0 / rate
        self.next_refund_at = 0.0
        self.refunds = RefundService(payments.orders, payments.database, payments)
        self.check_delay_ms = int(check_delay_seconds * 1000)
        self.refund_retry_initial_seconds = refund_retry_initial_seconds
        self.refund_retry_max_seconds = refund_retry_max_seconds
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

    async def orders_of_cancelled_event(
        self, event_id: str, listed: Callable[..., Awaitable[list[str]]]
    ) -> AsyncIterator[str]:
        """Every order of the event: from the index its placements wrote (exact), then those
        of the read model's list `listed` not in it (placed before the index existed)."""
        seen: set[str] = set()
        offset = 0
        while batch := await self.refunds.orders_of_event(event_id, offset=offset):
            seen.update(batch)
            for order_id in batch:
                yield order_id
            offset += len(batch)
        after = ""
        while batch := await listed(event_id, after=after):
            for order_id in batch:
                if order_id not in seen:
                    yield order_id
            after = batch[-1]

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

        Orders come from the event's order index (`orders_of_cancelled_event`); each is
        decided by its own stream, so a redelivery finds them settled and changes nothing,
        and one paid in the meantime is left to the refunds.
        """
        released = 0
        async for order_id in self.orders_of_cancelled_event(event_id, self.refunds.pending_orders):
            with contextlib.suppress(OrderNotFound):
                if await self.orders.release_hold(order_id, reason=HOLD_RELEASED_EVENT_CANCELLED):
                    released += 1
        OUTCOMES.labels("cancellation_holds_released").inc(released)
        logger.info(
            "cancelled event's holds released",
            extra={"event_id": event_id, "released": released},
        )
        return released

    async def refund_cancelled_event(self, event_id: str) -> int:
        """Put every paid order of a cancelled event up for a full refund; how many were.

        Orders come from the event's order index, so one paid just before the cancellation
        and not projected yet is refunded too; they are put up at the gateway's pace. Each
        is decided by its own stream, so a redelivery after a crash (or another process
        doing the same) skips the orders refunded already and never refunds one twice.
        """
        requested = 0
        async for order_id in self.orders_of_cancelled_event(
            event_id, self.refunds.refundable_orders
        ):
            with contextlib.suppress(OrderNotFound, NotRefundable):
                if await self.refunds.refund_cancelled(order_id):
                    requested += 1
                    await self.pace()
        OUTCOMES.labels("cancellation_refunds_requested").inc(requested)
        logger.info(
            "cancelled event's orders put up for refund",
            extra={"event_id": event_id, "requested": requested},
        )
        return requested

    async def settle_refund(self, order_id: str, refund_id: str, *, retrying: bool = False) -> str:
        """Give the money of one refund back, once; the outcome for metrics and tests.

        A requested refund is called for; a failed one only when `retrying` (its retry came
        due) and its outcome is known: one VNPAY saw but could not confirm waits for an admin.
        """
        order = await self.orders.get(order_id)
        refund = next((r for r in order.refunds if r.id == refund_id), None)
        due = refund is not None and (
            refund.status == "requested"
            or (retrying and refund.status == "failed" and not refund.outcome_unknown)
        )
        if refund is None or not due:
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
        if outcome.completed:
            result = "refund_completed"
        elif outcome.outcome_unknown:
            result = "refund_outcome_unknown"
        else:
            result = "refund_failed"
        OUTCOMES.labels(result).inc()
        logger.info(
            "refund settled",
            extra={
                "order_id": order.id,
                "refund_id": refund.id,
                "attempt": refund.attempt,
                "outcome": result,
            },
        )
        return result

    async def record_attempt(self, order: Order, refund: Refund) -> Refund:
        """Record that the refund's current attempt is about to be sent (RefundAttempted),
        once; the refund as it stands after."""
        now = self.now()
        saved = await self.orders.repository.decide_and_append(
            order.id,
            lambda state: list(
                decide_refund_attempt(
                    state,
                    order_id=order.id,
                    refund_id=refund.id,
                    request_id=refund_request_id(refund.id, refund.attempt),
                    now=now,
                )
            ),
            actor="reconciler",
        )
        current = (await self.orders.get(order.id)) if saved is None else saved.state
        return next(r for r in current.refunds if r.id == refund.id)

    def retry_at(self, refund: Refund) -> datetime:
        """When a refund failed now is called again: exponential backoff, capped."""
        wait = min(
            self.refund_retry_initial_seconds * 2 ** min(refund.failures, 32),
            self.refund_retry_max_seconds,
        )
        return self.now() + timedelta(seconds=wait)

    def result_of(
        self,
        order: Order,
        refund: Refund,
        *,
        completed: bool,
        response_code: str,
        message: str,
        transaction_no: str | None = None,
        outcome_unknown: bool = False,
    ) -> RecordRefundResult:
        return RecordRefundResult(
            order_id=order.id,
            refund_id=refund.id,
            completed=completed,
            response_code=response_code,
            message=message,
            transaction_no=transaction_no,
            attempt=refund.attempt,
            outcome_unknown=outcome_unknown,
            retry_at=None if completed or outcome_unknown else self.retry_at(refund),
        )

    async def refund_outcome(self, order: Order, refund: Refund) -> RecordRefundResult:
        """One try of the refund's current attempt.

        The first refund of a payment asks querydr first (a refund whose answer was lost,
        even on an earlier day). Then the refund call, with the attempt's own vnp_RequestId:
        when VNPAY answers that it saw that id (94), the call was made before and its answer
        lost, and querydr with what our events know tells whether it gave the money back.
        """
        attempt = order.payment(refund.txn_ref)
        assert attempt is not None
        assert attempt.details is not None
        others = [r for r in order.refunds if r.txn_ref == refund.txn_ref and r.id != refund.id]
        through_gateway = sum(
            r.amount for r in others if r.status == "completed" and r.settled_by is None
        )
        # Nothing else of this payment is in flight or of unknown outcome at the gateway.
        alone = not any(r.status == "requested" or r.outcome_unknown for r in others)
        first = through_gateway == 0 and alone
        if first:
            checked = await self.gateway.query(self.query_of(order, refund.txn_ref))
            if refund_was_made(checked, refund.amount):
                return self.result_of(
                    order,
                    refund,
                    completed=True,
                    response_code="00",
                    message="refunded (confirmed by querydr)",
                    transaction_no=checked.transaction_no,
                )
        if refund.sent_at is None:
            refund = await self.record_attempt(order, refund)
        sent_at = refund.sent_at
        if sent_at is not None and vnpay_day(sent_at) != vnpay_day(self.now()):
            # Sent on an earlier day (GMT+7): VNPAY no longer knows the request id and would
            # take the call as a new refund. Only querydr and our events can tell.
            return await self.recognise_sent(
                order, refund, paid=attempt.amount, through_gateway=through_gateway, first=first
            )
        full = refund.amount == attempt.amount
        await self.pace()
        answer = await self.gateway.refund(
            RefundRequest(
                request_id=refund_request_id(refund.id, refund.attempt),
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
        if answer.response_code == DUPLICATE_REQUEST:
            return await self.recognise_sent(
                order, refund, paid=attempt.amount, through_gateway=through_gateway, first=first
            )
        return self.result_of(
            order,
            refund,
            completed=answer.response_code == "00",
            response_code=answer.response_code,
            message=answer.message,
            transaction_no=answer.transaction_no,
        )

    async def recognise_sent(
        self, order: Order, refund: Refund, *, paid: int, through_gateway: int, first: bool
    ) -> RecordRefundResult:
        """The outcome of an attempt VNPAY saw before (its answer was lost), from querydr.

        querydr tells whether the payment was refunded in full (02), in part (03) or not at
        all, not how much: nothing refunded means the attempt refunded nothing; a full refund
        that our completed refunds plus this one add up to, or a partial one while this is
        the payment's only refund, means it did. Otherwise (a second partial refund) the
        outcome cannot be told: it is never sent again by the worker, and waits for an admin.
        """
        checked = await self.gateway.query(self.query_of(order, refund.txn_ref))
        if checked.response_code != "00":
            raise VnpayTransportError(f"querydr answered {checked.response_code}")
        refunded = checked.transaction_type in ("02", "03") and checked.transaction_status in (
            "05",
            "06",
        )
        made: bool | None
        if not refunded:
            made = False
        elif checked.transaction_type == "02":
            made = True if through_gateway + refund.amount == paid else None
        else:
            made = True if first and refund.amount < paid else None
        if made:
            return self.result_of(
                order,
                refund,
                completed=True,
                response_code="00",
                message="refunded (a repeated request, confirmed by querydr)",
                transaction_no=checked.transaction_no,
            )
        if made is None:
            OUTCOMES.labels("refund_outcome_unknown").inc()
            return self.result_of(
                order,
                refund,
                completed=False,
                response_code=DUPLICATE_REQUEST,
                message=(
                    "VNPAY saw this refund request before and querydr cannot tell whether it"
                    " refunded; check the merchant portal, then retry or mark it settled"
                ),
                outcome_unknown=True,
            )
        return self.result_of(
            order,
            refund,
            completed=False,
            response_code=DUPLICATE_REQUEST,
            message="VNPAY saw this refund request before and refunded nothing",
        )

    async def due_refund_retries(self, partitions: Sequence[int]) -> list[tuple[str, str]]:
        """Failed refunds whose retry is due (and admin retries), as (order id, refund id)."""
        now_ms = int(self.now().timestamp() * 1000)
        due: list[tuple[str, str]] = []
        for partition in partitions:
            members = await self.orders.redis.zrangebyscore(
                keys.schedule_key(partition, REFUND_RETRY_SCHEDULE),
                "-inf",
                now_ms,
                start=0,
                num=CHECK_BATCH,
            )
            for member in members:
                if not isinstance(member, bytes | str):
                    continue
                order_id, _, refund_id = text(member).partition("/")
                due.append((order_id, refund_id))
        return due

    async def retry_refund(self, order_id: str, refund_id: str) -> str:
        """Call the gateway again for a failed refund whose retry came due."""
        try:
            outcome = await self.settle_refund(order_id, refund_id, retrying=True)
        except OrderNotFound:
            outcome = "settled"
        if outcome == "settled":
            # Nothing to call for (completed, or waiting for an admin): its appends keep
            # the schedule, this entry is stale.
            partition = keys.partition_of(order_id, self.orders.partitions)
            await self.orders.redis.zrem(
                keys.schedule_key(partition, REFUND_RETRY_SCHEDULE),
                refund_retry_member(order_id, refund_id),
            )
        return outcome

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
        """Poll the payment-check and refund-retry schedules of the partitions this process
        leases."""
        while not stop.is_set():
            try:
                for partition in list(ownership.surplus):
                    await ownership.release(partition)
                for txn_ref in await self.due_checks(sorted(ownership.held)):
                    await self.check_payment(txn_ref)
                for order_id, refund_id in await self.due_refund_retries(sorted(ownership.held)):
                    try:
                        await self.retry_refund(order_id, refund_id)
                    except GatewayUnreachable:
                        # Still due: the next round calls again.
                        logger.warning("refund retry found the gateway unreachable")
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("payment check round failed")
            wait = CHECK_INTERVAL_SECONDS
            with contextlib.suppress(Exception):
                wait = await self.seconds_to_next_retry(sorted(ownership.held), wait)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=wait)

    async def seconds_to_next_retry(self, partitions: Sequence[int], at_most: float) -> float:
        """How long until the next refund retry of `partitions` is due, at most `at_most`: a
        retry is called at its `retry_at`, not up to a polling interval later."""
        now_ms = int(self.now().timestamp() * 1000)
        soonest = now_ms + int(at_most * 1000)
        for partition in partitions:
            first = await self.orders.redis.zrange(
                keys.schedule_key(partition, REFUND_RETRY_SCHEDULE), 0, 0, withscores=True
            )
            for entry in first:
                if isinstance(entry, tuple | list) and len(entry) == 2:
                    soonest = min(soonest, int(float(entry[1])))
        return max((soonest - now_ms) / 1000, RETRY_WAKE_FLOOR_SECONDS)
