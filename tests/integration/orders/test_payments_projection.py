"""An order becomes paid in the read model together with its invoice and checkpoint, or not."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import OperationFailure

from eventhunting.projections.base import CHECKPOINTS_COLLECTION, Projector
from eventhunting.projections.orders import (
    INVOICES_COLLECTION,
    ORDERS_COLLECTION,
    OrdersProjection,
)
from eventhunting.services.orders import OrderService
from eventhunting.services.payments import PaymentService
from eventhunting.store import keys
from tests.integration.orders.conftest import NewEvent
from tests.integration.orders.test_payments_ipn import ipn_query, pending_order
from tests.support.leases import lease_of

PROJECTOR_APP = "payments-projector-under-test"


@pytest.fixture
async def projector_database(mongodb_url: str, mongo_database_name: str) -> Any:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        mongodb_url, tz_aware=True, appname=PROJECTOR_APP
    )
    try:
        yield client[mongo_database_name]
    finally:
        await client.close()


async def fail_updates(admin: Any, *, mode: dict[str, int], code: int) -> None:
    await admin.command(
        "configureFailPoint",
        "failCommand",
        mode=mode,
        data={"failCommands": ["update"], "errorCode": code, "appName": PROJECTOR_APP},
    )


async def paid_order_entries(
    orders: OrderService, payments: PaymentService, new_event: NewEvent, projector: Projector
) -> tuple[Any, int, list[Any], list[Any]]:
    """A paid order whose placement is projected and whose payment's entries are not yet."""
    order = await pending_order(orders, new_event)
    link = await payments.start(order.id, buyer_id="buyer-1", client_ip="127.0.0.1")
    partition = keys.partition_of(order.id, orders.partitions)
    placed = await orders.store.read_log(partition, count=1000)
    await projector(placed, lease_of(placed))
    assert (await payments.handle_ipn(ipn_query(link.txn_ref, order.total_amount))).code == "00"
    paying = await orders.store.read_log(partition, after=placed[-1].position or "0", count=1000)
    assert [e.type for e in paying][-3:] == ["PaymentSucceeded", "OrderPaid", "InvoiceIssued"]
    return order, partition, placed, paying


async def test_an_error_between_the_paid_order_and_its_invoice_leaves_neither(
    orders: OrderService,
    payments: PaymentService,
    new_event: NewEvent,
    projector_database: Any,
    mongo_client: AsyncMongoClient[dict[str, Any]],
) -> None:
    projector = Projector(projector_database, [OrdersProjection()])
    order, partition, placed, paying = await paid_order_entries(
        orders, payments, new_event, projector
    )
    admin: Any = mongo_client.admin
    # The order's update goes through; the invoice's (the next update) fails.
    await fail_updates(admin, mode={"skip": 1}, code=2)
    try:
        with pytest.raises(OperationFailure):
            await projector(paying, lease_of(paying))
    finally:
        await admin.command("configureFailPoint", "failCommand", mode="off")
    orders_model = projector_database[ORDERS_COLLECTION]
    document = await orders_model.find_one({"_id": order.id})
    assert document is not None
    assert document["status"] == "pending"
    assert "invoice_number" not in document
    assert await projector_database[INVOICES_COLLECTION].count_documents({}) == 0
    checkpoint = await projector_database[CHECKPOINTS_COLLECTION].find_one(
        {"_id": f"orders:{partition}"}
    )
    assert checkpoint is not None
    assert checkpoint["position"] == placed[-1].position

    await projector(paying, lease_of(paying))
    await both_paid_and_invoiced(projector_database, order.id)


async def test_a_write_conflict_in_the_payment_batch_is_retried_to_both(
    orders: OrderService,
    payments: PaymentService,
    new_event: NewEvent,
    projector_database: Any,
    mongo_client: AsyncMongoClient[dict[str, Any]],
) -> None:
    projector = Projector(projector_database, [OrdersProjection()])
    order, _, _, paying = await paid_order_entries(orders, payments, new_event, projector)
    admin: Any = mongo_client.admin
    await fail_updates(admin, mode={"times": 2}, code=112)
    try:
        await projector(paying, lease_of(paying))
    finally:
        turned_off = await admin.command("configureFailPoint", "failCommand", mode="off")
    assert turned_off["count"] == 2, "both write conflicts happened and were retried"
    await both_paid_and_invoiced(projector_database, order.id)


async def both_paid_and_invoiced(database: Any, order_id: str) -> None:
    document = await database[ORDERS_COLLECTION].find_one({"_id": order_id})
    assert document is not None
    assert document["status"] == "paid"
    invoice = await database[INVOICES_COLLECTION].find_one({"order_id": order_id})
    assert invoice is not None
    assert invoice["number"] == document["invoice_number"]
