"""VNPAY return and IPN queries: the signature verdict and the typed result."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl

import pytest

from eventhunting.payments.vnpay import (
    InvalidVnpayMessage,
    PaymentResult,
    verify_payment_callback,
)
from eventhunting.payments.vnpay_signing import signed_query_string

SECRET = "CALLBACKSECRET0123456789ABCDEFGH"


def callback_parameters(**changes: str) -> dict[str, str]:
    parameters = {
        "vnp_TmnCode": "DEMOV210",
        "vnp_Amount": "25000000",
        "vnp_BankCode": "NCB",
        "vnp_BankTranNo": "VNP14226112",
        "vnp_CardType": "ATM",
        "vnp_PayDate": "20240105093015",
        "vnp_OrderInfo": "Thanh toan don hang 01HZX",
        "vnp_TransactionNo": "14226112",
        "vnp_ResponseCode": "00",
        "vnp_TransactionStatus": "00",
        "vnp_TxnRef": "01HZXAMPLE",
    }
    parameters.update(changes)
    return {name: value for name, value in parameters.items() if value}


def received_query(parameters: dict[str, str], secret: str = SECRET) -> list[tuple[str, str]]:
    """What the merchant's web framework decodes from VNPAY's signed query."""
    return parse_qsl(signed_query_string(parameters, secret), keep_blank_values=True)


def test_a_signed_success_reads_into_a_paid_result_with_vnd_amount_and_aware_pay_date() -> None:
    callback = verify_payment_callback(received_query(callback_parameters()), SECRET)

    assert callback.signature_valid
    assert callback.result == PaymentResult(
        tmn_code="DEMOV210",
        txn_ref="01HZXAMPLE",
        amount=250_000,
        response_code="00",
        transaction_status="00",
        transaction_no="14226112",
        bank_code="NCB",
        bank_tran_no="VNP14226112",
        card_type="ATM",
        pay_date=datetime(2024, 1, 5, 2, 30, 15, tzinfo=UTC),
        order_info="Thanh toan don hang 01HZX",
    )
    assert callback.result.paid
    assert callback.result.pay_date is not None
    assert callback.result.pay_date.utcoffset() == timedelta(hours=7)


def test_a_mapping_of_decoded_values_verifies_like_a_list_of_pairs() -> None:
    query = dict(received_query(callback_parameters()))

    assert verify_payment_callback(query, SECRET).signature_valid


def test_a_cancelled_payment_is_signed_but_not_paid() -> None:
    parameters = callback_parameters(
        vnp_ResponseCode="24",
        vnp_TransactionStatus="02",
        vnp_TransactionNo="0",
        vnp_BankTranNo="",
        vnp_CardType="",
    )

    callback = verify_payment_callback(received_query(parameters), SECRET)

    assert callback.result is not None
    assert not callback.result.paid
    assert callback.result.response_code == "24"
    assert callback.result.bank_tran_no is None
    assert callback.result.card_type is None


def test_success_code_with_a_non_success_status_is_not_paid() -> None:
    parameters = callback_parameters(vnp_TransactionStatus="07")

    callback = verify_payment_callback(received_query(parameters), SECRET)

    assert callback.result is not None
    assert not callback.result.paid


def test_unknown_extra_parameters_are_ignored() -> None:
    query = [*received_query(callback_parameters()), ("order_id", "42"), ("utm", "x")]

    callback = verify_payment_callback(query, SECRET)

    assert callback.signature_valid


def test_an_upper_case_hash_is_accepted() -> None:
    query = [
        (name, value.upper() if name == "vnp_SecureHash" else value)
        for name, value in received_query(callback_parameters())
    ]

    assert verify_payment_callback(query, SECRET).signature_valid


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("vnp_Amount", "25000100"),
        ("vnp_ResponseCode", "24"),
        ("vnp_TxnRef", "01HZXOTHER"),
        ("vnp_SecureHash", "00" * 64),
    ],
)
def test_a_tampered_query_gets_an_invalid_verdict_and_no_result(name: str, value: str) -> None:
    query = [
        (received_name, value if received_name == name else received_value)
        for received_name, received_value in received_query(callback_parameters())
    ]

    callback = verify_payment_callback(query, SECRET)

    assert not callback.signature_valid
    assert callback.result is None


def test_a_query_signed_with_another_secret_or_unsigned_is_invalid() -> None:
    other = received_query(callback_parameters(), "ANOTHERSECRET0123456789ABCDEFGHI")
    unsigned = [pair for pair in other if pair[0] != "vnp_SecureHash"]

    assert not verify_payment_callback(other, SECRET).signature_valid
    assert not verify_payment_callback(unsigned, SECRET).signature_valid


def test_a_repeated_vnp_parameter_is_invalid_even_if_the_first_copy_is_signed() -> None:
    query = [*received_query(callback_parameters()), ("vnp_Amount", "1")]

    assert not verify_payment_callback(query, SECRET).signature_valid


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"vnp_TxnRef": ""}, "vnp_TxnRef"),
        ({"vnp_TmnCode": ""}, "vnp_TmnCode"),
        ({"vnp_Amount": ""}, "vnp_Amount"),
        ({"vnp_Amount": "25000050"}, "vnp_Amount"),
        ({"vnp_Amount": "-25000000"}, "vnp_Amount"),
        ({"vnp_ResponseCode": "0"}, "vnp_ResponseCode"),
        ({"vnp_TransactionStatus": ""}, "vnp_TransactionStatus"),
        ({"vnp_TransactionNo": "abc"}, "vnp_TransactionNo"),
        ({"vnp_PayDate": "2024-01-05"}, "vnp_PayDate"),
        ({"vnp_PayDate": "20241305093015"}, "vnp_PayDate"),
    ],
)
def test_a_signed_query_with_a_missing_or_garbled_field_raises_a_typed_error(
    changes: dict[str, str], field: str
) -> None:
    query = received_query(callback_parameters(**changes))

    with pytest.raises(InvalidVnpayMessage) as garbled:
        verify_payment_callback(query, SECRET)

    assert garbled.value.field == field
