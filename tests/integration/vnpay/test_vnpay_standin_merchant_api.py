"""querydr and refund: our VnpayGateway against the VNPAY stand-in, answers verified both ways."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
import pytest

from eventhunting.payments.vnpay import MerchantCredentials
from eventhunting.payments.vnpay_api import (
    QueryRequest,
    RefundRequest,
    VnpayGateway,
    VnpayResponseSignatureError,
    VnpayTransportError,
    querydr_body,
    read_querydr_answer,
    refund_body,
)
from tests.integration.vnpay.standin_harness import (
    CREDENTIALS,
    LOCKED_CARD,
    Buyer,
    IpnReceiver,
    Standin,
    payment_url,
    returned_result,
)
from tests.support.servers import free_port

request_numbers = itertools.count(1)


def request_id() -> str:
    return f"REQ{next(request_numbers):06d}"


@dataclass(frozen=True)
class Payment:
    txn_ref: str
    amount: int
    created_at: datetime
    transaction_no: str


def make_payment(
    standin: Standin, buyer: Buyer, txn_ref: str, amount: int = 300_000, card: str | None = None
) -> Payment:
    created_at = datetime.now(UTC).replace(microsecond=0)
    url = payment_url(standin, txn_ref, amount=amount, created_at=created_at)
    result = returned_result(buyer.pay(url) if card is None else buyer.pay(url, card_number=card))
    return Payment(txn_ref, amount, created_at, result.transaction_no)


def query_of(payment: Payment, **changes: Any) -> QueryRequest:
    fields: dict[str, Any] = {
        "request_id": request_id(),
        "txn_ref": payment.txn_ref,
        "order_info": f"Truy vấn {payment.txn_ref}",
        "transaction_date": payment.created_at,
        "created_at": datetime.now(UTC),
        "ip_address": "10.1.2.3",
        **changes,
    }
    return QueryRequest(**fields)


def refund_of(
    payment: Payment,
    amount: int,
    refund_type: Literal["full", "partial"] = "partial",
    **changes: Any,
) -> RefundRequest:
    fields: dict[str, Any] = {
        "request_id": request_id(),
        "txn_ref": payment.txn_ref,
        "order_info": f"Hoàn tiền {payment.txn_ref}",
        "transaction_date": payment.created_at,
        "created_at": datetime.now(UTC),
        "ip_address": "10.1.2.3",
        "amount": amount,
        "refund_type": refund_type,
        "created_by": "organizer-1",
        "transaction_no": payment.transaction_no,
        **changes,
    }
    return RefundRequest(**fields)


@pytest.fixture
async def gateway(standin: Standin) -> AsyncIterator[VnpayGateway]:
    async with VnpayGateway(CREDENTIALS, standin.api_url, timeout_seconds=5) as client:
        yield client


@pytest.fixture
def payment(standin: Standin, buyer: Buyer) -> Payment:
    return make_payment(standin, buyer, "API-PAID", amount=300_000)


def refunded_total(standin: Standin, txn_ref: str) -> int:
    return sum(r["amount"] for r in standin.ledger()["refunds"] if r["txn_ref"] == txn_ref)


async def test_querydr_reports_a_paid_transaction(gateway: VnpayGateway, payment: Payment) -> None:
    result = await gateway.query(query_of(payment))

    assert result.response_code == "00"
    assert result.txn_ref == payment.txn_ref
    assert result.amount == payment.amount
    assert result.transaction_no == payment.transaction_no
    assert result.transaction_type == "01"
    assert result.transaction_status == "00"
    assert result.bank_code == "NCB"
    assert result.pay_date is not None


async def test_querydr_reports_an_unfinished_payment_as_not_completed(
    gateway: VnpayGateway, standin: Standin, buyer: Buyer
) -> None:
    created_at = datetime.now(UTC).replace(microsecond=0)
    buyer.start(payment_url(standin, "API-OPEN", created_at=created_at))
    open_payment = Payment("API-OPEN", 250_000, created_at, "0")

    result = await gateway.query(query_of(open_payment))

    assert result.response_code == "00"
    assert result.transaction_status == "01"


async def test_querydr_of_an_unknown_txn_ref_or_another_date_answers_91(
    gateway: VnpayGateway, payment: Payment
) -> None:
    unknown = await gateway.query(query_of(payment, txn_ref="API-NOPE"))
    other_day = await gateway.query(
        query_of(payment, transaction_date=datetime(2024, 1, 1, tzinfo=UTC))
    )

    assert unknown.response_code == "91"
    assert other_day.response_code == "91"


async def test_partial_refunds_add_up_and_querydr_reports_them(
    gateway: VnpayGateway, standin: Standin, payment: Payment
) -> None:
    first = await gateway.refund(refund_of(payment, 100_000))
    after_first = await gateway.query(query_of(payment))
    second = await gateway.refund(refund_of(payment, 200_000))
    after_second = await gateway.query(query_of(payment))

    assert (first.response_code, second.response_code) == ("00", "00")
    assert first.amount == 100_000
    assert first.transaction_type == "03"
    assert first.transaction_no not in (None, payment.transaction_no)
    assert (after_first.transaction_type, after_first.transaction_status) == ("03", "06")
    assert (after_second.transaction_type, after_second.transaction_status) == ("02", "06")
    assert refunded_total(standin, payment.txn_ref) == payment.amount


async def test_a_refund_over_the_remaining_amount_answers_93_and_refunds_nothing(
    gateway: VnpayGateway, standin: Standin, payment: Payment
) -> None:
    await gateway.refund(refund_of(payment, 250_000))

    over = await gateway.refund(refund_of(payment, 50_001))
    over_full = await gateway.refund(refund_of(payment, 300_001))

    assert over.response_code == "93"
    assert over_full.response_code == "93"
    assert refunded_total(standin, payment.txn_ref) == 250_000
    rest = await gateway.refund(refund_of(payment, 50_000))
    assert rest.response_code == "00"
    assert (await gateway.refund(refund_of(payment, 1))).response_code == "93"


async def test_concurrent_refunds_never_exceed_the_paid_amount(
    gateway: VnpayGateway, standin: Standin, payment: Payment
) -> None:
    results = await asyncio.gather(*(gateway.refund(refund_of(payment, 120_000)) for _ in range(5)))

    codes = sorted(result.response_code for result in results)
    assert codes == ["00", "00", "93", "93", "93"]
    assert refunded_total(standin, payment.txn_ref) == 240_000


async def test_a_full_refund_must_be_the_whole_amount_and_not_follow_a_partial_one(
    gateway: VnpayGateway, standin: Standin, buyer: Buyer, payment: Payment
) -> None:
    wrong_amount = await gateway.refund(refund_of(payment, 299_000, "full"))
    await gateway.refund(refund_of(payment, 1_000))
    after_partial = await gateway.refund(refund_of(payment, 300_000, "full"))
    whole = make_payment(standin, buyer, "API-WHOLE", amount=80_000)
    full = await gateway.refund(refund_of(whole, 80_000, "full"))

    assert wrong_amount.response_code == "93"
    assert after_partial.response_code == "04"
    assert full.response_code == "00"
    assert full.transaction_type == "02"
    assert (await gateway.query(query_of(whole))).transaction_type == "02"


async def test_full_refunds_switched_off_answer_13(
    gateway: VnpayGateway, standin: Standin, payment: Payment
) -> None:
    standin.switches(full_refunds_allowed=False)

    full = await gateway.refund(refund_of(payment, payment.amount, "full"))
    partial = await gateway.refund(refund_of(payment, payment.amount))

    assert full.response_code == "13"
    assert partial.response_code == "00"


async def test_refunding_a_payment_that_failed_answers_95(
    gateway: VnpayGateway, standin: Standin, buyer: Buyer
) -> None:
    failed = make_payment(standin, buyer, "API-FAILED", card=LOCKED_CARD)

    result = await gateway.refund(refund_of(failed, 1_000))

    assert result.response_code == "95"
    assert standin.ledger()["refunds"] == []


async def test_refunding_with_another_transaction_number_answers_91(
    gateway: VnpayGateway, payment: Payment
) -> None:
    result = await gateway.refund(refund_of(payment, 1_000, transaction_no="99999999"))

    assert result.response_code == "91"


async def test_a_repeated_request_id_answers_94_and_is_not_applied_twice(
    gateway: VnpayGateway, standin: Standin, payment: Payment
) -> None:
    refund = refund_of(payment, 10_000)

    first = await gateway.refund(refund)
    repeated = await gateway.refund(refund)
    repeated_query = query_of(payment)
    await gateway.query(repeated_query)

    assert first.response_code == "00"
    assert repeated.response_code == "94"
    assert (await gateway.query(repeated_query)).response_code == "94"
    assert refunded_total(standin, payment.txn_ref) == 10_000


async def test_a_request_signed_with_another_secret_gets_97_which_we_cannot_trust(
    standin: Standin, payment: Payment
) -> None:
    impostor = MerchantCredentials(tmn_code=CREDENTIALS.tmn_code, hash_secret="WRONG" * 7)
    async with VnpayGateway(impostor, standin.api_url) as gateway:
        with pytest.raises(VnpayResponseSignatureError) as untrusted:
            await gateway.refund(refund_of(payment, 1_000))

    assert untrusted.value.response_code == "97"
    assert standin.ledger()["refunds"] == []


async def test_a_tampered_request_is_refused_with_97_in_a_signed_answer(
    standin: Standin, payment: Payment
) -> None:
    body = refund_body(refund_of(payment, 1_000), CREDENTIALS)
    body["vnp_Amount"] = "100000000"  # 1,000,000 VND instead of the signed 1,000

    async with httpx.AsyncClient() as client:
        answer = (await client.post(standin.api_url, json=body)).json()

    assert answer["vnp_ResponseCode"] == "97"
    assert "vnp_SecureHash" in answer
    assert standin.ledger()["refunds"] == []


async def test_an_unknown_merchant_code_answers_02(standin: Standin, payment: Payment) -> None:
    other = MerchantCredentials(tmn_code="OTHERTMN", hash_secret=CREDENTIALS.hash_secret)
    async with VnpayGateway(other, standin.api_url) as gateway:
        result = await gateway.query(query_of(payment))

    assert result.response_code == "02"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("vnp_Version", "2.0.0"),
        ("vnp_RequestId", ""),
        ("vnp_TransactionDate", "20240101"),
        ("vnp_IpAddr", "not-an-ip"),
        ("vnp_TxnRef", 12345),
        ("vnp_Command", "pay"),
    ],
)
async def test_a_malformed_querydr_answers_03_signed(
    standin: Standin, payment: Payment, field: str, value: object
) -> None:
    body: dict[str, object] = dict(querydr_body(query_of(payment), CREDENTIALS))
    body[field] = value

    async with httpx.AsyncClient() as client:
        answer = (await client.post(standin.api_url, json=body)).json()

    assert answer["vnp_ResponseCode"] == "03"
    assert read_querydr_answer(answer, CREDENTIALS.hash_secret).response_code == "03"


async def test_a_body_that_is_not_json_answers_03(standin: Standin) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(standin.api_url, content=b"vnp_Command=querydr")

    assert response.status_code == 200
    assert response.json()["vnp_ResponseCode"] == "03"


async def test_injected_refund_errors_answer_99_and_refund_nothing(
    gateway: VnpayGateway, standin: Standin, payment: Payment
) -> None:
    standin.switches(refund_failure_rate=1.0, refund_failure_mode="error")

    result = await gateway.refund(refund_of(payment, 1_000))

    assert result.response_code == "99"
    assert standin.ledger()["refunds"] == []


async def test_an_injected_timeout_is_a_transport_error_and_refunds_nothing(
    standin: Standin, payment: Payment
) -> None:
    standin.switches(
        refund_failure_rate=1.0, refund_failure_mode="timeout", refund_hang_seconds=1.5
    )

    async with VnpayGateway(CREDENTIALS, standin.api_url, timeout_seconds=0.5) as gateway:
        with pytest.raises(VnpayTransportError):
            await gateway.refund(refund_of(payment, 1_000))

    await asyncio.sleep(1.5)
    assert standin.ledger()["refunds"] == []


async def test_a_refund_applied_then_timing_out_shows_only_in_querydr(
    standin: Standin, payment: Payment
) -> None:
    standin.switches(
        refund_failure_rate=1.0, refund_failure_mode="applied_then_timeout", refund_hang_seconds=1.5
    )

    async with VnpayGateway(CREDENTIALS, standin.api_url, timeout_seconds=0.5) as gateway:
        with pytest.raises(VnpayTransportError):
            await gateway.refund(refund_of(payment, 1_000))
        queried = await gateway.query(query_of(payment))

    assert queried.transaction_type == "03"
    assert refunded_total(standin, payment.txn_ref) == 1_000


async def test_a_seeded_failure_fraction_fails_the_same_calls_again(
    gateway: VnpayGateway, standin: Standin, buyer: Buyer
) -> None:
    async def outcomes(txn_ref: str) -> list[str]:
        standin.switches(refund_failure_rate=0.5, seed=1234)
        paid = make_payment(standin, buyer, txn_ref, amount=100_000)
        results = [await gateway.refund(refund_of(paid, 1_000)) for _ in range(12)]
        standin.switches(seed=None)
        return [result.response_code for result in results]

    first = await outcomes("API-SEEDED-1")
    second = await outcomes("API-SEEDED-2")

    assert first == second
    assert set(first) == {"00", "99"}


async def test_refunds_beyond_the_rate_limit_answer_99(
    gateway: VnpayGateway, standin: Standin, payment: Payment
) -> None:
    standin.switches(refund_rate_limit_per_second=2)

    results = await asyncio.gather(*(gateway.refund(refund_of(payment, 1_000)) for _ in range(5)))

    assert sorted(result.response_code for result in results) == ["00", "00", "99", "99", "99"]
    await asyncio.sleep(1.1)
    assert (await gateway.refund(refund_of(payment, 1_000))).response_code == "00"


async def test_refunds_beyond_the_rate_limit_can_be_http_429_transport_errors(
    gateway: VnpayGateway, standin: Standin, payment: Payment
) -> None:
    standin.switches(refund_rate_limit_per_second=1, refund_rate_limit_answer="http_429")

    outcomes = await asyncio.gather(
        *(gateway.refund(refund_of(payment, 1_000)) for _ in range(3)), return_exceptions=True
    )

    errors = [o for o in outcomes if isinstance(o, VnpayTransportError)]
    assert len(errors) == 2
    assert {error.status_code for error in errors} == {429}


async def test_the_ledger_lists_payments_and_refunds(
    gateway: VnpayGateway, standin: Standin, payment: Payment
) -> None:
    result = await gateway.refund(refund_of(payment, 40_000))

    ledger = standin.ledger()
    (transaction,) = ledger["transactions"]
    (refund,) = ledger["refunds"]
    assert transaction["txn_ref"] == payment.txn_ref
    assert transaction["amount"] == payment.amount
    assert transaction["response_code"] == "00"
    assert refund["amount"] == 40_000
    assert refund["refund_transaction_no"] == result.transaction_no
    assert refund["created_by"] == "organizer-1"


async def test_the_gateway_raises_a_transport_error_when_nothing_listens(
    payment: Payment,
) -> None:
    url = f"http://127.0.0.1:{free_port()}/merchant_webapi/api/transaction"
    async with VnpayGateway(CREDENTIALS, url, timeout_seconds=1) as gateway:
        with pytest.raises(VnpayTransportError) as failed:
            await gateway.query(query_of(payment))

    assert failed.value.status_code is None


async def test_the_gateway_raises_a_transport_error_on_an_html_error_page(
    payment: Payment, ipn_receiver: IpnReceiver
) -> None:
    broken = ipn_receiver.url.replace("/ipn", "/broken")
    async with VnpayGateway(CREDENTIALS, broken) as gateway:
        with pytest.raises(VnpayTransportError) as failed:
            await gateway.query(query_of(payment))

    assert failed.value.status_code == 502
