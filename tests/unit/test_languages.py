"""The language catalogs and choosing a reader's language: one mechanism for pages and mail."""

from __future__ import annotations

import string
from datetime import UTC, datetime

import pytest
from markupsafe import Markup

from eventhunting.languages.catalogs import LANGUAGES, catalog
from eventhunting.languages.choice import language_of, preferred_language
from eventhunting.languages.formats import format_event_time, format_local_date, format_vnd

# The values the date formats may use, in whatever order each language writes them.
DATE_VALUES = {"time", "weekday", "day", "month", "month_name", "year"}


def placeholders(message: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(message) if field}


def test_every_language_has_the_same_keys_and_placeholders() -> None:
    vietnamese, english = catalog("vi"), catalog("en")
    assert set(vietnamese.messages) == set(english.messages)
    for key, message in vietnamese.messages.items():
        other = english.messages[key]
        if isinstance(message, list):
            assert isinstance(other, list)
            assert len(message) == len(other), key
        elif key.startswith("formats."):
            assert isinstance(other, str)
            assert placeholders(message) | placeholders(other) <= DATE_VALUES | {"amount"}, key
        else:
            assert isinstance(other, str)
            assert placeholders(message) == placeholders(other), key


def test_in_html_a_message_is_escaped_with_its_values_unless_they_are_markup() -> None:
    messages = catalog("en")
    html = messages.markup("mail.greeting", name="<b>An</b>")
    assert html == "Hello &lt;b&gt;An&lt;/b&gt;,"
    stressed = messages.markup(
        "mail.refund_completed.refunded",
        amount=Markup("<strong>VND 1</strong>"),
        order_id="<i>",
        when="now",
    )
    assert "<strong>VND 1</strong>" in stressed
    assert "&lt;i&gt;" in stressed
    assert messages.text("mail.greeting", name="<b>An</b>") == "Hello <b>An</b>,"


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        (None, "vi"),
        ("vi", "vi"),
        ("vi-VN", "vi"),
        ("vn", "vi"),
        ("en", "en"),
        ("en-US", "en"),
        ("EN_gb", "en"),
        ("fr", "vi"),
        ("", "vi"),
    ],
)
def test_a_stored_locale_maps_to_our_language_and_falls_back_to_vietnamese(
    tag: str | None, expected: str
) -> None:
    assert language_of(tag) == expected


@pytest.mark.parametrize(
    ("override", "accept_language", "expected"),
    [
        (None, None, "vi"),
        (None, "", "vi"),
        (None, "en-US,en;q=0.9", "en"),
        (None, "vi-VN,vi;q=0.9,en-US;q=0.8,en;q=0.7", "vi"),
        (None, "fr-FR,fr;q=0.9,en;q=0.8,vi;q=0.5", "en"),
        (None, "en;q=0.4, vi;q=0.6", "vi"),
        (None, "en;q=0, vi;q=0.1", "vi"),
        (None, "de, *;q=0.5", "vi"),
        (None, "en;q=abc, vi;q=0.2", "vi"),
        ("en", "vi-VN", "en"),
        ("vn", "en-US", "vi"),
        ("klingon", "en-US", "en"),
    ],
)
def test_a_page_takes_lang_then_the_best_accept_language_then_vietnamese(
    override: str | None, accept_language: str | None, expected: str
) -> None:
    assert preferred_language(override, accept_language) == expected


def test_money_and_times_are_written_as_each_language_expects() -> None:
    assert format_vnd(0, "vi") == "0 ₫"
    assert format_vnd(1_250_000, "vi") == "1.250.000 ₫"
    assert format_vnd(1_250_000, "en") == "VND 1,250,000"
    late = datetime(2026, 12, 31, 17, 30, tzinfo=UTC)  # already 1 January in Vietnam
    assert format_event_time(late, "vi") == "00:30, Thứ Sáu, 01/01/2027 (GMT+7)"
    assert format_event_time(late, "en") == "Friday, 1 January 2027, 00:30 (GMT+7)"
    assert format_local_date(late, "vi") == "01/01/2027"
    assert format_local_date(late, "en") == "1 January 2027"
    with pytest.raises(ValueError, match="offset"):
        format_event_time(datetime(2026, 1, 1), "vi")
    assert LANGUAGES == ("vi", "en")
