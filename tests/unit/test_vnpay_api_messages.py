"""VNPAY querydr and refund messages: request hash orders and answer verification."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from eventhunting.payments.vnpay import (
    InvalidPaymentRequest,
    InvalidVnpayMessage,
    MerchantCredentials,
)
from eventhunting.payments.vnpay_api import (
    QueryRequest,
    RefundRequest,
    VnpayResponseSignatureError,
    querydr_body,
    read_querydr_answer,
    read_refund_answer,
    refund_body,
)

CREDENTIALS = MerchantCredentials(
    tmn_code="DEMOV210", hash_secret="APISECRET0123456789ABCDEFGHIJKLM"
)
PAID_AT = datetime(2024, 1, 5, 2, 30, 15, tzinfo=UTC)  # 20240105093015 in GMT+7
ASKED_AT = datetime(2024, 1, 6, 3, 0, 0, tzinfo=UTC)  # 20240106100000 in GMT+7


def independent_hash(*values: str) -> str:
    joined = "|".join(values)
    return hmac.new(CREDENTIALS.hash_secret.encode(), joined.encode(), hashlib.sha512).hexdigest()


def query_request(**changes: object) -> QueryRequest:
    request = QueryRequest(
        request_id="Q01HZX0001",
        txn_ref="01HZXAMPLE",
        order_info="Kiểm tra đơn hàng",
        transaction_date=PAID_AT,
        created_at=ASKED_AT,
        ip_address="10.0.0.5",
    )
    return msgspec.structs.replace(request, **changes)


def refund_request(**changes: object) -> RefundRequest:
    request = RefundRequest(
        request_id="R01HZX0001",
        txn_ref="01HZXAMPLE",
        order_info="Hoàn tiền vé",
        transaction_date=PAID_AT,
        created_at=ASKED_AT,
        ip_address="10.0.0.5",
        amount=125_000,
        refund_type="partial",
        created_by="organizer-01HZ",
        transaction_no="14226112",
    )
    return msgspec.structs.replace(request, **changes)


def test_querydr_body_is_signed_over_its_fields_in_vnpay_order() -> None:
    body = querydr_body(query_request(), CREDENTIALS)

    assert body["vnp_SecureHash"] == independent_hash(
        "Q01HZX0001",
        "2.1.0",
        "querydr",
        "DEMOV210",
        "01HZXAMPLE",
        "20240105093015",
        "20240106100000",
        "10.0.0.5",
        "Kiem tra don hang",
    )
    assert body["vnp_OrderInfo"] == "Kiem tra don hang"
    assert "vnp_TransactionNo" not in body


def test_querydr_transaction_number_is_sent_but_not_hashed() -> None:
    without = querydr_body(query_request(), CREDENTIALS)
    with_number = querydr_body(query_request(transaction_no="14226112"), CREDENTIALS)

    assert with_number["vnp_TransactionNo"] == "14226112"
    assert with_number["vnp_SecureHash"] == without["vnp_SecureHash"]


def test_refund_body_is_signed_over_its_fields_in_vnpay_order() -> None:
    body = refund_body(refund_request(), CREDENTIALS)

    assert body["vnp_SecureHash"] == independent_hash(
        "R01HZX0001",
        "2.1.0",
        "refund",
        "DEMOV210",
        "03",
        "01HZXAMPLE",
        "12500000",
        "14226112",
        "20240105093015",
        "organizer-01HZ",
        "20240106100000",
        "10.0.0.5",
        "Hoan tien ve",
    )
    assert body["vnp_Amount"] == "12500000"
    assert body["vnp_TransactionType"] == "03"


def test_full_refund_without_a_transaction_number_hashes_it_as_empty() -> None:
    body = refund_body(refund_request(refund_type="full", transaction_no=None), CREDENTIALS)

    assert body["vnp_TransactionType"] == "02"
    assert "vnp_TransactionNo" not in body
    assert body["vnp_SecureHash"] == independent_hash(
        "R01HZX0001",
        "2.1.0",
        "refund",
        "DEMOV210",
        "02",
        "01HZXAMPLE",
        "12500000",
        "",
        "20240105093015",
        "organizer-01HZ",
        "20240106100000",
        "10.0.0.5",
        "Hoan tien ve",
    )


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"request_id": "x" * 33}, "request_id"),
        ({"request_id": ""}, "request_id"),
        ({"txn_ref": "bad ref"}, "txn_ref"),
        ({"ip_address": "10.0.0"}, "ip_address"),
        ({"amount": 0}, "amount"),
        ({"refund_type": "most"}, "refund_type"),
        ({"created_by": ""}, "created_by"),
        ({"transaction_date": datetime(2024, 1, 5)}, "transaction_date"),
    ],
)
def test_invalid_refund_requests_raise_a_typed_error(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidPaymentRequest) as refused:
        refund_body(refund_request(**changes), CREDENTIALS)

    assert refused.value.field == field


def querydr_answer() -> dict[str, Any]:
    answer: dict[str, Any] = {
        "vnp_ResponseId": "4f7a0c",
        "vnp_Command": "querydr",
        "vnp_ResponseCode": "00",
        "vnp_Message": "QueryDR Success",
        "vnp_TmnCode": "DEMOV210",
        "vnp_TxnRef": "01HZXAMPLE",
        "vnp_Amount": "25000000",
        "vnp_OrderInfo": "Thanh toan don hang 01HZX",
        "vnp_BankCode": "NCB",
        "vnp_PayDate": "20240105093015",
        "vnp_TransactionNo": "14226112",
        "vnp_TransactionType": "01",
        "vnp_TransactionStatus": "00",
    }
    answer["vnp_SecureHash"] = independent_hash(
        "4f7a0c",
        "querydr",
        "00",
        "QueryDR Success",
        "DEMOV210",
        "01HZXAMPLE",
        "25000000",
        "NCB",
        "20240105093015",
        "14226112",
        "01",
        "00",
        "Thanh toan don hang 01HZX",
        "",  # vnp_PromotionCode, absent
        "",  # vnp_PromotionAmount, absent
    )
    return answer


def test_a_querydr_answer_with_missing_promotion_fields_verifies_and_reads() -> None:
    result = read_querydr_answer(querydr_answer(), CREDENTIALS.hash_secret)

    assert result.response_code == "00"
    assert result.amount == 250_000
    assert result.pay_date == PAID_AT
    assert result.transaction_type == "01"
    assert result.transaction_status == "00"
    assert result.promotion_code is None


def test_a_querydr_answer_hash_is_compared_case_insensitively() -> None:
    answer = querydr_answer()
    answer["vnp_SecureHash"] = answer["vnp_SecureHash"].upper()

    assert read_querydr_answer(answer, CREDENTIALS.hash_secret).response_code == "00"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("vnp_TransactionStatus", "02"),
        ("vnp_Amount", "26000000"),
        ("vnp_PromotionCode", "SALE"),
        ("vnp_SecureHash", "ab" * 64),
    ],
)
def test_a_tampered_querydr_answer_raises_a_signature_error(name: str, value: str) -> None:
    answer = {**querydr_answer(), name: value}

    with pytest.raises(VnpayResponseSignatureError) as untrusted:
        read_querydr_answer(answer, CREDENTIALS.hash_secret)

    assert untrusted.value.response_code == "00"


def test_an_answer_is_hashed_over_raw_values_so_numbers_and_nulls_count_as_written() -> None:
    answer = {**querydr_answer(), "vnp_Amount": 25000000, "vnp_PromotionCode": None}

    assert read_querydr_answer(answer, CREDENTIALS.hash_secret).amount == 250_000


def test_an_error_answer_with_few_fields_verifies_and_reads() -> None:
    answer = {
        "vnp_ResponseId": "9c1d",
        "vnp_Command": "querydr",
        "vnp_ResponseCode": "91",
        "vnp_Message": "Transaction not found",
        "vnp_TmnCode": "DEMOV210",
        "vnp_SecureHash": independent_hash(
            "9c1d", "querydr", "91", "Transaction not found", "DEMOV210", *([""] * 10)
        ),
    }

    result = read_querydr_answer(answer, CREDENTIALS.hash_secret)

    assert result.response_code == "91"
    assert result.txn_ref is None
    assert result.amount is None


def test_a_signed_answer_with_a_garbled_field_raises_a_typed_error() -> None:
    answer = {
        "vnp_ResponseId": "9c1d",
        "vnp_Command": "querydr",
        "vnp_ResponseCode": "ok",
        "vnp_SecureHash": independent_hash("9c1d", "querydr", "ok", *([""] * 12)),
    }

    with pytest.raises(InvalidVnpayMessage) as garbled:
        read_querydr_answer(answer, CREDENTIALS.hash_secret)

    assert garbled.value.field == "vnp_ResponseCode"


def test_a_refund_answer_is_verified_without_the_promotion_fields() -> None:
    fields = {
        "vnp_ResponseId": "77aa",
        "vnp_Command": "refund",
        "vnp_ResponseCode": "00",
        "vnp_Message": "Refund success",
        "vnp_TmnCode": "DEMOV210",
        "vnp_TxnRef": "01HZXAMPLE",
        "vnp_Amount": "12500000",
        "vnp_BankCode": "NCB",
        "vnp_PayDate": "20240106100001",
        "vnp_TransactionNo": "14226112",
        "vnp_TransactionType": "03",
        "vnp_TransactionStatus": "06",
        "vnp_OrderInfo": "Hoan tien ve",
    }
    answer = {**fields, "vnp_SecureHash": independent_hash(*fields.values())}

    result = read_refund_answer(answer, CREDENTIALS.hash_secret)

    assert result.response_code == "00"
    assert result.amount == 125_000
    assert result.transaction_type == "03"
    with pytest.raises(VnpayResponseSignatureError):
        read_querydr_answer({**answer, "vnp_Command": "querydr"}, CREDENTIALS.hash_secret)
    with pytest.raises(VnpayResponseSignatureError):
        read_refund_answer({**answer, "vnp_Amount": "25000000"}, CREDENTIALS.hash_secret)
