"""VNPAY 2.1.0 secure hashes: HMAC-SHA512 over a form-encoded query or `|`-joined API fields."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from urllib.parse import quote_plus

PARAMETER_PREFIX = "vnp_"
SECURE_HASH = "vnp_SecureHash"
SECURE_HASH_TYPE = "vnp_SecureHashType"
UNSIGNED_PARAMETERS = frozenset({SECURE_HASH, SECURE_HASH_TYPE})

# Field orders of the merchant web API hashes, exactly as VNPAY's querydr/refund page gives them.
QUERYDR_REQUEST_HASH_ORDER: tuple[str, ...] = (
    "vnp_RequestId",
    "vnp_Version",
    "vnp_Command",
    "vnp_TmnCode",
    "vnp_TxnRef",
    "vnp_TransactionDate",
    "vnp_CreateDate",
    "vnp_IpAddr",
    "vnp_OrderInfo",
)
REFUND_REQUEST_HASH_ORDER: tuple[str, ...] = (
    "vnp_RequestId",
    "vnp_Version",
    "vnp_Command",
    "vnp_TmnCode",
    "vnp_TransactionType",
    "vnp_TxnRef",
    "vnp_Amount",
    "vnp_TransactionNo",
    "vnp_TransactionDate",
    "vnp_CreateBy",
    "vnp_CreateDate",
    "vnp_IpAddr",
    "vnp_OrderInfo",
)
REFUND_RESPONSE_HASH_ORDER: tuple[str, ...] = (
    "vnp_ResponseId",
    "vnp_Command",
    "vnp_ResponseCode",
    "vnp_Message",
    "vnp_TmnCode",
    "vnp_TxnRef",
    "vnp_Amount",
    "vnp_BankCode",
    "vnp_PayDate",
    "vnp_TransactionNo",
    "vnp_TransactionType",
    "vnp_TransactionStatus",
    "vnp_OrderInfo",
)
QUERYDR_RESPONSE_HASH_ORDER: tuple[str, ...] = (
    *REFUND_RESPONSE_HASH_ORDER,
    "vnp_PromotionCode",
    "vnp_PromotionAmount",
)


def hmac_sha512_hex(secret: str, data: str) -> str:
    """Lowercase hex HMAC-SHA512 of `data`'s UTF-8 bytes keyed with the secret's UTF-8 bytes."""
    return hmac.new(secret.encode("utf-8"), data.encode("utf-8"), hashlib.sha512).hexdigest()


def signatures_match(expected: str, received: str) -> bool:
    """Constant-time, case-insensitive comparison (bytes, so any received text is safe)."""
    return hmac.compare_digest(
        expected.lower().encode("utf-8"), received.lower().encode("utf-8", "replace")
    )


def signed_query_data(parameters: Mapping[str, str]) -> str:
    """The string a pay, return or IPN hash covers.

    Non-empty `vnp_*` parameters other than the hash itself, sorted by name (code-point
    order, which is UTF-8 byte order), names and values form-encoded, joined with `&`.
    """
    signed = sorted(
        (name, value)
        for name, value in parameters.items()
        if name.startswith(PARAMETER_PREFIX) and value != "" and name not in UNSIGNED_PARAMETERS
    )
    return "&".join(f"{quote_plus(name)}={quote_plus(value)}" for name, value in signed)


def sign_query(parameters: Mapping[str, str], secret: str) -> str:
    """The `vnp_SecureHash` of a pay, return or IPN query's decoded parameters."""
    return hmac_sha512_hex(secret, signed_query_data(parameters))


def query_signature_is_valid(parameters: Mapping[str, str], secret: str) -> bool:
    """Whether decoded query parameters carry a `vnp_SecureHash` matching their content."""
    received = parameters.get(SECURE_HASH, "")
    if not received:
        return False
    return signatures_match(sign_query(parameters, secret), received)


def pipe_joined_data(values: Mapping[str, str], order: Sequence[str]) -> str:
    """The raw values of `order` joined with `|`; a missing field counts as an empty string."""
    return "|".join(values.get(name, "") for name in order)


def sign_pipe_joined(values: Mapping[str, str], order: Sequence[str], secret: str) -> str:
    """The `vnp_SecureHash` of a querydr or refund request or response."""
    return hmac_sha512_hex(secret, pipe_joined_data(values, order))


def pipe_joined_signature_is_valid(
    values: Mapping[str, str], order: Sequence[str], secret: str
) -> bool:
    """Whether a querydr or refund message carries a hash matching its raw values."""
    received = values.get(SECURE_HASH, "")
    if not received:
        return False
    return signatures_match(sign_pipe_joined(values, order, secret), received)


def signed_query_string(parameters: Mapping[str, str], secret: str) -> str:
    """The signed parameters as a query string (same encoding as the hash), hash appended."""
    data = signed_query_data(parameters)
    return f"{data}&{SECURE_HASH}={hmac_sha512_hex(secret, data)}"
