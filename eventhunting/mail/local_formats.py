"""Money, dates and languages as a Vietnamese or English reader of our mail expects them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Literal

MailLocale = Literal["vi", "en"]

DEFAULT_LOCALE: MailLocale = "vi"
"""Buyers are in Vietnam and VNPAY's own pages default to Vietnamese; a buyer without a
known locale (or with one we have no templates for) reads Vietnamese."""

# Every one of Vietnam's 34 provincial units keeps UTC+7 with no daylight saving (since
# 1975), so one fixed offset is exact for every event and needs no tz database.
VIETNAM_TIME = timezone(timedelta(hours=7), "GMT+7")

WEEKDAYS: dict[MailLocale, tuple[str, ...]] = {
    "vi": ("Thứ Hai", "Thứ Ba", "Thứ Tư", "Thứ Năm", "Thứ Sáu", "Thứ Bảy", "Chủ Nhật"),
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
}
ENGLISH_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def mail_locale(tag: str | None) -> MailLocale:
    """Our language for a locale tag: `en`, `en-US`, `en_GB` -> en; `vi`, `vn`, others -> vi."""
    if tag is None:
        return DEFAULT_LOCALE
    language = tag.strip().replace("_", "-").split("-")[0].lower()
    if language == "en":
        return "en"
    return DEFAULT_LOCALE


def format_vnd(amount: int, locale: MailLocale) -> str:
    """An amount of dong: `1.250.000 ₫` in Vietnamese, `VND 1,250,000` in English."""
    grouped = f"{amount:,}"
    if locale == "vi":
        return grouped.replace(",", ".") + " ₫"
    return f"VND {grouped}"


def format_event_time(moment: datetime, locale: MailLocale) -> str:
    """A moment in Vietnam's time, with weekday: `19:30, Thứ Bảy, 14/03/2026 (GMT+7)`."""
    if moment.tzinfo is None:
        raise ValueError("event times must carry their offset")
    local = moment.astimezone(VIETNAM_TIME)
    weekday = WEEKDAYS[locale][local.weekday()]
    if locale == "vi":
        return f"{local:%H:%M}, {weekday}, {local:%d/%m/%Y} (GMT+7)"
    month = ENGLISH_MONTHS[local.month - 1]
    return f"{weekday}, {local.day} {month} {local.year}, {local:%H:%M} (GMT+7)"


def format_local_date(moment: datetime, locale: MailLocale) -> str:
    """A day in Vietnam's time without the hour: `14/03/2026` or `14 March 2026`."""
    local = moment.astimezone(VIETNAM_TIME)
    if locale == "vi":
        return f"{local:%d/%m/%Y}"
    return f"{local.day} {ENGLISH_MONTHS[local.month - 1]} {local.year}"


# Reasons the system itself gives for a refund, as the buyer reads them; any other reason
# (an organizer's own words) is shown as written.
REFUND_REASONS: dict[str, dict[MailLocale, str]] = {
    "event_cancelled": {
        "vi": "Sự kiện đã bị hủy.",
        "en": "The event was cancelled.",
    },
    "duplicate_payment": {
        "vi": "Đơn hàng đã được thanh toán trước đó; khoản thanh toán thứ hai được hoàn lại.",
        "en": "The order had been paid already; the second payment was returned.",
    },
    "tickets_no_longer_available": {
        "vi": "Khoản thanh toán đến sau khi thời gian giữ vé đã hết và vé đã được bán hết.",
        "en": "The payment arrived after the hold had ended and the tickets were gone.",
    },
}


def format_refund_reason(reason: str, locale: MailLocale) -> str:
    """A system reason in the reader's language; an organizer's reason as written."""
    known = REFUND_REASONS.get(reason)
    return reason if known is None else known[locale]
