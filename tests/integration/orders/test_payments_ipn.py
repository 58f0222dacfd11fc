"""Payments through VNPAY: the pay URL, every IPN answer, races, late and double payments."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from pymongo import AsyncMongoClient

from eventhunting.domain.orders import (
    InvoiceIssued,
    OrderNotFound,
    OrderNotPending,
    OrderPaid,
    OrderStatus,
    PaymentFailed,
    PaymentStatus,
    PaymentSucceeded,
    RefundRequested,
    RequestedItem,
)
from eventhunting.domain.payments import (
    REFUND_DUPLICATE_PAYMENT,
    REFUND_STOCK_GONE,
    invoice_number,
    invoice_series,
    invoice_symbol,
)
from eventhunting.payments.vnpay import format_vnpay_time
from eventhunting.payments.vnpay_signing import query_signature_is_valid, sign_query
from eventhunting.services.invoice_numbers import invoice_series_counter
from eventhunting.services.orders import ORDERS, OrderService
from eventhunting.services.payments import PaymentService
from eventhunting.store import keys
from eventhunting.store.append import EventStore
from eventhunting.store.archive import EVENTS_COLLECTION
from tests.integration.orders.conftest import (
    CREDENTIALS,
    PAY_URL,
    WRITE_THROUGH_APP,
    ManualClock,
    NewEvent,
    TicketTypeSpec,
)

Database = Any


def ipn_query(
    txn_ref: str,
    amount: int,
    *,
    response_code: str = "00",
    transaction_status: str | None = None,
    secret: str = CREDENTIALS.hash_secret,
    tmn_code: str = CREDENTIALS.tmn_code,
    transaction_no: str = "14226112",
) -> list[tuple[str, str]]:
    """What VNPAY sends to the IPN URL, signed (decoded, as a web framework hands it over)."""
    parameters = {
        "vnp_TmnCode": tmn_code,
        "vnp_Amount": str(amount * 100),
        "vnp_BankCode": "NCB",
        "vnp_BankTranNo": "VNP14226112",
        "vnp_CardType": "ATM",
        "vnp_PayDate": "20261130153000",
        "vnp_OrderInfo": f"Thanh toan don hang {txn_ref[:-2]}",
        "vnp_TransactionNo": transaction_no,
        "vnp_ResponseCode": response_code,
        "vnp_TransactionStatus": transaction_status or response_code,
        "vnp_TxnRef": txn_ref,
    }
    parameters["vnp_SecureHash"] = sign_query(parameters, secret)
    return list(parameters.items())


async def pending_order(
    orders: OrderService, new_event: NewEvent, *, quantity: int = 2, capacity: int = 10
) -> Any:
    event = await new_event(TicketTypeSpec("Standard", 150_000, capacity))
    placement = await orders.place(
        buyer_id="buyer-1",
        event_id=event.id,
        items=[RequestedItem(ticket_type_id=event.ticket_types[0].id, quantity=quantity)],
    )
    return placement.order


async def counters_of(orders: OrderService, order: Any) -> dict[str, int]:
    name = f"inventory:{order.items[0].ticket_type_id}"
    partition = keys.partition_of(order.event_id, orders.partitions)
    return (await orders.store.read_counters(partition, [name]))[name]


async def test_a_pay_url_is_signed_in_gmt7_for_amount_times_100_and_ends_with_the_hold(
    orders: OrderService, payments: PaymentService, new_event: NewEvent, clock: ManualClock
) -> None:
    order = await pending_order(orders, new_event)
    clock.advance(60)
    link = await payments.start(order.id, buyer_id="buyer-1", client_ip="203.0.113.7")
    query = dict(parse_qsl(urlsplit(link.payment_url).query))
    assert link.payment_url.startswith(PAY_URL + "?")
    assert query_signature_is_valid(query, CREDENTIALS.hash_secret)
    assert "vnp_SecureHashType" not in query
    assert query["vnp_Version"] == "2.1.0"
    assert query["vnp_Amount"] == str(order.total_amount * 100)
    assert query["vnp_TxnRef"] == link.txn_ref == f"{order.id}01"
    assert query["vnp_IpAddr"] == "203.0.113.7"
    assert query["vnp_OrderInfo"].isascii()
    assert query["vnp_CreateDate"] == format_vnpay_time(clock.now)
    # The page closes at the end of the payment window or of the hold, whichever is first.
    assert link.expires_at <= order.expires_at
    assert query["vnp_ExpireDate"] == format_vnpay_time(link.expires_at)


async def test_each_attempt_gets_its_own_txn_ref(
    orders: OrderService, payments: PaymentService, new_event: NewEvent
) -> None:
    order = await pending_order(orders, new_event)
    first = await payments.start(order.id, buyer_id="buyer-1", client_ip="127.0.0.1")
    second = await payments.start(order.id, buyer_id="buyer-1", client_ip="127.0.0.1")
    assert (first.txn_ref, second.txn_ref) == (f"{order.id}01", f"{order.id}02")


async def test_only_the_buyer_of_a_pending_order_can_start_paying(
    orders: OrderService, payments: PaymentService, new_event: NewEvent
) -> None:
    order = await pending_order(orders, new_event)
    with pytest.raises(OrderNotFound):
        await payments.start(order.id, buyer_id="someone-else", client_ip="127.0.0.1")
    await orders.cancel(order.id, by="buyer-1")
    with pytest.raises(OrderNotPending):
        await payments.start(order.id, buyer_id="buyer-1", client_ip="127.0.0.1")


async def test_a_successful_ipn_pays_the_order_with_an_invoice_and_archives_it_before_00(
    orders: OrderService,
    payments: PaymentService,
    new_event: NewEvent,
    clock: ManualClock,
    mongo_client: AsyncMongoClient[dict[str, Any]],
    mongo_database_name: str,
) -> None:
    order = await pending_order(orders, new_event)
    link = await payments.start(order.id, buyer_id="buyer-1", client_ip="127.0.0.1")
    before = await counters_of(orders, order)
    answer = await payments.handle_ipn(ipn_query(link.txn_ref, order.total_amount))
    assert (answer.code, answer.message) == ("00", "Confirm Success")
    paid = await orders.get(order.id)
    assert paid.status is OrderStatus.PAID
    assert paid.invoice is not None
    series = invoice_series(order.event_id, invoice_symbol(clock.now))
    assert paid.invoice_number == invoice_number(series, 1)
    assert paid.invoice_number.startswith(f"1K{clock.now.year % 100:02d}TEH-")
    invoice = paid.invoice
    assert invoice.amount_before_vat + invoice.vat_amount == invoice.total_amount
    for line in invoice.lines:
        assert line.vat_rate == 10
        assert line.vat_amount == round(line.amount * 10 / 110)
        assert line.amount_before_vat + line.vat_amount == line.amount
    assert paid.invoice.payment.transaction_no == "14226112"
    after = await counters_of(orders, order)
    assert (after["held"], after["sold"]) == (before["held"] - 2, before["sold"] + 2)
    # The append is in the archive already: a total loss of Redis keeps the payment.
    history = (await orders.repository.load(order.id)).history
    archived = mongo_client[mongo_database_name][EVENTS_COLLECTION]
    types = {d["type"] async for d in archived.find({"stream": ORDERS.stream(order.id)})}
    assert {"PaymentSucceeded", "OrderPaid", "InvoiceIssued"} <= types
    assert [e.type for e in history[-3:]] == ["PaymentSucceeded", "OrderPaid", "InvoiceIssued"]


async def test_ipn_checks_come_in_vnpays_order(
    orders: OrderService, payments: PaymentService, new_event: NewEvent
) -> None:
    order = await pending_order(orders, new_event)
    link = await payments.start(order.id, buyer_id="buyer-1", client_ip="127.0.0.1")
    tampered = [
        (name, "999" if name == "vnp_Amount" else value)
        for name, value in ipn_query(link.txn_ref, order.total_amount)
    ]
    forged = ipn_query(link.txn_ref, order.total_amount, secret="not-the-merchant-secret")
    other_merchant = ipn_query(link.txn_ref, order.total_amount, tmn_code="OTHERTMN")
    unknown = ipn_query(f"{order.id}07", order.total_amount)
    foreign = ipn_query("not-one-of-ours", order.total_amount)
    wrong_amount = ipn_query(link.txn_ref, order.total_amount + 1)
    codes = [
        (await payments.handle_ipn(query)).code
        for query in (tampered, forged, other_merchant, unknown, foreign, wrong_amount)
    ]
    assert codes == ["97", "97", "97", "01", "01", "04"]
    assert (await orders.get(order.id)).status is OrderStatus.PENDING
    assert (await payments.handle_ipn(ipn_query(link.txn_ref, order.total_amount))).code == "00"
    # A repeat, even with a wrong amount, keeps VNPAY's order: the amount is checked first.
    assert (await payments.handle_ipn(ipn_query(link.txn_ref, order.total_amount))).code == "02"
    assert (await payments.handle_ipn(wrong_amount)).code == "04"


async def test_a_failed_payment_is_recorded_and_the_buyer_may_try_again(
    orders: OrderService, payments: PaymentService, new_event: NewEvent
) -> None:
    order = await pending_order(orders, new_event)
    first = await payments.start(order.id, buyer_id="buyer-1", client_ip="127.0.0.1")
    failed = ipn_query(
        first.txn_ref, order.total_amount, response_code="51", transaction_status="02"
    )
    assert (await payments.handle_ipn(failed)).code == "00"
    assert (await payments.handle_ipn(failed)).code == "02"
    after_failure = await orders.get(order.id)
    assert after_failure.status is OrderStatus.PENDING
    attempt = after_failure.payment(first.txn_ref)
    assert attempt is not None
    assert attempt.status is PaymentStatus.FAILED
    second = await payments.start(order.id, buyer_id="buyer-1", client_ip="127.0.0.1")
    assert (await payments.handle_ipn(ipn_query(second.txn_ref, order.total_amount))).code == "00"
    assert (await orders.get(order.id)).status is OrderStatus.PAID


async def test_only_00_and_00_is_a_payment(
    orders: OrderService, payments: PaymentService, new_event: NewEvent
) -> None:
    order = await pending_order(orders, new_event)
    link = await payments.start(order.id, buyer_id="buyer-1", client_ip="127.0.0.1")
    half = ipn_query(link.txn_ref, order.total_amount, response_code="00", transaction_status="01")
    assert (await payments.handle_ipn(half)).code == "00"
    history = (await orders.repository.load(order.id)).history
    assert isinstance(history[-1].data, PaymentFailed)
    assert (await orders.get(order.id)).status is OrderStatus.PENDING


async def test_mongodb_down_answers_99_and_the_retry_archives_and_answers_02(
    orders: OrderService,
    payments: PaymentService,
    new_event: NewEvent,
    mongo_client: AsyncMongoClient[dict[str, Any]],
    mongo_database_name: str,
) -> None:
    order = await pending_order(orders, new_event)
    link = await payments.start(order.id, buyer_id="buyer-1", client_ip="127.0.0.1")
    admin: Any = mongo_client.admin
    await admin.command(
        "configureFailPoint",
        "failCommand",
        mode="alwaysOn",
        data={"failCommands": ["update"], "errorCode": 91, "appName": WRITE_THROUGH_APP},
    )
    try:
        answer = await payments.handle_ipn(ipn_query(link.txn_ref, order.total_amount))
    finally:
        await admin.command("configureFailPoint", "failCommand", mode="off")
    assert answer.code == "99"
    archived = mongo_client[mongo_database_name][EVENTS_COLLECTION]
    assert await archived.count_documents({"type": "PaymentSucceeded"}) == 0
    retried = await payments.handle_ipn(ipn_query(link.txn_ref, order.total_amount))
    assert retried.code == "02"
    assert await archived.count_documents({"type": "PaymentSucceeded"}) == 1
    assert (await orders.get(order.id)).status is OrderStatus.PAID


async def test_a_payment_after_expiry_takes_the_tickets_again_when_they_are_left(
    orders: OrderService, payments: PaymentService, new_event: NewEvent, clock: ManualClock
) -> None:
    order = await pending_order(orders, new_event, quantity=2, capacity=10)
    link = await payments.start(order.id, buyer_id="buyer-1", client_ip="127.0.0.1")
    clock.advance(3_600)
    assert (await orders.expire(order.id)).value == "expired"
    released = await counters_of(orders, order)
    late_ipn = ipn_query(link.txn_ref, order.total_amount)
    assert (await payments.handle_ipn(late_ipn)).code == "00"
    paid = await orders.get(order.id)
    assert paid.status is OrderStatus.PAID
    history = (await orders.repository.load(order.id)).history
    late = next(e.data for e in history if isinstance(e.data, OrderPaid))
    assert isinstance(late, OrderPaid)
    assert late.restocked
    after = await counters_of(orders, order)
    assert (after["held"], after["sold"]) == (released["held"], released["sold"] + 2)


async def test_a_payment_after_expiry_without_tickets_left_is_refunded_in_full(
    orders: OrderService, payments: PaymentService, new_event: NewEvent, clock: ManualClock
) -> None:
    order = await pending_order(orders, new_event, quantity=2, capacity=2)
    link = await payments.start(order.id, buyer_id="buyer-1", client_ip="127.0.0.1")
    clock.advance(3_600)
    await orders.expire(order.id)
    await orders.place(
        buyer_id="buyer-2",
        event_id=order.event_id,
        items=[RequestedItem(ticket_type_id=order.items[0].ticket_type_id, quantity=2)],
    )
    before = await counters_of(orders, order)
    assert (await payments.handle_ipn(ipn_query(link.txn_ref, order.total_amount))).code == "00"
    settled = await orders.get(order.id)
    assert settled.status is OrderStatus.EXPIRED
    [refund] = settled.refunds
    assert (refund.amount, refund.reason, refund.status) == (
        order.total_amount,
        REFUND_STOCK_GONE,
        "requested",
    )
    assert await counters_of(orders, order) == before


async def test_a_second_successful_payment_of_a_paid_order_is_refunded(
    orders: OrderService, payments: PaymentService, new_event: NewEvent
) -> None:
    order = await pending_order(orders, new_event)
    first = await payments.start(order.id, buyer_id="buyer-1", client_ip="127.0.0.1")
    second = await payments.start(order.id, buyer_id="buyer-1", client_ip="127.0.0.1")
    assert (await payments.handle_ipn(ipn_query(first.txn_ref, order.total_amount))).code == "00"
    again = ipn_query(second.txn_ref, order.total_amount, transaction_no="14226999")
    assert (await payments.handle_ipn(again)).code == "00"
    paid = await orders.get(order.id)
    assert paid.status is OrderStatus.PAID
    [refund] = paid.refunds
    assert (refund.txn_ref, refund.reason) == (second.txn_ref, REFUND_DUPLICATE_PAYMENT)
    history = (await orders.repository.load(order.id)).history
    assert sum(isinstance(e.data, OrderPaid) for e in history) == 1
    assert sum(isinstance(e.data, InvoiceIssued) for e in history) == 1


async def test_invoice_numbers_are_gapless_per_event_under_concurrent_payments(
    orders: OrderService, payments: PaymentService, new_event: NewEvent, clock: ManualClock
) -> None:
    event = await new_event(TicketTypeSpec("Standard", 50_000, 100))
    placed = [
        (
            await orders.place(
                buyer_id=f"buyer-{index}",
                event_id=event.id,
                items=[RequestedItem(ticket_type_id=event.ticket_types[0].id, quantity=1)],
            )
        ).order
        for index in range(12)
    ]
    links = [
        await payments.start(order.id, buyer_id=order.buyer_id, client_ip="127.0.0.1")
        for order in placed
    ]
    answers = await asyncio.gather(
        *(
            payments.handle_ipn(ipn_query(link.txn_ref, order.total_amount))
            for link, order in zip(links, placed, strict=True)
        )
    )
    assert {answer.code for answer in answers} == {"00"}
    numbers = sorted([(await orders.get(order.id)).invoice_number or "" for order in placed])
    series = invoice_series(event.id, invoice_symbol(clock.now))
    assert numbers == [invoice_number(series, sequence) for sequence in range(1, 13)]
    partition = keys.partition_of(event.id, orders.partitions)
    counter = invoice_series_counter(series)
    assert (await orders.store.read_counters(partition, [counter]))[counter]["issued"] == 12


async def test_a_refused_or_repeated_payment_append_takes_no_invoice_number(
    orders: OrderService,
    payments: PaymentService,
    new_event: NewEvent,
    clock: ManualClock,
    mongo_client: AsyncMongoClient[dict[str, Any]],
    mongo_database_name: str,
) -> None:
    late = await pending_order(orders, new_event, quantity=2, capacity=2)
    late_link = await payments.start(late.id, buyer_id="buyer-1", client_ip="127.0.0.1")
    clock.advance(3_600)
    await orders.expire(late.id)
    rival = (
        await orders.place(
            buyer_id="buyer-2",
            event_id=late.event_id,
            items=[RequestedItem(ticket_type_id=late.items[0].ticket_type_id, quantity=2)],
        )
    ).order
    # The late payment's first append (paid, with an invoice) is refused: sold out.
    assert (await payments.handle_ipn(ipn_query(late_link.txn_ref, late.total_amount))).code == "00"
    assert (await orders.get(late.id)).invoice_number is None
    rival_link = await payments.start(rival.id, buyer_id="buyer-2", client_ip="127.0.0.1")
    query = ipn_query(rival_link.txn_ref, rival.total_amount)
    assert (await payments.handle_ipn(query)).code == "00"
    assert (await payments.handle_ipn(query)).code == "02"
    series = invoice_series(late.event_id, invoice_symbol(clock.now))
    assert (await orders.get(rival.id)).invoice_number == invoice_number(series, 1)
    partition = keys.partition_of(late.event_id, orders.partitions)
    counter = invoice_series_counter(series)
    assert (await orders.store.read_counters(partition, [counter]))[counter] == {"issued": 1}
    # What was written through to the archive carries the number, not the placeholder.
    archived = mongo_client[mongo_database_name][EVENTS_COLLECTION]
    invoice = await archived.find_one({"stream": ORDERS.stream(rival.id), "type": "InvoiceIssued"})
    assert invoice is not None
    assert (invoice["data"]["sequence"], invoice["data"]["number"]) == (
        1,
        invoice_number(series, 1),
    )


async def test_ipn_racing_a_cancel_and_an_expiry_settles_the_order_once(
    orders: OrderService, payments: PaymentService, new_event: NewEvent, clock: ManualClock
) -> None:
    for round_number in range(8):
        order = await pending_order(orders, new_event, quantity=1, capacity=5)
        link = await payments.start(order.id, buyer_id="buyer-1", client_ip="127.0.0.1")
        clock.advance(3_600)
        contenders = [
            payments.handle_ipn(ipn_query(link.txn_ref, order.total_amount)),
            orders.expire(order.id),
            cancel_quietly(orders, order.id),
        ]
        if round_number % 2:
            contenders.reverse()
        await asyncio.gather(*contenders)
        clock.advance(-3_600)
        history = (await orders.repository.load(order.id)).history
        payments_recorded = [e for e in history if isinstance(e.data, PaymentSucceeded)]
        assert len(payments_recorded) == 1
        settled = await orders.get(order.id)
        paid = sum(isinstance(e.data, OrderPaid) for e in history)
        assert paid + len(settled.refunds) == 1, "the money bought the tickets or goes back"
        counters = await counters_of(orders, order)
        assert counters["held"] >= 0
        assert counters["held"] + counters["sold"] <= 5
        # Every ticket sold belongs to a paid order, and none is held by a settled one.
        assert counters["sold"] == (1 if settled.status is OrderStatus.PAID else 0)
        assert counters["held"] == 0


async def cancel_quietly(orders: OrderService, order_id: str) -> None:
    try:
        await orders.cancel(order_id, by="buyer-1")
    except OrderNotPending:
        return


async def test_a_refund_is_requested_in_the_same_append_as_the_payment(
    orders: OrderService, payments: PaymentService, new_event: NewEvent, store: EventStore
) -> None:
    order = await pending_order(orders, new_event)
    first = await payments.start(order.id, buyer_id="buyer-1", client_ip="127.0.0.1")
    second = await payments.start(order.id, buyer_id="buyer-1", client_ip="127.0.0.1")
    await payments.handle_ipn(ipn_query(first.txn_ref, order.total_amount))
    await payments.handle_ipn(ipn_query(second.txn_ref, order.total_amount))
    partition = keys.partition_of(order.id, orders.partitions)
    log = await store.read_log(partition, count=1000)
    mine = [e for e in log if e.stream == ORDERS.stream(order.id)]
    last_two = [type(e.data) for e in mine[-2:]]
    assert last_two == [PaymentSucceeded, RefundRequested]
    assert mine[-1].position is not None
    assert mine[-2].position is not None


async def test_the_return_page_reads_the_outcome_and_never_changes_the_order(
    orders: OrderService, payments: PaymentService, new_event: NewEvent
) -> None:
    order = await pending_order(orders, new_event)
    first = await payments.start(order.id, buyer_id="buyer-1", client_ip="127.0.0.1")
    second = await payments.start(order.id, buyer_id="buyer-1", client_ip="127.0.0.1")
    returned = ipn_query(first.txn_ref, order.total_amount)
    before = (await orders.repository.load(order.id)).version
    assert (await payments.outcome(returned)).status == "processing"
    assert (await orders.repository.load(order.id)).version == before
    forged = ipn_query(first.txn_ref, order.total_amount, secret="wrong")
    assert (await payments.outcome(forged)).status == "invalid"
    declined = ipn_query(first.txn_ref, order.total_amount, response_code="24")
    assert (await payments.outcome(declined)).status == "failed"
    await payments.handle_ipn(returned)
    assert (await payments.outcome(returned)).status == "paid"
    again = ipn_query(second.txn_ref, order.total_amount, transaction_no="555")
    await payments.handle_ipn(again)
    assert (await payments.outcome(again)).status == "refunding"
