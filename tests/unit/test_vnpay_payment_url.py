"""VNPAY pay URLs: parameters, GMT+7 dates, ASCII order info and refused requests."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import parse_qsl, urlsplit

import msgspec
import pytest

from eventhunting.payments.vnpay import (
    InvalidPaymentRequest,
    MerchantCredentials,
    PaymentRequest,
    ascii_order_info,
    build_payment_url,
    format_vnpay_time,
    parse_vnpay_time,
    payment_parameters,
)
from eventhunting.payments.vnpay_signing import query_signature_is_valid

CREDENTIALS = MerchantCredentials(
    tmn_code="DEMOV210", hash_secret="KNOWNANSWER0123456789ABCDEFGHIJK"
)
PAY_URL = "https://sandbox.vnpayment.vn/paymentv2/vpcpay.html"
# 2021-08-01 15:33:33 in GMT+7
CREATED_AT = datetime(2021, 8, 1, 8, 33, 33, tzinfo=UTC)


def payment_request(**changes: object) -> PaymentRequest:
    request = PaymentRequest(
        amount=18_060,
        txn_ref="5",
        order_info="Thanh toan don hang :5",
        return_url="https://domainmerchant.vn/ReturnUrl",
        ip_address="127.0.0.1",
        created_at=CREATED_AT,
        expires_at=CREATED_AT + timedelta(minutes=15),
    )
    return msgspec.structs.replace(request, **changes)


def test_pay_url_carries_every_parameter_and_a_hash_that_verifies() -> None:
    url = build_payment_url(payment_request(bank_code="NCB"), CREDENTIALS, PAY_URL)

    parts = urlsplit(url)
    parameters = dict(parse_qsl(parts.query, keep_blank_values=True))
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == PAY_URL
    assert parameters == {
        "vnp_Version": "2.1.0",
        "vnp_Command": "pay",
        "vnp_TmnCode": "DEMOV210",
        "vnp_Amount": "1806000",
        "vnp_CurrCode": "VND",
        "vnp_TxnRef": "5",
        "vnp_OrderInfo": "Thanh toan don hang :5",
        "vnp_OrderType": "other",
        "vnp_Locale": "vn",
        "vnp_ReturnUrl": "https://domainmerchant.vn/ReturnUrl",
        "vnp_IpAddr": "127.0.0.1",
        "vnp_CreateDate": "20210801153333",
        "vnp_ExpireDate": "20210801154833",
        "vnp_BankCode": "NCB",
        "vnp_SecureHash": parameters["vnp_SecureHash"],
    }
    assert query_signature_is_valid(parameters, CREDENTIALS.hash_secret)


def test_pay_url_without_a_bank_code_leaves_the_choice_to_vnpay() -> None:
    parameters = payment_parameters(payment_request(), CREDENTIALS.tmn_code)

    assert "vnp_BankCode" not in parameters
    assert "vnp_SecureHashType" not in parameters


def test_pay_url_query_uses_the_signed_encoding() -> None:
    url = build_payment_url(payment_request(order_info="Ve hang A"), CREDENTIALS, PAY_URL)

    assert "vnp_OrderInfo=Ve+hang+A&" in url
    assert "vnp_ReturnUrl=https%3A%2F%2Fdomainmerchant.vn%2FReturnUrl&" in url


@pytest.mark.parametrize(
    "moment",
    [
        CREATED_AT,
        CREATED_AT.astimezone(timezone(timedelta(hours=-5))),
        CREATED_AT.astimezone(timezone(timedelta(hours=9, minutes=30))),
        datetime(2021, 8, 1, 15, 33, 33, tzinfo=timezone(timedelta(hours=7))),
    ],
)
def test_times_are_written_in_gmt7_whatever_zone_the_datetime_is_in(moment: datetime) -> None:
    assert format_vnpay_time(moment) == "20210801153333"


def test_times_are_written_in_gmt7_whatever_the_server_time_zone() -> None:
    program = (
        "from datetime import datetime, UTC\n"
        "from eventhunting.payments.vnpay import format_vnpay_time\n"
        f"moment = datetime.fromtimestamp({CREATED_AT.timestamp()})\n"  # naive local time
        "print(datetime.now().astimezone().tzname(), format_vnpay_time(moment.astimezone()))\n"
    )
    for zone in ("America/Los_Angeles", "UTC", "Asia/Tokyo"):
        completed = subprocess.run(
            [sys.executable, "-c", program],
            env={**os.environ, "TZ": zone},
            capture_output=True,
            text=True,
            check=True,
        )
        local_zone, written = completed.stdout.split()
        assert written == "20210801153333", zone
        assert local_zone not in ("+07", "ICT"), "the test must run in another zone"


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        format_vnpay_time(datetime(2021, 8, 1, 15, 33, 33))
    with pytest.raises(InvalidPaymentRequest) as refused:
        payment_parameters(
            payment_request(created_at=datetime(2021, 8, 1, 15, 33, 33)),
            CREDENTIALS.tmn_code,
        )
    assert refused.value.field == "created_at"


def test_vnpay_times_parse_to_aware_gmt7_datetimes() -> None:
    parsed = parse_vnpay_time("20210801153333")

    assert parsed == CREATED_AT
    assert parsed.utcoffset() == timedelta(hours=7)
    for garbled in ("2021080115333", "2021-08-01 15:3", "20211301153333", "20210801153333 "):
        with pytest.raises(ValueError, match=r"14 digits|must be in"):
            parse_vnpay_time(garbled)


@pytest.mark.parametrize(
    ("text", "ascii_text"),
    [
        ("Thanh toán đơn hàng Đà Lạt #12", "Thanh toan don hang Da Lat #12"),
        ("Nguyễn Văn Ánh, Đặng Thị Ượng", "Nguyen Van Anh, Dang Thi Uong"),
        ("Vé VIP & quà <50%> + $5 (*~)", "Ve VIP qua 50 5"),
        ("Đơn 12/2024: vé-A_1.", "Don 12/2024: ve-A_1."),
        ("  nhiều   khoảng\ttrắng\n ", "nhieu khoang trang"),
        ("Đêm nhạc 🎵 Sài Gòn \u2013 2 vé", "Dem nhac Sai Gon 2 ve"),
    ],
)
def test_order_info_loses_diacritics_and_special_characters(text: str, ascii_text: str) -> None:
    assert ascii_order_info(text) == ascii_text


def test_order_info_is_cut_to_255_characters() -> None:
    cleaned = ascii_order_info("Đơn hàng " + "ă" * 400)

    assert len(cleaned) == 255
    assert cleaned.startswith("Don hang aaa")


def test_pay_url_sends_the_ascii_order_info() -> None:
    parameters = payment_parameters(payment_request(order_info="Vé Đà Lạt"), "DEMOV210")

    assert parameters["vnp_OrderInfo"] == "Ve Da Lat"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"amount": 0}, "amount"),
        ({"amount": -5}, "amount"),
        ({"amount": True}, "amount"),
        ({"amount": 10_000_000_000}, "amount"),
        ({"txn_ref": ""}, "txn_ref"),
        ({"txn_ref": "x" * 101}, "txn_ref"),
        ({"txn_ref": "order 1"}, "txn_ref"),
        ({"order_info": "✓ ✓"}, "order_info"),
        ({"locale": "fr"}, "locale"),
        ({"return_url": "ftp://domainmerchant.vn/r"}, "return_url"),
        ({"return_url": "/relative"}, "return_url"),
        ({"return_url": "https://domainmerchant.vn/" + "r" * 250}, "return_url"),
        ({"return_url": "https://domainmerchant.vn/~shop"}, "return_url"),
        ({"ip_address": "localhost"}, "ip_address"),
        ({"expires_at": CREATED_AT}, "expires_at"),
        ({"bank_code": "N"}, "bank_code"),
        ({"order_type": "other goods"}, "order_type"),
    ],
)
def test_invalid_pay_requests_raise_a_typed_error_naming_the_field(
    changes: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidPaymentRequest) as refused:
        build_payment_url(payment_request(**changes), CREDENTIALS, PAY_URL)

    assert refused.value.field == field


def test_the_largest_amount_vnp_amount_can_carry_is_accepted() -> None:
    parameters = payment_parameters(payment_request(amount=9_999_999_999), "DEMOV210")

    assert parameters["vnp_Amount"] == "999999999900"


def test_txn_ref_of_100_characters_and_ipv6_addresses_are_accepted() -> None:
    parameters = payment_parameters(
        payment_request(txn_ref="A" * 100, ip_address="2001:db8::1", locale="en"), "DEMOV210"
    )

    assert parameters["vnp_TxnRef"] == "A" * 100
    assert parameters["vnp_IpAddr"] == "2001:db8::1"
    assert parameters["vnp_Locale"] == "en"


def test_merchant_credentials_hide_the_secret_and_check_the_code() -> None:
    assert "KNOWNANSWER" not in repr(CREDENTIALS)
    with pytest.raises(ValueError, match="8 letters or digits"):
        MerchantCredentials(tmn_code="DEMO", hash_secret="x")
    with pytest.raises(ValueError, match="secret"):
        MerchantCredentials(tmn_code="DEMOV210", hash_secret="")
