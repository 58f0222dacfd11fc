"""Pages for people speak Vietnamese or English: ?lang=, else Accept-Language, else Vietnamese."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from eventhunting.languages.catalogs import catalog
from tests.support.system import RunningSystem

pytestmark = pytest.mark.system

# An unsigned return query: the page says the result is invalid, in the reader's language.
UNSIGNED_RETURN = "/api/v1/payments/vnpay/return?vnp_TxnRef=1&vnp_ResponseCode=00"

# What each page must say in each language (and must not say in the other).
PAGE_WORDS = {
    "/checkin": {"vi": ["Soát vé", "Đăng nhập", "Mật khẩu", "Vé tiếp theo"],
                 "en": ["Check-in", "Sign in", "Password", "Next ticket"]},
    "/dashboard": {"vi": ["Bảng điều khiển", "Đăng nhập", "Vé đã bán", "Lượt vào cửa"],
                   "en": ["Dashboard", "Sign in", "Tickets sold", "Check-ins"]},
    UNSIGNED_RETURN: {"vi": ["Kết quả thanh toán", "Kết quả thanh toán không hợp lệ"],
                      "en": ["Payment result", "Invalid payment result"]},
}  # fmt: skip


def html_language(page: httpx.Response) -> str:
    found = re.search(r'<html lang="([a-z]+)">', page.text)
    assert found is not None, page.text[:200]
    return found.group(1)


def script_texts(page: httpx.Response) -> dict[str, str]:
    found = re.search(
        r'<script id="page-text" type="application/json">(.*?)</script>', page.text, re.S
    )
    assert found is not None
    texts: dict[str, str] = json.loads(found.group(1))
    return texts


@pytest.mark.parametrize("path", list(PAGE_WORDS))
@pytest.mark.parametrize(
    ("query", "accept_language", "expected"),
    [
        ("", "vi-VN,vi;q=0.9,en;q=0.8", "vi"),
        ("", "en-US,en;q=0.9", "en"),
        ("", "fr-FR, en;q=0.5, vi;q=0.4", "en"),
        ("", None, "vi"),
        ("lang=en", "vi-VN", "en"),
        ("lang=vi", "en-US", "vi"),
    ],
)
async def test_each_page_renders_in_the_readers_language(
    http: httpx.AsyncClient,
    api_system: RunningSystem,
    path: str,
    query: str,
    accept_language: str | None,
    expected: str,
) -> None:
    url = path + (("&" if "?" in path else "?") + query if query else "")
    headers = {"Accept-Language": accept_language} if accept_language else {}

    page = await http.get(url, headers=headers)

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert html_language(page) == expected
    assert page.headers["content-language"] == expected
    assert "accept-language" in page.headers["vary"].lower()
    other = "en" if expected == "vi" else "vi"
    for words in PAGE_WORDS[path][expected]:
        assert words in page.text, (url, words)
    for words in PAGE_WORDS[path][other]:
        assert f">{words}<" not in page.text, (url, words)


@pytest.mark.parametrize("language", ["vi", "en"])
async def test_the_page_scripts_get_their_words_from_the_same_catalog(
    http: httpx.AsyncClient, api_system: RunningSystem, language: str
) -> None:
    checkin = script_texts(await http.get(f"/checkin?lang={language}"))
    dashboard = script_texts(await http.get(f"/dashboard?lang={language}"))

    messages = catalog(language)
    assert checkin["welcome"] == messages.text("pages.checkin.script.welcome")
    assert checkin["reasons.refunded"] == messages.text("pages.checkin.script.reasons.refunded")
    assert checkin["wrong_password"] == dashboard["wrong_password"]
    assert dashboard["for_organizers"] == messages.text("pages.dashboard.script.for_organizers")
    assert "welcome" not in dashboard
    assert {"vi": "Mời vào", "en": "Welcome in"}[language] == checkin["welcome"]


async def test_the_payment_result_as_json_carries_the_message_in_the_readers_language(
    http: httpx.AsyncClient, api_system: RunningSystem
) -> None:
    answers = {
        language: (
            await http.get(
                UNSIGNED_RETURN,
                headers={"Accept": "application/json", "Accept-Language": language},
            )
        ).json()
        for language in ("vi", "en")
    }

    assert answers["vi"]["status"] == answers["en"]["status"] == "invalid"
    assert answers["vi"]["message"] == "Kết quả thanh toán không có chữ ký hợp lệ của VNPAY."
    assert (
        answers["en"]["message"] == "The payment result is not signed by VNPAY, or is unreadable."
    )
