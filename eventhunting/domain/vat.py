"""Vietnamese VAT inside VAT-inclusive prices: the one rate and the one rounding rule."""

from __future__ import annotations

VAT_RATE_PERCENT = 10
"""Ticket prices include VAT at this rate (Vietnam's standard rate)."""


def vat_included_in(gross: int, rate_percent: int = VAT_RATE_PERCENT) -> int:
    """The VAT inside a VAT-inclusive amount of VND, rounded half up to a whole dong.

    Applied per invoice line, so the lines' VAT and amounts before VAT add up to the
    invoice's totals to the dong.
    """
    divisor = 100 + rate_percent
    return (2 * gross * rate_percent + divisor) // (2 * divisor)
