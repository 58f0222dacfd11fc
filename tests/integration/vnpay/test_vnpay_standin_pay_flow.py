"""The VNPAY stand-in's pay pages over real HTTP: checks, cards, OTP, cancel and the return."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

import pytest

from eventhunting.payments.vnpay import MerchantCredentials
from eventhunting.payments.vnpay_signing import signed_query_string
from tests.integration.vnpay.standin_harness import (
    CREDENTIALS,
    EXPIRED_CARD,
    INSUFFICIENT_BALANCE_CARD,
    LOCKED_CARD,
    NOT_ACTIVATED_CARD,
    SUCCESS_CARD,
    Buyer,
    IpnReceiver,
    Standin,
    error_code_of,
    payment_url,
    returned_parameters,
    returned_result,
    wait_until,
)


def test_paying_with_the_success_card_returns_a_signed_paid_result(
    standin: Standin, buyer: Buyer
) -> None:
    redirect = buyer.pay(payment_url(standin, "PAY-OK-1", amount=250_000))

    result = returned_result(redirect)
    assert result.paid
    assert result.txn_ref == "PAY-OK-1"
    assert result.amount == 250_000
    assert result.tmn_code == CREDENTIALS.tmn_code
    assert result.bank_code == "NCB"
    assert result.card_type == "ATM"
    assert result.bank_tran_no
    assert result.transaction_no != "0"
    assert result.order_info == "Thanh toan don hang PAY-OK-1"
    assert result.pay_date is not None
    assert abs(result.pay_date - datetime.now(UTC)) < timedelta(minutes=1)
    names = {name for name, _ in returned_parameters(redirect)}
    assert names == {
        "vnp_TmnCode",
        "vnp_Amount",
        "vnp_BankCode",
        "vnp_BankTranNo",
        "vnp_CardType",
        "vnp_PayDate",
        "vnp_OrderInfo",
        "vnp_TransactionNo",
        "vnp_ResponseCode",
        "vnp_TransactionStatus",
        "vnp_TxnRef",
        "vnp_SecureHash",
    }


def test_the_ipn_carries_the_same_signed_result_as_the_return_redirect(
    standin: Standin, buyer: Buyer, ipn_receiver: IpnReceiver
) -> None:
    redirect = buyer.pay(payment_url(standin, "PAY-IPN-1"))

    wait_until(lambda: len(ipn_receiver.calls_for("PAY-IPN-1")) == 1, what="the IPN")
    (call,) = ipn_receiver.calls_for("PAY-IPN-1")
    assert call.signature_valid
    assert sorted(call.parameters) == sorted(returned_parameters(redirect))
    wait_until(lambda: standin.transaction("PAY-IPN-1")["ipn"] == "confirmed", what="confirmed")


@pytest.mark.parametrize(
    ("card", "response_code"),
    [
        (INSUFFICIENT_BALANCE_CARD, "51"),
        (NOT_ACTIVATED_CARD, "09"),
        (LOCKED_CARD, "12"),
        (EXPIRED_CARD, "99"),
    ],
)
def test_each_failing_test_card_returns_its_response_code_and_an_unpaid_result(
    standin: Standin, buyer: Buyer, ipn_receiver: IpnReceiver, card: str, response_code: str
) -> None:
    txn_ref = f"PAY-FAIL-{response_code}"
    redirect = buyer.pay(payment_url(standin, txn_ref), card_number=card)

    result = returned_result(redirect)
    assert result.response_code == response_code
    assert result.transaction_status == "02"
    assert not result.paid
    wait_until(lambda: len(ipn_receiver.calls_for(txn_ref)) == 1, what="the IPN of a failure")


def test_only_the_success_and_balance_cards_ask_for_an_otp(standin: Standin, buyer: Buyer) -> None:
    for number, card in enumerate((SUCCESS_CARD, INSUFFICIENT_BALANCE_CARD, LOCKED_CARD)):
        path = buyer.start(payment_url(standin, f"PAY-OTP-{number}"))
        entered = buyer.submit_card(path, card)
        assert entered.status_code == 303
        asks_for_otp = entered.headers["location"] == path
        assert asks_for_otp == (card != LOCKED_CARD)
        if asks_for_otp:
            assert 'id="otp"' in buyer.page(path).text


def test_a_wrong_otp_finishes_the_payment_with_code_13(standin: Standin, buyer: Buyer) -> None:
    redirect = buyer.pay(payment_url(standin, "PAY-OTP-WRONG"), otp="654321")

    assert returned_result(redirect).response_code == "13"


def test_cancelling_on_the_card_page_or_the_otp_page_returns_code_24(
    standin: Standin, buyer: Buyer
) -> None:
    on_card_page = buyer.start(payment_url(standin, "PAY-CANCEL-1"))
    on_otp_page = buyer.start(payment_url(standin, "PAY-CANCEL-2"))
    buyer.submit_card(on_otp_page, SUCCESS_CARD)

    for path in (on_card_page, on_otp_page):
        result = returned_result(buyer.cancel(path))
        assert result.response_code == "24"
        assert result.transaction_no == "0"
        assert not result.paid


@pytest.mark.parametrize(
    ("changes", "message_id"),
    [
        ({"card_number": "9704000000000018"}, "card"),
        ({"holder": "TRAN THI B"}, "holder"),
        ({"issue_date": "08/16"}, "issue"),
        ({"bank_code": "VCB"}, "bank"),
    ],
)
def test_wrong_card_details_keep_the_buyer_on_the_card_page_with_an_error(
    standin: Standin, buyer: Buyer, changes: dict[str, str], message_id: str
) -> None:
    path = buyer.start(payment_url(standin, f"PAY-DETAILS-{message_id}", locale="en"))
    card_number = changes.pop("card_number", SUCCESS_CARD)

    page = buyer.submit_card(path, card_number, **changes)

    assert page.status_code == 200
    assert 'id="form-error"' in page.text
    assert 'id="card-form"' in page.text
    assert standin.transaction(f"PAY-DETAILS-{message_id}")["step"] == "card"


def test_the_pages_have_stable_form_field_ids_and_names(standin: Standin, buyer: Buyer) -> None:
    path = buyer.start(payment_url(standin, "PAY-IDS"))
    card_page = buyer.page(path).text
    buyer.submit_card(path, SUCCESS_CARD)
    otp_page = buyer.page(path).text

    for field in ("bank_code", "card_number", "card_holder", "issue_date"):
        assert f'id="{field}" name="{field}"' in card_page
    for element in ('id="card-form"', 'id="continue"', 'id="cancel-form"', 'id="cancel"'):
        assert element in card_page
    for element in ('id="otp-form"', 'id="otp" name="otp"', 'id="confirm"', 'id="cancel"'):
        assert element in otp_page
    assert "<script" not in card_page
    assert not re.search(r'(src|href)="(https?:)?//', card_page), "no external assets"


def test_a_tampered_pay_url_is_refused_with_code_70_and_nothing_is_stored(
    standin: Standin, buyer: Buyer
) -> None:
    url = payment_url(standin, "PAY-TAMPERED", amount=250_000)
    tampered = url.replace("vnp_Amount=25000000", "vnp_Amount=100000")

    page = buyer.open(tampered)

    assert page.status_code == 400
    assert error_code_of(page) == "70"
    assert standin.ledger()["transactions"] == []
    assert "vnp_SecureHash" not in page.text


def test_a_pay_url_of_another_merchant_code_is_refused_with_code_72(
    standin: Standin, buyer: Buyer
) -> None:
    other = MerchantCredentials(tmn_code="OTHERTMN", hash_secret=CREDENTIALS.hash_secret)

    page = buyer.open(payment_url(standin, "PAY-OTHER", credentials=other))

    assert error_code_of(page) == "72"


def test_a_pay_url_whose_expire_date_has_passed_is_refused_with_code_11(
    standin: Standin, buyer: Buyer
) -> None:
    created = datetime.now(UTC) - timedelta(minutes=20)

    page = buyer.open(payment_url(standin, "PAY-LATE", created_at=created))

    assert error_code_of(page) == "11"
    assert standin.ledger()["transactions"] == []


def signed_pay_url(standin: Standin, **overrides: str) -> str:
    """A correctly signed pay URL whose content the sandbox must still refuse."""
    url = payment_url(standin, "PAY-FORMAT")
    parameters = dict(parse_qsl(urlsplit(url).query))
    del parameters["vnp_SecureHash"]
    parameters.update(overrides)
    return f"{standin.pay_url}?{signed_query_string(parameters, CREDENTIALS.hash_secret)}"


@pytest.mark.parametrize(
    "overrides",
    [
        {"vnp_Amount": "1234567"},  # not VND x 100
        {"vnp_Amount": "0"},
        {"vnp_Amount": "1000000000000"},  # 13 digits
        {"vnp_OrderInfo": "Thanh toán đơn hàng"},  # accents
        {"vnp_Version": "2.0.1"},
        {"vnp_CurrCode": "USD"},
        {"vnp_Locale": "fr"},
        {"vnp_IpAddr": "localhost"},
        {"vnp_CreateDate": "2024-01-05"},
        {"vnp_ReturnUrl": "merchant.example/return"},
    ],
)
def test_a_signed_but_malformed_pay_url_is_refused_with_code_03(
    standin: Standin, buyer: Buyer, overrides: dict[str, str]
) -> None:
    page = buyer.open(signed_pay_url(standin, **overrides))

    assert page.status_code == 400
    assert error_code_of(page) == "03"


def test_reopening_an_open_pay_url_resumes_and_a_finished_txn_ref_is_refused_with_94(
    standin: Standin, buyer: Buyer
) -> None:
    url = payment_url(standin, "PAY-AGAIN")
    path = buyer.start(url)

    assert buyer.start(url) == path
    buyer.pay(url)
    assert error_code_of(buyer.open(url)) == "94"
    assert error_code_of(buyer.open(payment_url(standin, "PAY-AGAIN", amount=1_000))) == "94"


def test_a_finished_payment_page_sends_the_browser_back_to_the_same_result(
    standin: Standin, buyer: Buyer
) -> None:
    url = payment_url(standin, "PAY-BACK")
    path = buyer.start(url)
    first = buyer.pay(url)

    again = buyer.page(path)

    assert again.status_code == 303
    assert again.headers["location"] == first.headers["location"]


def test_the_payment_window_expiring_mid_payment_finishes_with_code_11(
    standin: Standin, buyer: Buyer, ipn_receiver: IpnReceiver
) -> None:
    created = datetime.now(UTC).replace(microsecond=0)
    path = buyer.start(
        payment_url(standin, "PAY-SLOW", created_at=created, expires_in=timedelta(seconds=2))
    )
    remaining = (created + timedelta(seconds=2) - datetime.now(UTC)).total_seconds()
    time.sleep(max(remaining, 0) + 0.2)

    result = returned_result(buyer.submit_card(path, SUCCESS_CARD))

    assert result.response_code == "11"
    assert not result.paid
    wait_until(lambda: len(ipn_receiver.calls_for("PAY-SLOW")) == 1, what="the IPN")
