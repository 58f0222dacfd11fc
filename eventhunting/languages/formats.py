"""Money and dates as a Vietnamese or English reader expects them, in Vietnam's time."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from eventhunting.languages.catalogs import Language, catalog

# Every one of Vietnam's 34 provincial units keeps UTC+7 with no daylight saving (since
# 1975), so one fixed offset is exact for every event and needs no tz database.
VIETNAM_TIME = timezone(timedelta(hours=7), "GMT+7")


def format_vnd(amount: int, language: Language) -> str:
    """An amount of dong: `1.250.000 ₫` in Vietnamese, `VND 1,250,000` in English."""
    messages = catalog(language)
    grouped = f"{amount:,}".replace(",", messages.text("formats.thousands_separator"))
    return messages.text("formats.money", amount=grouped)


def format_event_time(moment: datetime, language: Language) -> str:
    """A moment in Vietnam's time, with weekday: `19:30, Thứ Bảy, 14/03/2026 (GMT+7)`."""
    if moment.tzinfo is None:
        raise ValueError("event times must carry their offset")
    return _formatted("formats.event_time", moment, language)


def format_local_date(moment: datetime, language: Language) -> str:
    """A day in Vietnam's time without the hour: `14/03/2026` or `14 March 2026`."""
    return _formatted("formats.local_date", moment, language)


def _formatted(key: str, moment: datetime, language: Language) -> str:
    local = moment.astimezone(VIETNAM_TIME)
    messages = catalog(language)
    return messages.text(
        key,
        time=f"{local:%H:%M}",
        weekday=messages.names("formats.weekdays")[local.weekday()],
        day=local.day,
        month=local.month,
        month_name=messages.names("formats.months")[local.month - 1],
        year=local.year,
    )
