"""VNPAY secure hashes: the official example, filtering, ordering, encoding and verification."""

from __future__ import annotations

import hashlib
import hmac

from eventhunting.payments.vnpay_signing import (
    QUERYDR_RESPONSE_HASH_ORDER,
    pipe_joined_data,
    pipe_joined_signature_is_valid,
    query_signature_is_valid,
    sign_query,
    signatures_match,
    signed_query_data,
    signed_query_string,
)

KNOWN_ANSWER_SECRET = "KNOWNANSWER0123456789ABCDEFGHIJK"
KNOWN_ANSWER_HASH = (
    "85c7a010dba2ee9c490bbd06e4c75655ee5c15f159c0651b81da405bbd589cf2"
    "caaf26b13bcd79fc6255a84aba95f1bc831998440929d0c896cb7bc423e9a8c8"
)
OFFICIAL_SIGNED_STRING = (
    "vnp_Amount=1806000&vnp_Command=pay&vnp_CreateDate=20210801153333&vnp_CurrCode=VND"
    "&vnp_IpAddr=127.0.0.1&vnp_Locale=vn&vnp_OrderInfo=Thanh+toan+don+hang+%3A5"
    "&vnp_OrderType=other&vnp_ReturnUrl=https%3A%2F%2Fdomainmerchant.vn%2FReturnUrl"
    "&vnp_TmnCode=DEMOV210&vnp_TxnRef=5&vnp_Version=2.1.0"
)


def official_parameters() -> dict[str, str]:
    """The PAY page's sample, decoded, deliberately not in sorted order."""
    return {
        "vnp_Version": "2.1.0",
        "vnp_TxnRef": "5",
        "vnp_TmnCode": "DEMOV210",
        "vnp_ReturnUrl": "https://domainmerchant.vn/ReturnUrl",
        "vnp_OrderType": "other",
        "vnp_OrderInfo": "Thanh toan don hang :5",
        "vnp_Locale": "vn",
        "vnp_IpAddr": "127.0.0.1",
        "vnp_CurrCode": "VND",
        "vnp_CreateDate": "20210801153333",
        "vnp_Command": "pay",
        "vnp_Amount": "1806000",
    }


def test_official_example_signs_the_documented_string_to_the_known_answer() -> None:
    parameters = official_parameters()

    assert signed_query_data(parameters) == OFFICIAL_SIGNED_STRING
    assert sign_query(parameters, KNOWN_ANSWER_SECRET) == KNOWN_ANSWER_HASH


def test_known_answer_is_lowercase_hex_of_hmac_sha512() -> None:
    independent = hmac.new(
        KNOWN_ANSWER_SECRET.encode(), OFFICIAL_SIGNED_STRING.encode(), hashlib.sha512
    ).hexdigest()

    assert independent == KNOWN_ANSWER_HASH
    assert len(KNOWN_ANSWER_HASH) == 128


def test_parameters_not_starting_with_vnp_empty_values_and_the_hash_fields_are_not_signed() -> None:
    parameters = {
        **official_parameters(),
        "order": "42",
        "utm_source": "mail",
        "vnp_BankCode": "",
        "vnp_SecureHash": "ffff",
        "vnp_SecureHashType": "HmacSHA512",
    }

    assert signed_query_data(parameters) == OFFICIAL_SIGNED_STRING
    assert sign_query(parameters, KNOWN_ANSWER_SECRET) == KNOWN_ANSWER_HASH


def test_names_sort_in_byte_order_so_upper_case_comes_before_lower_case() -> None:
    data = signed_query_data({"vnp_b": "1", "vnp_Z": "2", "vnp_A": "3", "vnp_a": "4"})

    assert data == "vnp_A=3&vnp_Z=2&vnp_a=4&vnp_b=1"


def test_values_are_form_encoded_with_plus_for_space_and_upper_case_percent_escapes() -> None:
    data = signed_query_data({"vnp_OrderInfo": "a b/c&d=e+f~é"})

    assert data == "vnp_OrderInfo=a+b%2Fc%26d%3De%2Bf~%C3%A9"


def test_signed_query_string_appends_the_hash_of_the_same_encoding() -> None:
    query = signed_query_string(official_parameters(), KNOWN_ANSWER_SECRET)

    assert query == f"{OFFICIAL_SIGNED_STRING}&vnp_SecureHash={KNOWN_ANSWER_HASH}"


def test_a_correct_hash_verifies_in_lower_or_upper_case() -> None:
    lower = {**official_parameters(), "vnp_SecureHash": KNOWN_ANSWER_HASH}
    upper = {**official_parameters(), "vnp_SecureHash": KNOWN_ANSWER_HASH.upper()}

    assert query_signature_is_valid(lower, KNOWN_ANSWER_SECRET)
    assert query_signature_is_valid(upper, KNOWN_ANSWER_SECRET)


def test_a_tampered_value_fails_verification() -> None:
    tampered = {
        **official_parameters(),
        "vnp_Amount": "1806100",
        "vnp_SecureHash": KNOWN_ANSWER_HASH,
    }

    assert not query_signature_is_valid(tampered, KNOWN_ANSWER_SECRET)


def test_an_added_vnp_parameter_fails_verification_but_an_added_other_parameter_does_not() -> None:
    signed = {**official_parameters(), "vnp_SecureHash": KNOWN_ANSWER_HASH}

    assert not query_signature_is_valid({**signed, "vnp_BankCode": "NCB"}, KNOWN_ANSWER_SECRET)
    assert query_signature_is_valid({**signed, "session": "abc"}, KNOWN_ANSWER_SECRET)


def test_another_secret_or_a_missing_hash_fails_verification() -> None:
    signed = {**official_parameters(), "vnp_SecureHash": KNOWN_ANSWER_HASH}

    assert not query_signature_is_valid(signed, "ANOTHERSECRET0123456789ABCDEFGHI")
    assert not query_signature_is_valid(official_parameters(), KNOWN_ANSWER_SECRET)


def test_a_received_hash_with_non_ascii_text_is_a_mismatch_not_an_error() -> None:
    assert not signatures_match(KNOWN_ANSWER_HASH, "é" * 128)
    assert not query_signature_is_valid(
        {**official_parameters(), "vnp_SecureHash": "ü"}, KNOWN_ANSWER_SECRET
    )


def test_pipe_joined_data_keeps_the_given_order_and_counts_missing_fields_as_empty() -> None:
    values = {"vnp_Command": "querydr", "vnp_ResponseId": "r1", "vnp_ResponseCode": "91"}

    data = pipe_joined_data(values, QUERYDR_RESPONSE_HASH_ORDER)

    assert data == "r1|querydr|91" + "|" * 12
    assert data.count("|") == len(QUERYDR_RESPONSE_HASH_ORDER) - 1


def test_pipe_joined_hash_verifies_case_insensitively_and_fails_when_tampered() -> None:
    order = ("vnp_A", "vnp_B")
    secret = "s3cret"
    digest = hmac.new(secret.encode(), b"1|2", hashlib.sha512).hexdigest()

    assert pipe_joined_signature_is_valid(
        {"vnp_A": "1", "vnp_B": "2", "vnp_SecureHash": digest.upper()}, order, secret
    )
    assert not pipe_joined_signature_is_valid(
        {"vnp_A": "1", "vnp_B": "3", "vnp_SecureHash": digest}, order, secret
    )
    assert not pipe_joined_signature_is_valid({"vnp_A": "1", "vnp_B": "2"}, order, secret)
