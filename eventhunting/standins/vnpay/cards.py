"""The sandbox's test cards (bank NCB) and what paying with each one does."""

from __future__ import annotations

from typing import Literal

import msgspec

BANK_CODE = "NCB"
BANK_NAME = "NCB - Ngan hang Quoc Dan"
CARD_HOLDER = "NGUYEN VAN A"
ISSUE_DATE = "07/15"
OTP = "123456"

SUCCESS = "00"
CARD_NOT_REGISTERED = "09"
PAYMENT_WINDOW_EXPIRED = "11"
CARD_LOCKED = "12"
WRONG_OTP = "13"
CANCELLED = "24"
INSUFFICIENT_BALANCE = "51"
OTHER_ERROR = "99"


class SandboxCard(msgspec.Struct, frozen=True, kw_only=True):
    """A card and its fate: decided at card entry, or after a correct OTP."""

    number: str
    label: str
    response_code: str
    decided_at: Literal["card", "otp"]


SANDBOX_CARDS: dict[str, SandboxCard] = {
    card.number: card
    for card in (
        SandboxCard(
            number="9704198526191432198",
            label="success",
            response_code=SUCCESS,
            decided_at="otp",
        ),
        SandboxCard(
            number="9704195798459170488",
            label="insufficient balance",
            response_code=INSUFFICIENT_BALANCE,
            decided_at="otp",
        ),
        SandboxCard(
            number="9704192181368742",
            label="not activated for internet banking",
            response_code=CARD_NOT_REGISTERED,
            decided_at="card",
        ),
        SandboxCard(
            number="9704193370791314",
            label="locked",
            response_code=CARD_LOCKED,
            decided_at="card",
        ),
        # VNPAY's code table has no "card expired"; 11 means the payment window expired,
        # which the sandbox reports when vnp_ExpireDate passes, so an expired card is 99.
        SandboxCard(
            number="9704194841945513",
            label="expired",
            response_code=OTHER_ERROR,
            decided_at="card",
        ),
    )
}


def normalised_card_number(text: str) -> str:
    return "".join(text.split()).replace("-", "")


def holder_matches(text: str) -> bool:
    return " ".join(text.split()).upper() == CARD_HOLDER
