"""Refunds retried until resolved: attempts, lost answers, admins' resolutions, cancellation."""

# Fixtures are imported to be used here by name: their parameters "redefine" them.
# ruff: noqa: F811

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from eventhunting.consumers.reconciler import Reconciler, refund_request_id
from eventhunting.domain.actors import Actor
from eventhunting.domain.catalog import CancelEvent
from eventhunting.domain.orders import Order, OrderStatus, RefundResolution, RequestedItem
from eventhunting.domain.payments import RefundNotFound
from eventhunting.domain.refunds import RefundNotFailed
from eventhunting.payments.vnpay_api import VnpayGateway
from eventhunting.services.catalog import CatalogService
from eventhunting.services.orders import OrderService
from eventhunting.services.payments import PaymentService
from eventhunting.services.refunds import RefundService
from eventhunting.services.tickets import TicketService
from eventhunting.store import keys
from eventhunting.store.append import EventStore
from eventhunting.tickets.qr_keys import QrKeyRing
from tests.integration.orders.conftest import ORGANIZER, ManualClock, NewEvent, TicketTypeSpec
from tests.integration.orders.test_payments_gateway import (  # noqa: F401 - fixtures
    ipn_receiver,
    payments,
    sandbox,
    sandbox_process,
)
from tests.integration.orders.test_refunds_gateway import (  # noqa: F401 - fixtures
    paid_at_the_sandbox,
    project,
    reconciler,
    refunds,
    settle_requested,
)
from tests.integration.tickets.conftest import signing_key, signing_ring, tickets  # noqa: F401
from tests.integration.vnpay.standin_harness import CREDENTIALS, Standin
from tests.support.leases import lease_of

PRICE = 120_000
ADMIN = Actor("admin-1", is_admin=True)
RETRY_SECONDS = 10.0
RETRY_CAP_SECONDS = 25.0
# The client gives up on a refund call after this; the sandbox answers later than that.
CLIENT_TIMEOUT_SECONDS = 1.0


@pytest.fixture
async def gateway(sandbox: Standin) -> AsyncIterator[VnpayGateway]:
    async with VnpayGateway(
        CREDENTIALS, sandbox.api_url, timeout_seconds=CLIENT_TIMEOUT_SECONDS
    ) as opened:
        yield opened


def worker(payments: PaymentService, gateway: VnpayGateway) -> Reconciler:
    """A fresh reconciler process: one gateway call per delivery, retries on a schedule."""
    return Reconciler(
        payments,
        gateway,
        gateway_attempts=1,
        retry_initial_seconds=0.05,
        refunds_per_second=200,
        refund_retry_initial_seconds=RETRY_SECONDS,
        refund_retry_max_seconds=RETRY_CAP_SECONDS,
    )


def ledger_by_refund(sandbox: Standin, order: Order) -> dict[str, list[int]]:
    """The sandbox's refunds of the order's payment, by the refund id in their request id."""
    by_refund: dict[str, list[int]] = {}
    for entry in sandbox.ledger()["refunds"]:
        if entry["txn_ref"] == order.payment_reference:
            by_refund.setdefault(entry["request_id"][:26], []).append(entry["amount"])
    return by_refund


def completed_by_refund(order: Order) -> dict[str, list[int]]:
    return {r.id: [r.amount] for r in order.refunds if r.status == "completed"}


def test_each_attempt_of_a_refund_has_its_own_request_id_of_at_most_32_characters() -> None:
    refund_id = "01JDZ8Q7R2V5T3M9K4XW6YB0CA"
    first, second = refund_request_id(refund_id, 1), refund_request_id(refund_id, 2)
    assert first == f"{refund_id}000001"
    assert first != second
    assert refund_request_id(refund_id, 1) == first
    long_id = refund_request_id("x" * 40, 7)
    assert len(long_id) == 32
    assert long_id.endswith("000007")
    assert long_id.isalnum()


async def test_a_refused_refund_is_called_again_on_a_capped_backoff_until_it_goes_through(
    orders: OrderService,
    payments: PaymentService,
    reconciler: Reconciler,
    refunds: RefundService,
    store: EventStore,
    new_event: NewEvent,
    sandbox: Standin,
    gateway: VnpayGateway,
    clock: ManualClock,
) -> None:
    event = await new_event(TicketTypeSpec("Standard", PRICE, 10))
    order = await paid_at_the_sandbox(orders, payments, reconciler, sandbox, clock, event, 1)
    refunding = worker(payments, gateway)
    partition = keys.partition_of(event.id, store.partitions)
    requested = await refunds.request(order.id, by=ORGANIZER, reason="changed plans")
    sandbox.switches(refund_failure_rate=1.0, refund_failure_mode="error")
    assert await settle_requested(store, refunding, event) == ["refund_failed"]
    waits = []
    for _ in range(3):
        failed = (await orders.get(order.id)).refunds[0]
        assert failed.status == "failed"
        assert failed.retry_at is not None
        waits.append((failed.retry_at - clock.now).total_seconds())
        assert await refunding.due_refund_retries([partition]) == []
        # The poller sleeps until the retry is due, at most its interval.
        assert await refunding.seconds_to_next_retry([partition], 60) == waits[-1]
        assert await refunding.seconds_to_next_retry([partition], 1) == 1
        clock.now = failed.retry_at
        due = await refunding.due_refund_retries([partition])
        assert due == [(order.id, requested.refund.id)]
        assert await refunding.retry_refund(*due[0]) == "refund_failed"
    assert waits == [RETRY_SECONDS, 2 * RETRY_SECONDS, RETRY_CAP_SECONDS]
    # The redelivered RefundRequested leaves a failed refund to its schedule.
    assert await settle_requested(store, refunding, event) == ["settled"]
    sandbox.switches(refund_failure_rate=0.0)
    clock.advance(RETRY_CAP_SECONDS)
    due = await refunding.due_refund_retries([partition])
    assert await refunding.retry_refund(*due[0]) == "refund_completed"
    assert await refunding.due_refund_retries([partition]) == []
    refunded = await orders.get(order.id)
    assert refunded.refunds[0].status == "completed"
    assert refunded.refunds[0].failures == 4
    [entry] = sandbox.ledger()["refunds"]
    assert entry["request_id"] == refund_request_id(requested.refund.id, 5)
    assert entry["amount"] == PRICE


async def test_a_lost_answer_to_a_partial_refund_is_recognised_after_a_restart_not_repeated(
    orders: OrderService,
    payments: PaymentService,
    reconciler: Reconciler,
    refunds: RefundService,
    tickets: TicketService,
    signing_ring: QrKeyRing,
    store: EventStore,
    new_event: NewEvent,
    sandbox: Standin,
    gateway: VnpayGateway,
    clock: ManualClock,
) -> None:
    event = await new_event(TicketTypeSpec("Standard", PRICE, 10))
    order = await paid_at_the_sandbox(orders, payments, reconciler, sandbox, clock, event, 3)
    issued = await tickets.issue(order.id, signing_ring)
    await refunds.request(
        order.id, by=ORGANIZER, reason="one seat", ticket_ids=[issued[0].ticket_id]
    )
    # VNPAY refunds, but its answer never arrives: the worker gives the delivery back.
    sandbox.switches(
        refund_failure_rate=1.0,
        refund_failure_mode="applied_then_timeout",
        refund_hang_seconds=CLIENT_TIMEOUT_SECONDS * 3,
    )
    with pytest.raises(ConnectionError):
        await settle_requested(store, worker(payments, gateway), event)
    assert [r.status for r in (await orders.get(order.id)).refunds] == ["requested"]
    sandbox.switches(refund_failure_rate=0.0)
    # A new process gets the delivery again: querydr says the payment was refunded.
    assert await settle_requested(store, worker(payments, gateway), event) == ["refund_completed"]
    settled = await orders.get(order.id)
    assert ledger_by_refund(sandbox, settled) == completed_by_refund(settled)
    assert sum(len(amounts) for amounts in ledger_by_refund(sandbox, settled).values()) == 1


async def test_a_lost_answer_to_a_second_partial_refund_is_never_sent_again(
    orders: OrderService,
    payments: PaymentService,
    reconciler: Reconciler,
    refunds: RefundService,
    tickets: TicketService,
    signing_ring: QrKeyRing,
    store: EventStore,
    new_event: NewEvent,
    sandbox: Standin,
    gateway: VnpayGateway,
    clock: ManualClock,
) -> None:
    event = await new_event(TicketTypeSpec("Standard", PRICE, 10))
    order = await paid_at_the_sandbox(orders, payments, reconciler, sandbox, clock, event, 3)
    issued = await tickets.issue(order.id, signing_ring)
    partition = keys.partition_of(event.id, store.partitions)
    await refunds.request(
        order.id, by=ORGANIZER, reason="first seat", ticket_ids=[issued[0].ticket_id]
    )
    assert await settle_requested(store, worker(payments, gateway), event) == ["refund_completed"]
    second = await refunds.request(
        order.id, by=ORGANIZER, reason="second seat", ticket_ids=[issued[1].ticket_id]
    )
    sandbox.switches(
        refund_failure_rate=1.0,
        refund_failure_mode="applied_then_timeout",
        refund_hang_seconds=CLIENT_TIMEOUT_SECONDS * 3,
    )
    with pytest.raises(ConnectionError):
        await settle_requested(store, worker(payments, gateway), event)
    sandbox.switches(refund_failure_rate=0.0)
    # After a restart the same attempt is sent with the same request id: VNPAY refuses it
    # (94) instead of refunding again; querydr cannot tell a second partial refund apart.
    outcomes = await settle_requested(store, worker(payments, gateway), event)
    assert outcomes == ["settled", "refund_outcome_unknown"]
    unknown = (await orders.get(order.id)).refunds[1]
    assert (unknown.status, unknown.outcome_unknown, unknown.retry_at) == ("failed", True, None)
    clock.advance(RETRY_CAP_SECONDS * 10)
    assert await worker(payments, gateway).due_refund_retries([partition]) == []
    assert ledger_by_refund(sandbox, order)[second.refund.id] == [PRICE]
    # An admin finds it in the merchant portal and marks it settled: ledger = our events.
    await project(store, payments, event)
    listed, total = await refunds.failed(ADMIN, page=1, page_size=20)
    assert total == 1
    assert listed[0]["_id"] == second.refund.id
    assert listed[0]["outcome_unknown"] is True
    resolved = await refunds.resolve(
        second.refund.id, by=ADMIN, resolution=RefundResolution.SETTLED, note="seen in portal"
    )
    assert resolved[1].status == "completed"
    assert resolved[1].settled_by == ADMIN.account_id
    settled = await orders.get(order.id)
    assert ledger_by_refund(sandbox, settled) == completed_by_refund(settled)
    # Completed as a gateway's success would be: with its credit note.
    assert [note.refund_id for note in settled.credit_notes][-1] == second.refund.id
    again = await refunds.resolve(
        second.refund.id, by=ADMIN, resolution=RefundResolution.SETTLED, note="seen in portal"
    )
    assert again[1] == resolved[1]
    assert (await orders.get(order.id)).version == settled.version
    await project(store, payments, event)
    assert await refunds.failed(ADMIN, page=1, page_size=20) == ([], 0)


async def test_an_attempt_whose_answer_was_lost_is_not_sent_again_on_a_later_day(
    orders: OrderService,
    payments: PaymentService,
    reconciler: Reconciler,
    refunds: RefundService,
    tickets: TicketService,
    signing_ring: QrKeyRing,
    store: EventStore,
    new_event: NewEvent,
    sandbox: Standin,
    gateway: VnpayGateway,
    clock: ManualClock,
) -> None:
    event = await new_event(TicketTypeSpec("Standard", PRICE, 10))
    order = await paid_at_the_sandbox(orders, payments, reconciler, sandbox, clock, event, 3)
    issued = await tickets.issue(order.id, signing_ring)
    await refunds.request(
        order.id, by=ORGANIZER, reason="first seat", ticket_ids=[issued[0].ticket_id]
    )
    assert await settle_requested(store, worker(payments, gateway), event) == ["refund_completed"]
    second = await refunds.request(
        order.id, by=ORGANIZER, reason="second seat", ticket_ids=[issued[1].ticket_id]
    )
    sandbox.switches(
        refund_failure_rate=1.0,
        refund_failure_mode="applied_then_timeout",
        refund_hang_seconds=CLIENT_TIMEOUT_SECONDS * 3,
    )
    with pytest.raises(ConnectionError):
        await settle_requested(store, worker(payments, gateway), event)
    sandbox.switches(refund_failure_rate=0.0)
    attempted = (await orders.get(order.id)).refunds[1]
    assert (attempted.attempt, attempted.sent_at) == (1, clock.now)
    # The next delivery comes the next day: VNPAY would take the same request id as new.
    clock.advance(24 * 3600)
    outcomes = await settle_requested(store, worker(payments, gateway), event)
    assert outcomes == ["settled", "refund_outcome_unknown"]
    assert ledger_by_refund(sandbox, order)[second.refund.id] == [PRICE]


async def test_a_lost_answer_to_the_refund_of_the_rest_is_confirmed_by_querydr(
    orders: OrderService,
    payments: PaymentService,
    reconciler: Reconciler,
    refunds: RefundService,
    tickets: TicketService,
    signing_ring: QrKeyRing,
    store: EventStore,
    new_event: NewEvent,
    sandbox: Standin,
    gateway: VnpayGateway,
    clock: ManualClock,
) -> None:
    event = await new_event(TicketTypeSpec("Standard", PRICE, 10))
    order = await paid_at_the_sandbox(orders, payments, reconciler, sandbox, clock, event, 2)
    issued = await tickets.issue(order.id, signing_ring)
    await refunds.request(
        order.id, by=ORGANIZER, reason="first seat", ticket_ids=[issued[0].ticket_id]
    )
    assert await settle_requested(store, worker(payments, gateway), event) == ["refund_completed"]
    await refunds.request(order.id, by=ORGANIZER, reason="the rest")
    sandbox.switches(
        refund_failure_rate=1.0,
        refund_failure_mode="applied_then_timeout",
        refund_hang_seconds=CLIENT_TIMEOUT_SECONDS * 3,
    )
    with pytest.raises(ConnectionError):
        await settle_requested(store, worker(payments, gateway), event)
    sandbox.switches(refund_failure_rate=0.0)
    # querydr says refunded in full, which only this refund can have completed.
    outcomes = await settle_requested(store, worker(payments, gateway), event)
    assert outcomes == ["settled", "refund_completed"]
    settled = await orders.get(order.id)
    assert settled.status is OrderStatus.REFUNDED
    assert ledger_by_refund(sandbox, settled) == completed_by_refund(settled)


async def test_an_admin_retry_calls_the_gateway_again_now_and_repeats_change_nothing(
    orders: OrderService,
    payments: PaymentService,
    reconciler: Reconciler,
    refunds: RefundService,
    store: EventStore,
    new_event: NewEvent,
    sandbox: Standin,
    gateway: VnpayGateway,
    clock: ManualClock,
) -> None:
    event = await new_event(TicketTypeSpec("Standard", PRICE, 10))
    order = await paid_at_the_sandbox(orders, payments, reconciler, sandbox, clock, event, 1)
    refunding = worker(payments, gateway)
    partition = keys.partition_of(event.id, store.partitions)
    requested = await refunds.request(order.id, by=ORGANIZER, reason="changed plans")
    with pytest.raises(RefundNotFound):
        await refunds.resolve(
            requested.refund.id, by=ADMIN, resolution=RefundResolution.RETRY, note=""
        )
    await project(store, payments, event)
    with pytest.raises(RefundNotFailed):
        await refunds.resolve(
            requested.refund.id, by=ADMIN, resolution=RefundResolution.SETTLED, note="x"
        )
    sandbox.switches(refund_failure_rate=1.0, refund_failure_mode="error")
    assert await settle_requested(store, refunding, event) == ["refund_failed"]
    sandbox.switches(refund_failure_rate=0.0)
    with pytest.raises(RefundNotFound):
        await refunds.resolve(
            requested.refund.id,
            by=Actor("organizer-1"),
            resolution=RefundResolution.RETRY,
            note="",
        )
    version = (await orders.get(order.id)).version
    for _ in range(2):
        _, retried = await refunds.resolve(
            requested.refund.id, by=ADMIN, resolution=RefundResolution.RETRY, note="bank is back"
        )
        assert retried.status == "requested"
    assert (await orders.get(order.id)).version == version + 1
    # Due now, not after the failure's backoff.
    assert await refunding.due_refund_retries([partition]) == [(order.id, requested.refund.id)]
    assert await refunding.retry_refund(order.id, requested.refund.id) == "refund_completed"
    [entry] = sandbox.ledger()["refunds"]
    assert entry["request_id"] == refund_request_id(requested.refund.id, 2)
    with pytest.raises(RefundNotFailed):
        await refunds.resolve(
            requested.refund.id, by=ADMIN, resolution=RefundResolution.RETRY, note=""
        )


async def test_cancelling_refunds_an_order_paid_just_before_and_not_projected_yet(
    orders: OrderService,
    payments: PaymentService,
    reconciler: Reconciler,
    catalog: CatalogService,
    store: EventStore,
    new_event: NewEvent,
    sandbox: Standin,
    clock: ManualClock,
) -> None:
    event = await new_event(TicketTypeSpec("Standard", PRICE, 20))
    paid = await paid_at_the_sandbox(orders, payments, reconciler, sandbox, clock, event, 2)
    held = await orders.place(
        buyer_id="buyer-2",
        event_id=event.id,
        items=[RequestedItem(ticket_type_id=event.ticket_types[0].id, quantity=1)],
    )
    await catalog.cancel_event(CancelEvent(event_id=event.id, by=ORGANIZER, reason="storm"))
    # Nothing was projected: the read model knows neither order.
    assert await payments.database["orders"].count_documents({"event_id": event.id}) == 0
    partition = keys.partition_of(event.id, store.partitions)
    log = await store.read_log(partition, "0", count=10_000)
    await reconciler(log, lease_of(log))
    assert (await orders.get(held.order.id)).status is OrderStatus.CANCELLED
    refunded = await orders.get(paid.id)
    assert refunded.status is OrderStatus.REFUNDED
    assert await settle_requested(store, reconciler, event) == ["refund_completed"]
    [entry] = sandbox.ledger()["refunds"]
    assert entry["amount"] == 2 * PRICE
